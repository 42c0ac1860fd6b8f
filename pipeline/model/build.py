"""Params -> a ddsp ``Autoencoder``, in Python rather than gin, from the resolved ``train`` section.

The structure is ddsp's ae.gin: MFCC -> GRU encoder giving z; (loudness, f0, z) -> RnnFcDecoder;
Harmonic + FilteredNoise summed, optionally through a trainable Reverb; multi-scale SpectralLoss.
The harmonic synth is ddsp's, rendered by :mod:`pipeline.model.harmonic` (same function, faster).
"""
from __future__ import annotations

import tensorflow as tf

from pipeline.compat import import_ddsp
from pipeline.config import ConfigError, TrainParams, encoder_z_time_steps
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.model.harmonic import FastHarmonic

HARMONIC, NOISE, ADD, REVERB = "harmonic", "filtered_noise", "add", "reverb"


def build_autoencoder(train: TrainParams, spec: DatasetSpec, harmonic_synth=None):
    """An unbuilt ``ddsp.training.models.Autoencoder`` (variables appear on its first call).

    ``harmonic_synth`` is the harmonic synth's class: by default :class:`FastHarmonic` (ddsp's synth,
    computed faster); ``ddsp.synths.Harmonic`` builds the model exactly as plain ddsp would, for
    comparisons. The two have no variables, so weights move freely between them.
    """
    ddsp = import_ddsp()
    t = resolve_for_dataset(train, spec)
    models, preprocessing = ddsp.training.models, ddsp.training.preprocessing
    return models.Autoencoder(
        # loudness comes from the prepared data (same ddsp function), not recomputed every step
        preprocessor=preprocessing.F0LoudnessPreprocessor(
            time_steps=decoder_frames(t, spec), frame_rate=t.decoder_frame_rate, sample_rate=spec.sample_rate,
            compute_loudness=False),
        encoder=_encoder(ddsp, t, spec),
        decoder=_decoder(ddsp, t),
        processor_group=_processor_group(ddsp, t, spec, harmonic_synth or FastHarmonic),
        losses=[spectral_loss(t.fft_sizes)],
    )


def resolve_for_dataset(train: TrainParams, spec: DatasetSpec) -> TrainParams:
    """The resolved train params, checked against the prepared data actually on disk."""
    errors = train.example_errors(spec.sample_rate, spec.example_secs)
    if errors:
        raise ConfigError("\n".join(f"train.{key}: {message} (prepared data: {spec})"
                                     for key, message in errors.items()))
    return train.resolved()


def decoder_frames(train: TrainParams, spec: DatasetSpec) -> int:
    """Control frames per example: the preprocessor resamples the dataset's f0/loudness to this."""
    return round(spec.example_secs * train.resolved().decoder_frame_rate)


def ddsp_z_time_steps(z_time_steps: int, n_samples: int) -> int:
    """ddsp's encoder key that yields ``z_time_steps`` frames for ``n_samples``-sample examples."""
    return encoder_z_time_steps(n_samples)[z_time_steps]


def spectral_loss(fft_sizes):
    """ddsp's SpectralLoss as ae.gin configures it (L1 on linear and log magnitudes)."""
    losses = import_ddsp().losses
    return losses.SpectralLoss(fft_sizes=tuple(fft_sizes), loss_type="L1", mag_weight=1.0, logmag_weight=1.0)


def _encoder(ddsp, t: TrainParams, spec: DatasetSpec):
    return ddsp.training.encoders.MfccTimeDistributedRnnEncoder(
        rnn_channels=t.encoder_rnn_channels, rnn_type="gru", z_dims=t.z_dims,
        z_time_steps=ddsp_z_time_steps(t.z_time_steps, spec.n_samples))


def _decoder(ddsp, t: TrainParams):
    return ddsp.training.decoders.RnnFcDecoder(
        rnn_channels=t.decoder_rnn_channels, rnn_type="gru", ch=t.decoder_fc_channels,
        layers_per_stack=t.decoder_layers, input_keys=("ld_scaled", "f0_scaled", "z"),
        output_splits=(("amps", 1), ("harmonic_distribution", t.n_harmonics), ("noise_magnitudes", t.n_noise_bands)))


def _processor_group(ddsp, t: TrainParams, spec: DatasetSpec, harmonic_synth):
    harmonic = harmonic_synth(n_samples=spec.n_samples, sample_rate=spec.sample_rate,
                              normalize_below_nyquist=True, scale_fn=ddsp.core.exp_sigmoid, name=HARMONIC)
    noise = ddsp.synths.FilteredNoise(n_samples=spec.n_samples, window_size=0,
                                      scale_fn=ddsp.core.exp_sigmoid, name=NOISE)
    dag = [
        (harmonic, ["amps", "harmonic_distribution", "f0_hz"]),
        (noise, ["noise_magnitudes"]),
        (ddsp.processors.Add(name=ADD), [f"{NOISE}/signal", f"{HARMONIC}/signal"]),
    ]
    if t.reverb:
        dag.append((ddsp.effects.Reverb(trainable=True, reverb_length=t.reverb_length, name=REVERB),
                    [f"{ADD}/signal"]))
    return ddsp.processors.ProcessorGroup(dag=dag, name="processor_group")


def use_generic_gru_kernels(model: tf.keras.Model) -> None:
    """Run the model's GRUs through Keras' generic RNN loop rather than its cuDNN-selecting one.

    Under XLA the backend-selecting GRU of tf-keras is recompiled for every new batch, which costs
    far more than the step itself; the generic loop
    computes the same function with the same weights and compiles once. Only for ``jit_compile``:
    without XLA on a GPU the cuDNN kernel is the fast one.
    """
    for layer in model.submodules:
        if isinstance(layer, tf.keras.layers.GRU):
            layer._could_use_gpu_kernel = False  # tf-keras reads this flag on every call
