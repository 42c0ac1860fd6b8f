"""The DDSP autoencoder (stage ``train``; used by ``extract_z`` and ``sample@K``).

``presets`` (the two training presets), ``build`` (params -> ddsp Autoencoder), ``harmonic`` (ddsp's
harmonic synthesis, computed faster), ``distribute`` (tf.distribute strategy, mixed precision), ``launch``
(local multi-worker processes and their TF_CONFIG),
``train`` (the compiled training loop with resumable checkpoints), ``heldout`` (held-out
reconstruction metrics), ``reconstructions`` (WAV + spectrograms of held-out examples), ``store``
(the saved model folder), ``decode`` (audio -> z and f0 + loudness + z -> audio, and the trained
model behind generation's numpy interface), ``extract`` (the encoder over every example -> z table).

Importing the package itself loads nothing; its modules (all but ``presets`` and ``launch``) load TensorFlow.
"""
