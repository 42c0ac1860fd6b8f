"""Helpers for tests and benchmarks only: a tiny prepared dataset of synthetic piano-like tones with known
f0 in the prepare stage's format, and a float64 reference of the harmonic synth.

Tests and benchmarks use it so they run without the corpus and the Beam stage: each example is a
few decaying harmonic notes (plus a little noise) whose f0 is known exactly; loudness is computed
with the same function the prepare stage uses.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.audio.features import compute_loudness_db
from pipeline.compat import import_ddsp
from pipeline.dataset.tfrecord import DatasetSpec, encode_example, shard_prefix

DDSP_CREPE_RATE = 16000


def synthetic_example(rng: np.random.Generator, spec: DatasetSpec, n_notes: int = 3) -> dict[str, np.ndarray]:
    """One window: ``n_notes`` consecutive notes with random pitch, level and decay."""
    n, sr = spec.n_samples, spec.sample_rate
    t = np.arange(n) / sr
    audio = np.zeros(n)
    f0_frames = np.zeros(spec.n_frames)
    bounds = np.linspace(0, n, n_notes + 1).astype(int)
    frame_of_sample = np.minimum(np.arange(n) * spec.frame_rate // sr, spec.n_frames - 1)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        f0 = 440.0 * 2 ** ((rng.integers(45, 76) - 69) / 12)
        local = t[start:stop] - t[start]
        envelope = rng.uniform(0.1, 0.5) * np.exp(-local * rng.uniform(1.0, 4.0)) * np.minimum(local * 200, 1)
        harmonics = np.arange(1, int(min(20, sr / 2 / f0)) + 1)
        weights = rng.uniform(0.5, 1.0) ** harmonics / harmonics
        audio[start:stop] = envelope * (weights[:, None] * np.sin(2 * np.pi * f0 * harmonics[:, None] * local)).sum(0)
        f0_frames[frame_of_sample[start]:frame_of_sample[stop - 1] + 1] = f0
    audio = (audio + rng.normal(0, 1e-3, n)).astype(np.float32)
    audio_16k = np.interp(np.arange(round(spec.example_secs * DDSP_CREPE_RATE)) / DDSP_CREPE_RATE, t, audio)
    return {
        "audio": audio,
        "audio_16k": audio_16k.astype(np.float32),
        "f0_hz": f0_frames.astype(np.float32),
        "f0_confidence": np.ones(spec.n_frames, np.float32),
        "loudness_db": compute_loudness_db(audio, sr, spec.frame_rate, spec.n_frames),
    }


def write_synthetic_dataset(folder: str | Path, spec: DatasetSpec, n_train: int, n_eval: int,
                            seed: int = 0, n_shards: int = 2) -> Path:
    """Write ``{split}.tfrecord-*`` shards and ``spec.json`` into ``folder``."""
    import tensorflow as tf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("eval", n_eval)):
        shards = [tf.io.TFRecordWriter(f"{shard_prefix(folder, split)}-{i:05d}-of-{n_shards:05d}")
                  for i in range(n_shards)]
        for index in range(count):
            source = f"synthetic/{split}_{index % 5}.wav"
            offset = float(index // 5 * spec.example_secs)
            shards[index % n_shards].write(encode_example(synthetic_example(rng, spec), source, offset))
        for shard in shards:
            shard.close()
    spec.save(folder)
    return folder


def float64_harmonic_audio(amplitudes, harmonic_distribution, f0_hz, n_samples: int, sample_rate: int
                           ) -> np.ndarray:
    """A slow reference for checks: ddsp's own envelope functions, then phases and sines in float64."""
    core = import_ddsp().core
    n_harmonics = int(harmonic_distribution.shape[-1])
    freqs = core.resample(core.get_harmonic_frequencies(f0_hz, n_harmonics), n_samples).numpy().astype(np.float64)
    amps = core.resample(amplitudes * harmonic_distribution, n_samples, method="window").numpy().astype(np.float64)
    amps[freqs >= sample_rate / 2] = 0.0
    phases = np.cumsum(2 * np.pi * freqs / sample_rate, axis=1)
    return (amps * np.sin(phases)).sum(-1)
