"""The trained autoencoder behind generation's numpy :class:`pipeline.generation.render.Synthesizer` interface.

Generation speaks numpy and the z grid of the z table (the encoder's native frames); this adapter turns
that into :mod:`pipeline.model.decode` calls, so the rest of generation never touches TensorFlow.
Decoding and encoding are compiled once per input shape (``tf.function``): ddsp's eager decoder spends
most of its time in the GRU's per-step Python loop (bench/generation_speed.py). The decoder network is
compiled with XLA when the model was trained with it (the ``cpu`` preset): XLA fuses the GRU's
per-step work, while the noise filter and the reverb's FFTs run faster outside it. The harmonic synth
runs as an XLA function of its own.

:meth:`ModelSynthesizer.decode_long` decodes a contour of any length as one signal (the decoder's GRU
runs over all of it, the reverb's tail rings on across what were once 4 s windows), with white noise
drawn in numpy by :func:`pipeline.export.host.white_noise`, the draw a streaming host repeats.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.export.host import to_decoder_frames, white_noise
from pipeline.model.build import use_generic_gru_kernels
from pipeline.model.decode import decoder_outputs, encode_z, noise_seed_tensor
from pipeline.model.harmonic import FastHarmonic
from pipeline.model.store import load_model, read_config


class ModelSynthesizer:
    def __init__(self, model, sample_rate: int, frame_rate: int, n_z_frames: int, jit_decoder: bool = False):
        self.model = model
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.n_z_frames = n_z_frames
        decoder_net = None
        if jit_decoder:
            use_generic_gru_kernels(model)
            decoder_net = tf.function(lambda features: model.decoder(features, training=False), jit_compile=True)
        for synth in model.processor_group.processors:
            if isinstance(synth, FastHarmonic):
                synth.compile_alone = True
        self._decode = tf.function(partial(decoder_outputs, model, frame_rate=frame_rate, decoder_net=decoder_net))
        self.decoder_frame_rate = model.preprocessor.frame_rate
        self.hop = round(sample_rate / self.decoder_frame_rate)
        self._decode_frames = tf.function(partial(decoder_outputs, model, frame_rate=self.decoder_frame_rate,
                                                  decoder_net=decoder_net))
        self._encode = tf.function(lambda audio: encode_z(model, {"audio": audio}))

    def synthesize(self, f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self._decode(np.asarray(f0_hz, np.float32), np.asarray(loudness_db, np.float32),
                           np.asarray(z, np.float32), noise_seed=noise_seed_tensor(seed))
        return out["audio"].numpy(), out["harmonic"].numpy(), out["noise"].numpy()

    def decoder_rate_inputs(self, f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contours at ``frame_rate`` ([frames]) and z ([t, d], any rate) -> the decoder's frames.

        ddsp's linear resampling, in numpy (:func:`to_decoder_frames`): ([n], [n], [n, d]) with n
        the contour's length at the decoder's frame rate. A streaming host takes the same arrays
        block by block, so both paths decode identical inputs.
        """
        return to_decoder_frames(f0_hz, loudness_db, z, self.frame_rate, self.decoder_frame_rate)

    def decode_long(self, f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray, seed: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One contour of any length as one signal: f0_hz, loudness_db [frames] at ``frame_rate``,
        z [t, d] at any rate -> (audio, harmonic, noise), each [decoder frames * hop].

        The whole contour goes through the decoder at once (its GRU state and the reverb's tail run
        on from start to end); the white noise is :func:`white_noise` of ``seed``.
        """
        f0, loudness, z = self.decoder_rate_inputs(f0_hz, loudness_db, z)
        return self.decode_frames(f0, loudness, z, seed)

    def decode_frames(self, f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray, seed: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decode_long` of inputs already at the decoder's frames ([n], [n], [n, d])."""
        out = self._decode_frames(np.asarray(f0_hz, np.float32)[None], np.asarray(loudness_db, np.float32)[None],
                                  np.asarray(z, np.float32)[None], white_noise=white_noise(seed, len(f0_hz) * self.hop))
        return out["audio"].numpy()[0], out["harmonic"].numpy()[0], out["noise"].numpy()[0]

    def encode(self, audio: np.ndarray, f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
        del f0_hz, loudness_db  # ddsp's MFCC encoder hears only the audio
        return self._encode(tf.convert_to_tensor(audio, tf.float32)).numpy()


def load_synthesizer(model_dir: str | Path) -> ModelSynthesizer:
    train, spec = read_config(model_dir)
    return ModelSynthesizer(load_model(model_dir), spec.sample_rate, spec.frame_rate, train.z_time_steps,
                            jit_decoder=train.jit_compile)
