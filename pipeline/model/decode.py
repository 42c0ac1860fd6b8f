"""The trained model's two halves used on their own: audio -> z, and (f0, loudness, z) -> audio.

Decoding runs the decoder and the processor group with no input audio, the way the sampling stage
generates sound. Contours may have any length and frame rate: they are resampled to the decoder's
frame rate with ddsp's ``core.resample`` (as ``F0LoudnessPreprocessor`` does) and scaled with
ddsp's ``scale_f0_hz`` / ``scale_db``; z, at whatever rate it comes (the encoder's native rate
included), is resampled to the same frames, as ddsp's ``ZEncoder.expand_z`` does in training.

ddsp's FilteredNoise draws its noise from TensorFlow's global generator; pass ``noise_seed`` for a
reproducible noise part instead: the white noise then comes from a stateless generator keyed by
that seed, which also keeps a compiled (``tf.function``) decoder reproducible call after call
without resetting TensorFlow's global seed (which throws away its compiled kernels). Training keys
its noise the same way, by (seed, step), so a resumed run draws what an uninterrupted one drew
(:mod:`pipeline.model.train`). The sample stage and the gddsp command reach these functions through
:class:`pipeline.generation.synthesizer.ModelSynthesizer`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from pipeline.compat import import_ddsp
from pipeline.model.build import HARMONIC, NOISE


@dataclass(frozen=True)
class Synthesis:
    """Decoder output as numpy: the mix, its harmonic and noise parts, and the synth controls."""

    audio: np.ndarray  # [batch, n_samples]
    harmonic: np.ndarray  # [batch, n_samples], before reverb
    noise: np.ndarray  # [batch, n_samples], before reverb
    controls: dict[str, np.ndarray]  # [batch, decoder frames, ...]


def encode_z(model, batch: dict) -> tf.Tensor:
    """z [batch, z_time_steps, z_dims] at the encoder's native frame rate (before ddsp upsamples it)."""
    return model.encoder.compute_z(tf.convert_to_tensor(batch["audio"], tf.float32))


def synthesize(model, f0_hz, loudness_db, z, frame_rate: float, noise_seed=None) -> Synthesis:
    """Decode contours sampled at ``frame_rate`` Hz ([batch, frames] or [frames]) and z [batch, t, z_dims]."""
    return _to_numpy(decoder_outputs(model, f0_hz, loudness_db, z, frame_rate, noise_seed))


def decode(model, f0_hz, loudness_db, z, frame_rate: float, noise_seed=None) -> np.ndarray:
    """Audio [batch, n_samples] from f0 (Hz), loudness (dB) and z, with no input audio."""
    return synthesize(model, f0_hz, loudness_db, z, frame_rate, noise_seed).audio


def decoder_outputs(model, f0_hz, loudness_db, z, frame_rate: float, noise_seed=None,
                    decoder_net=None, white_noise=None) -> dict[str, tf.Tensor]:
    """Tensors: ``audio``, ``harmonic``, ``noise`` and the synth controls.

    ``noise_seed`` (an int or a [2] int tensor) keys the noise synth's white noise; None leaves
    ddsp's draw from the global generator. ``white_noise`` ([batch, n_samples], uniform in [-1, 1))
    is the white noise itself, e.g. drawn by :func:`pipeline.export.host.white_noise` (the draw a
    streaming host repeats); it overrides ``noise_seed``. ``decoder_net`` replaces ``model.decoder``
    (called as ``decoder_net(features)``), e.g. by a compiled version of it.
    """
    features = decoder_features(model, f0_hz, loudness_db, z, frame_rate)
    features.update(decoder_net(features) if decoder_net else model.decoder(features, training=False))
    hop = round(model.preprocessor.sample_rate / model.preprocessor.frame_rate)
    group = model.processor_group
    with _synth_length(group, int(features["f0_hz"].shape[1]) * hop), seeded_noise(group, noise_seed, white_noise):
        outputs = group(features, return_outputs_dict=True)
    dag = outputs["controls"]
    # each processor's entry is {"signal": audio, "controls": what its get_controls returned}
    controls = dict(dag[HARMONIC]["controls"])
    controls["noise_magnitudes"] = dag[NOISE]["controls"]["magnitudes"]
    return {"audio": outputs["signal"], "harmonic": dag[HARMONIC]["signal"], "noise": dag[NOISE]["signal"],
            "controls": controls}


