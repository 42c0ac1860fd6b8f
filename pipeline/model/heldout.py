"""Held-out reconstruction metrics: how well the autoencoder resynthesises audio it never trained on.

- ``loudness_l1_db``: mean |loudness(resynthesis) - loudness(original)| over all frames, both measured
  with the prepare stage's ``compute_loudness_db``.
- ``f0_rpa``: share of voiced frames whose resynthesis f0 is tracked and within 50 cents.
- ``f0_l1_cents``: mean |cents| error over voiced frames where the resynthesis is tracked.
- ``f0_outlier_ratio``: share of voiced frames whose resynthesis is untracked or > 1200 cents off.
- ``spectral_distance``: ddsp's multi-resolution SpectralLoss (FFT 2048..64, L1 on magnitudes and
  log magnitudes), the same yardstick whatever FFT sizes the model trained with.

The noise synth's white noise is drawn statelessly from ``noise_seed``, so the metrics are the
same in any process and after any resume. Voiced frames come from the input's ``f0_confidence``;
the resynthesis is re-analysed with the dataset's own f0 method
(``pipeline.audio.features.estimate_f0``). Frames are pooled over examples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.audio.features import VOICED_THRESHOLD, compute_loudness_db, estimate_f0
from pipeline.dataset.reader import EVAL_KEYS, MODEL_KEYS, ordered_batches
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.model.build import spectral_loss
from pipeline.model.decode import seeded_noise

REFERENCE_FFT_SIZES = (2048, 1024, 512, 256, 128, 64)
RPA_CENTS, OUTLIER_CENTS = 50.0, 1200.0


@dataclass
class FrameTotals:
    """Running sums over frames and examples, turned into the metrics at the end."""

    frames: int = 0
    loudness_abs_db: float = 0.0
    voiced: int = 0
    tracked: int = 0
    tracked_abs_cents: float = 0.0
    within_rpa: int = 0
    outliers: int = 0
    examples: int = 0
    spectral_sum: float = 0.0

    def add_example(self, ld_ref, ld_est, f0_ref, voiced, f0_est, tracked) -> None:
        self.frames += len(ld_ref)
        self.loudness_abs_db += float(np.abs(ld_est - ld_ref).sum())
        tracked = tracked & voiced & (f0_est > 0)
        cents = np.abs(1200.0 * np.log2(np.where(tracked, f0_est, 1.0) / np.where(tracked, f0_ref, 1.0)))
        self.voiced += int(voiced.sum())
        self.tracked += int(tracked.sum())
        self.tracked_abs_cents += float(cents[tracked].sum())
        self.within_rpa += int((tracked & (cents <= RPA_CENTS)).sum())
        self.outliers += int((voiced & (~tracked | (cents > OUTLIER_CENTS))).sum())

    def metrics(self) -> dict[str, float | None]:
        def ratio(num, den):
            value = num / den if den else None
            return value if value is None or math.isfinite(value) else None

        return {
            "loudness_l1_db": ratio(self.loudness_abs_db, self.frames),
            "f0_l1_cents": ratio(self.tracked_abs_cents, self.tracked),
            "f0_rpa": ratio(self.within_rpa, self.voiced),
            "f0_outlier_ratio": ratio(self.outliers, self.voiced),
            "spectral_distance": ratio(self.spectral_sum, self.examples),
        }


@dataclass
class Evaluator:
    """Resynthesises the first ``n_examples`` of the eval split and scores them."""

    data_dir: str | Path
    spec: DatasetSpec
    n_examples: int
    batch_size: int = 8
    fmin_hz: float = 30.0
    fmax_hz: float = 2000.0
    noise_seed: int = 0
    _loss: object = field(init=False, repr=False)

    def __post_init__(self):
        self._loss = spectral_loss(REFERENCE_FFT_SIZES)

    def __call__(self, model) -> dict[str, float | None]:
        totals = FrameTotals()
        for batch, resynthesis in self.resyntheses(model):
            self._score(totals, batch, resynthesis)
        return totals.metrics()

    def resyntheses(self, model, limit: int | None = None):
        """(batch as numpy, resynthesised audio) pairs over the evaluated examples."""
        forward = tf.function(lambda features: self._forward(model, features))
        limit = self.n_examples if limit is None else min(limit, self.n_examples)
        batches = ordered_batches(self.data_dir, "eval", self.spec, self.batch_size, keys=EVAL_KEYS + ("source",),
                                  limit=limit)
        for batch in batches:
            resynthesis = forward({key: batch[key] for key in MODEL_KEYS})
            yield {key: value.numpy() for key, value in batch.items()}, resynthesis

    def _forward(self, model, features: dict) -> tf.Tensor:
        with seeded_noise(model.processor_group, self.noise_seed):
            return model(features, training=False)["audio_synth"]

    def reconstruct(self, model, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Sources, original audio and resynthesised audio of the first ``n`` evaluated examples."""
        sources, originals, resyntheses = [], [], []
        for batch, resynthesis in self.resyntheses(model, limit=n):
            sources += [source.decode() for source in batch["source"]]
            originals.append(batch["audio"])
            resyntheses.append(resynthesis.numpy())
        if not sources:
            return [], np.zeros((0, self.spec.n_samples)), np.zeros((0, self.spec.n_samples))
        return sources, np.concatenate(originals), np.concatenate(resyntheses)

    def _score(self, totals: FrameTotals, batch: dict, resynthesis: tf.Tensor) -> None:
        size = len(batch["audio"])
        totals.examples += size
        totals.spectral_sum += float(self._loss(batch["audio"], resynthesis)) * size
        spec = self.spec
        for i, audio in enumerate(resynthesis.numpy()):
            ld_ref = compute_loudness_db(batch["audio"][i], spec.sample_rate, spec.frame_rate, spec.n_frames)
            ld_est = compute_loudness_db(audio, spec.sample_rate, spec.frame_rate, spec.n_frames)
            f0_est, confidence = estimate_f0(audio, spec.sample_rate, spec.frame_rate, spec.n_frames,
                                             method=spec.f0_method, fmin_hz=self.fmin_hz, fmax_hz=self.fmax_hz)
            f0_ref = batch["f0_hz"][i]
            voiced = (batch["f0_confidence"][i] >= VOICED_THRESHOLD) & (f0_ref > 0)
            totals.add_example(ld_ref, ld_est, f0_ref, voiced, f0_est, confidence >= VOICED_THRESHOLD)

