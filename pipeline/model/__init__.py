"""The DDSP autoencoder: build it from params, train it, evaluate it, and use its encoder and decoder.

Modules by concept: ``build`` (params -> ddsp Autoencoder), ``data`` (prepared TFRecords -> tf.data),
``distribute`` (tf.distribute strategy, mixed precision), ``train`` (our compiled training loop with
resumable checkpoints), ``evaluate`` (held-out reconstruction metrics), ``store`` (the saved model
folder: save and load without retraining), ``synthesis`` (encode z; decode f0 + loudness + z to
audio and its harmonic and noise parts), ``harmonic`` (ddsp's harmonic synthesis, computed
faster), ``synthesizer`` (that pair behind the sampling stage's
numpy interface), ``extract`` (z frames table), ``reconstructions`` (WAV +
spectrograms), ``synthetic`` (a tiny dataset of known tones for tests and benchmarks).

Importing this package loads TensorFlow. Nothing here imports MLflow, Prefect or DVC.
"""
from pipeline.model.store import load_model, read_config
from pipeline.model.synthesis import decode, encode_z, synthesize

__all__ = ["decode", "encode_z", "load_model", "read_config", "synthesize"]