def decoder_features(model, f0_hz, loudness_db, z, frame_rate: float) -> dict[str, tf.Tensor]:
    """The decoder's inputs: f0/loudness at its frame rate, scaled as ddsp's preprocessor does, and z."""
    ddsp = import_ddsp()
    preprocessing, core = ddsp.training.preprocessing, ddsp.core
    f0_hz = preprocessing.at_least_3d(tf.convert_to_tensor(f0_hz, tf.float32))
    loudness_db = preprocessing.at_least_3d(tf.convert_to_tensor(loudness_db, tf.float32))
    frames = max(1, round(int(f0_hz.shape[1]) * model.preprocessor.frame_rate / frame_rate))
    f0_hz, loudness_db = core.resample(f0_hz, frames), core.resample(loudness_db, frames)
    z = tf.convert_to_tensor(z, tf.float32)
    z = z[tf.newaxis] if len(z.shape) == 2 else z
    return {"f0_hz": f0_hz, "loudness_db": loudness_db, "z": core.resample(z, frames),
            "f0_scaled": preprocessing.scale_f0_hz(f0_hz), "ld_scaled": preprocessing.scale_db(loudness_db)}


def _to_numpy(outputs: dict) -> Synthesis:
    return Synthesis(audio=outputs["audio"].numpy(), harmonic=outputs["harmonic"].numpy(),
                     noise=outputs["noise"].numpy(),
                     controls={name: value.numpy() for name, value in outputs["controls"].items()})


def noise_seed_tensor(seed: int) -> tf.Tensor:
    """A stateless-RNG seed ([2] int64) from any non-negative int."""
    return tf.constant([seed % 2**62, seed // 2**62 % 2**62], tf.int64)


@contextlib.contextmanager
def seeded_noise(processor_group, seed, white=None):
    """While decoding, the noise synth draws its white noise statelessly from ``seed`` (or uses ``white``).

    Like :func:`_synth_length` this acts at trace time inside a tf.function: the traced graph reads
    the seed as an input, so every call with a new seed reuses the same compiled graph.
    """
    if seed is None and white is None:
        yield
        return
    noise = next(p for p in processor_group.processors if p.name == NOISE)
    seed = noise_seed_tensor(seed) if isinstance(seed, int) else seed

    def get_signal(magnitudes):
        if white is not None:
            return import_ddsp().core.frequency_filter(white, magnitudes, window_size=noise.window_size)
        white_draw = tf.random.stateless_uniform([int(magnitudes.shape[0]), noise.n_samples], seed=seed,
                                                 minval=-1.0, maxval=1.0)
        return import_ddsp().core.frequency_filter(white_draw, magnitudes, window_size=noise.window_size)

    noise.get_signal = get_signal  # an instance attribute shadows ddsp's method for this call only
    try:
        yield
    finally:
        del noise.get_signal


@contextlib.contextmanager
def _synth_length(processor_group, n_samples: int):
    """ddsp's synths fix their output length at construction; decode any length by setting it per call.

    Inside a tf.function this runs at trace time; the trace is keyed by the input shapes that
    determine the length, so each traced length keeps its own value.
    """
    synths = [p for p in processor_group.processors if hasattr(p, "n_samples")]
    saved = [p.n_samples for p in synths]
    for synth in synths:
        synth.n_samples = n_samples
    try:
        yield
    finally:
        for synth, length in zip(synths, saved):
            synth.n_samples = length
