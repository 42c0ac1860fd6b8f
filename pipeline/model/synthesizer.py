"""The trained autoencoder behind the :class:`pipeline.synthesis.Synthesizer` interface.

The sampler speaks numpy and the z grid of the z table (the encoder's native frames); this adapter
turns that into :mod:`pipeline.model.synthesis` calls, so generation code never touches TensorFlow.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.model.store import load_model, read_config
from pipeline.model.synthesis import encode_z, synthesize


class ModelSynthesizer:
    def __init__(self, model, sample_rate: int, frame_rate: int, n_z_frames: int):
        self.model = model
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.n_z_frames = n_z_frames

    def synthesize(self, f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # ddsp's FilteredNoise draws white noise from TF's global generator: reset it per call
        tf.random.set_seed(seed)
        out = synthesize(self.model, np.asarray(f0_hz, np.float32), np.asarray(loudness_db, np.float32),
                         np.asarray(z, np.float32), self.frame_rate)
        return out.audio, out.harmonic, out.noise

    def encode(self, audio: np.ndarray, f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
        del f0_hz, loudness_db  # ddsp's MFCC encoder hears only the audio
        return encode_z(self.model, {"audio": tf.convert_to_tensor(audio, tf.float32)}).numpy()


def load_synthesizer(model_dir: str | Path) -> ModelSynthesizer:
    train, spec = read_config(model_dir)
    return ModelSynthesizer(load_model(model_dir), spec.sample_rate, spec.frame_rate, train.z_time_steps)
