"""Frame-rate features: f0 (offline estimators, no downloads) and loudness (ddsp's own).

All features share one time grid: frame ``i`` sits at ``i / frame_rate`` seconds, the convention of
ddsp's ``padding='center'`` framing trimmed to ``n_frames``. Estimators that run at a native hop
of their own are interpolated onto this grid.

Unvoiced frames carry the nearest voiced f0 (held, not zero) with a low confidence, so the decoder
sees a continuous pitch contour; consumers that need voicing threshold ``f0_confidence``.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

F0_METHODS = ("swift", "pyin")
VOICED_THRESHOLD = 0.5  # both estimators' confidences are calibrated so voiced means >= 0.5


def frame_times(n_frames: int, frame_rate: int) -> np.ndarray:
    return np.arange(n_frames, dtype=np.float64) / frame_rate


def _fill_unvoiced(f0_hz: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Hold the nearest voiced pitch across unvoiced frames (all-unvoiced: zeros)."""
    f0_hz = np.asarray(f0_hz, np.float64)
    good = voiced & np.isfinite(f0_hz) & (f0_hz > 0)
    if not good.any():
        return np.zeros_like(f0_hz)
    idx = np.arange(len(f0_hz))
    nearest_left = np.maximum.accumulate(np.where(good, idx, -1))
    nearest_right = np.minimum.accumulate(np.where(good, idx, len(idx))[::-1])[::-1]
    use_left = (nearest_left >= 0) & (
        (nearest_right >= len(idx)) | (idx - nearest_left <= nearest_right - idx))
    source = np.where(use_left, nearest_left, nearest_right)
    return f0_hz[source]


def _to_grid(times: np.ndarray, f0_hz: np.ndarray, confidence: np.ndarray,
             n_frames: int, frame_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate an estimator's (time, f0, confidence) track onto the frame grid."""
    grid = frame_times(n_frames, frame_rate)
    voiced = confidence >= VOICED_THRESHOLD
    filled = _fill_unvoiced(f0_hz, voiced)
    if not (filled > 0).any():
        return np.zeros(n_frames, np.float32), np.interp(grid, times, confidence).astype(np.float32)
    # interpolate in log-frequency so glides between notes stay musical
    log_f0 = np.interp(grid, times, np.log2(np.maximum(filled, 1e-3)))
    conf = np.interp(grid, times, confidence)
    return (2.0 ** log_f0).astype(np.float32), np.clip(conf, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _swift_detector():
    from swift_f0 import SwiftF0

    # one intra-op thread: parallelism comes from Beam workers, not from inside one call
    return SwiftF0(threads=1, spin=False)


def f0_swift(audio: np.ndarray, sample_rate: int, frame_rate: int, n_frames: int,
             fmin_hz: float, fmax_hz: float) -> tuple[np.ndarray, np.ndarray]:
    from swift_f0 import FMAX, FMIN

    result = _swift_detector().detect(audio, sample_rate, fmin=max(fmin_hz, FMIN), fmax=min(fmax_hz, FMAX))
    return _to_grid(result.timestamps, result.pitch_hz, result.confidence, n_frames, frame_rate)


def f0_pyin(audio: np.ndarray, sample_rate: int, frame_rate: int, n_frames: int,
            fmin_hz: float, fmax_hz: float) -> tuple[np.ndarray, np.ndarray]:
    import librosa

    # pyin's cost grows with the frame count, so it runs at a ~16 ms hop and is interpolated
    hop = max(1, sample_rate // 64)
    frame_length = 2048 if sample_rate >= 16000 else 1024
    fmax_hz = min(fmax_hz, sample_rate / 2 * 0.95)
    f0, _voiced, prob = librosa.pyin(audio.astype(np.float32), fmin=fmin_hz, fmax=fmax_hz, sr=sample_rate,
                                     frame_length=frame_length, hop_length=hop, center=True)
    times = np.arange(len(f0)) * hop / sample_rate
    return _to_grid(times, np.nan_to_num(f0, nan=0.0), np.nan_to_num(prob, nan=0.0), n_frames, frame_rate)


F0_ESTIMATORS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {"swift": f0_swift, "pyin": f0_pyin}


def estimate_f0(audio: np.ndarray, sample_rate: int, frame_rate: int, n_frames: int | None = None,
                method: str = "swift", fmin_hz: float = 30.0, fmax_hz: float = 2000.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """f0_hz and f0_confidence on the frame grid (``n_frames`` defaults to the audio's length)."""
    if method not in F0_ESTIMATORS:
        raise ValueError(f"unknown f0 method {method!r}; choose one of {sorted(F0_ESTIMATORS)}")
    if n_frames is None:
        n_frames = int(np.ceil(len(audio) * frame_rate / sample_rate))
    return F0_ESTIMATORS[method](np.asarray(audio, np.float32), sample_rate, frame_rate, n_frames, fmin_hz, fmax_hz)


def loudness_floor_db() -> float:
    """The lowest loudness ddsp's ``compute_loudness`` gives (``-DB_RANGE`` with ``ref_db=0``): padding's value."""
    from pipeline.compat import import_ddsp

    return -float(import_ddsp().spectral_ops.DB_RANGE)


def compute_loudness_db(audio: np.ndarray, sample_rate: int, frame_rate: int, n_frames: int | None = None,
                        n_fft: int = 512) -> np.ndarray:
    """A-weighted loudness in dB with ddsp's own ``spectral_ops.compute_loudness`` (numpy path)."""
    from pipeline.compat import import_ddsp

    spectral_ops = import_ddsp().spectral_ops
    if n_frames is None:
        n_frames = int(np.ceil(len(audio) * frame_rate / sample_rate))
    with np.errstate(divide="ignore"):  # librosa's A-weighting takes log10(0) at the DC bin
        loudness = spectral_ops.compute_loudness(np.asarray(audio, np.float32), sample_rate=sample_rate,
                                                 frame_rate=frame_rate, n_fft=n_fft, use_tf=False, padding="center")
    loudness = np.asarray(loudness, np.float32)[:n_frames]
    if len(loudness) < n_frames:
        loudness = np.pad(loudness, (0, n_frames - len(loudness)), mode="edge")
    return loudness
