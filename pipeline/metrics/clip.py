"""Per-clip metrics for generated audio (names from pipeline.vocab, used as is downstream).

- ``f0_rpa``, ``f0_median_cents``: the clip is re-analysed with the project's offline f0 tracker
  (:func:`pipeline.audio.features.estimate_f0`) and compared with the f0 it was conditioned on.
- ``loudness_l1_db``: the same for ddsp's A-weighted loudness.
- ``hnr_db``: harmonic vs noise energy. Exact from the synthesiser's two branches when they are
  rendered separately (:func:`hnr_db_from_controls`); otherwise estimated from the audio as the
  energy near the harmonics of the target f0 against the rest of the spectrum
  (:func:`hnr_db_from_audio`).
- ``spectral_flatness``, ``timbre_consistency``, ``frechet_clip_to_set``: spectral shape on the clip's
  sounding frames, the last two on MFCCs shared with the real reference audio
  (:func:`mfcc_frames`, :class:`MfccAccumulator`).

Undefined values (no voiced frame, too few sounding frames) are NaN; :func:`is_valid` treats a NaN
threshold metric as failing.
"""
from __future__ import annotations

import math
from typing import Iterable, NamedTuple

import librosa
import numpy as np

from pipeline.audio.features import VOICED_THRESHOLD, compute_loudness_db, estimate_f0

N_MFCC = 20
N_FFT = 1024
HOP_LENGTH = 256
ACTIVE_TOP_DB = 60.0  # frames more than this far below the clip's loudest frame count as silence
RPA_CENTS = 50.0
HNR_N_FFT = 4096  # 3.9 Hz bins at 16 kHz, so harmonic bands stay narrow even for low piano notes
HNR_HALF_BAND_BINS = 2.0  # a Hann window's main lobe spans ±2 bins around a sinusoid
_ENERGY_FLOOR = 1e-20


# ---- pitch and loudness against the conditioning ----

def f0_accuracy(measured_f0_hz: np.ndarray, measured_confidence: np.ndarray, target_f0_hz: np.ndarray,
                target_voiced: np.ndarray | None = None, voiced_threshold: float | None = None
                ) -> tuple[float, float]:
    """(f0_rpa, f0_median_cents) of a re-analysed f0 track against its target.

    The denominator of ``f0_rpa`` is every frame where the target is voiced (target f0 > 0 and
    ``target_voiced`` if given), as in raw pitch accuracy: a frame the tracker finds unvoiced counts
    as a miss, so a clip that is only noise scores near 0 rather than being excused. Cents are
    1200·log2(measured/target); ``f0_median_cents`` is the median |cents| over frames voiced in both.
    """
    threshold = VOICED_THRESHOLD if voiced_threshold is None else voiced_threshold
    measured, confidence, target = _same_length(measured_f0_hz, measured_confidence, target_f0_hz)
    reference = target > 0
    if target_voiced is not None:
        reference &= np.asarray(target_voiced, bool)[: len(target)]
    both = reference & (confidence >= threshold) & (measured > 0)
    if not reference.any():
        return math.nan, math.nan
    cents = np.abs(1200.0 * np.log2(measured[both] / target[both]))
    rpa = float(np.count_nonzero(cents <= RPA_CENTS) / np.count_nonzero(reference))
    median = float(np.median(cents)) if len(cents) else math.nan
    return rpa, median


def loudness_l1_db(target_db: np.ndarray, measured_db: np.ndarray) -> float:
    """Mean |target - measured| loudness in dB over the common frames."""
    target, measured = _same_length(target_db, measured_db)
    return float(np.mean(np.abs(target - measured)))


# ---- harmonic vs noise energy ----

def hnr_db_from_controls(harmonic_audio: np.ndarray, noise_audio: np.ndarray) -> float:
    """10·log10(E_harmonic / E_noise) of the synthesiser's separately rendered branches.

    This is exact: the decoder's harmonic and filtered-noise outputs are summed only at the end, so
    their energies are known without any spectral estimation.
    """
    harmonic_energy = float(np.sum(np.square(np.asarray(harmonic_audio, np.float64))))
    noise_energy = float(np.sum(np.square(np.asarray(noise_audio, np.float64))))
    return 10.0 * math.log10((harmonic_energy + _ENERGY_FLOOR) / (noise_energy + _ENERGY_FLOOR))


def hnr_db_from_audio(audio: np.ndarray, sample_rate: int, f0_hz: np.ndarray, frame_rate: int,
                      n_fft: int = HNR_N_FFT, half_band_bins: float = HNR_HALF_BAND_BINS) -> float:
    """Audio-only HNR: power within ±``half_band_bins`` of each harmonic h·f0 vs all other power.

    An STFT with hop sample_rate/frame_rate puts STFT frame i at i/frame_rate, the f0 grid. Power is
    summed over the sounding frames with f0 > 0, so the ratio is energy-weighted like
    :func:`hnr_db_from_controls`. White noise scores about 10·log10(b/(1-b)) with b the share of the
    spectrum inside the bands (≈ -11 dB at 220 Hz with the defaults); a clean harmonic tone scores
    tens of dB. It is an estimate: real partials that are inharmonic or broader than the bands
    count as noise.
    """
    audio = np.asarray(audio, np.float32)
    hop = _hop(sample_rate, frame_rate)
    power = np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop, center=True)) ** 2
    f0 = np.asarray(f0_hz, np.float64)
    n = min(power.shape[1], len(f0))
    power, f0 = power[:, :n], f0[:n]
    frames = (f0 > 0) & _active(power.sum(axis=0))
    if not frames.any():
        return math.nan
    freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)[:, None]
    f0 = f0[frames][None, :]
    harmonic_number = np.round(freqs / f0)
    near = (harmonic_number >= 1) & (np.abs(freqs - harmonic_number * f0) <= half_band_bins * sample_rate / n_fft)
    power = power[:, frames]
    harmonic_energy = float(power[near].sum())
    noise_energy = float(power[~near].sum())
    return 10.0 * math.log10((harmonic_energy + _ENERGY_FLOOR) / (noise_energy + _ENERGY_FLOOR))


# ---- spectral shape ----

def mfcc_frames(audio: np.ndarray, sample_rate: int, n_mfcc: int = N_MFCC, n_fft: int = N_FFT,
                hop_length: int = HOP_LENGTH, top_db: float | None = ACTIVE_TOP_DB) -> np.ndarray:
    """MFCC frames [n_frames, n_mfcc - 1] of the sounding part of a clip (same call for clips and reference).

    c0 (log energy) is dropped so the timbre metrics describe spectral shape, not level: a clip
    conditioned on a different loudness contour is not a different timbre. Frames more than
    ``top_db`` below the loudest frame are dropped (None keeps all): silence has no timbre, and its
    MFCCs would dominate frame-to-frame distances at note boundaries. Reference and clip statistics
    must share ``sample_rate`` and these settings to be comparable.
    """
    audio = np.asarray(audio, np.float32)
    mfcc = librosa.feature.mfcc(y=audio, sr=sample_rate, n_mfcc=n_mfcc, n_fft=n_fft, hop_length=hop_length).T
    if top_db is not None:
        rms = librosa.feature.rms(y=audio, frame_length=n_fft, hop_length=hop_length)[0]
        mfcc = mfcc[_active(rms**2, top_db)[: len(mfcc)]]
    return mfcc[:, 1:].astype(np.float64)


def spectral_flatness(audio: np.ndarray, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
                      top_db: float = ACTIVE_TOP_DB) -> float:
    """Mean spectral flatness (geometric / arithmetic mean of the power spectrum) of sounding frames.

    Near 0 for a few sinusoids, near 1 for white noise. Silent frames are excluded because librosa
    floors them to a flat spectrum (flatness 1), which would make silence look like noise.
    """
    audio = np.asarray(audio, np.float32)
    power = np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop_length)) ** 2
    flatness = librosa.feature.spectral_flatness(S=power, power=1.0)[0]
    active = _active(power.sum(axis=0), top_db)
    return float(flatness[active].mean()) if active.any() else math.nan


def timbre_consistency(mfcc: np.ndarray) -> float:
    """Mean Euclidean distance between consecutive MFCC frames; lower is a steadier timbre."""
    mfcc = np.asarray(mfcc, np.float64)
    if len(mfcc) < 2:
        return math.nan
    return float(np.linalg.norm(np.diff(mfcc, axis=0), axis=1).mean())


class MfccStats(NamedTuple):
    """Mean and covariance of MFCC frames, the Gaussian that the Fréchet distance compares."""

    mean: np.ndarray
    cov: np.ndarray


class MfccAccumulator:
    """Running mean and covariance of MFCC frames over many files with flat memory.

    Batches are merged with Chan et al.'s pairwise update of (count, mean, sum of centred outer
    products), which avoids the cancellation of accumulating raw sums of squares.
    """

    def __init__(self) -> None:
        self.count = 0
        self._mean: np.ndarray | None = None
        self._scatter: np.ndarray | None = None

    def add(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames, np.float64)
        if frames.ndim != 2:
            raise ValueError(f"MFCC frames must be [n_frames, n_coeffs], got shape {frames.shape}")
        if not len(frames):
            return
        batch_mean = frames.mean(axis=0)
        centred = frames - batch_mean
        batch_scatter = centred.T @ centred
        if self._mean is None:
            self.count, self._mean, self._scatter = len(frames), batch_mean, batch_scatter
            return
        total = self.count + len(frames)
        delta = batch_mean - self._mean
        self._scatter = self._scatter + batch_scatter + np.outer(delta, delta) * (self.count * len(frames) / total)
        self._mean = self._mean + delta * (len(frames) / total)
        self.count = total

    def stats(self) -> MfccStats:
        """Mean and unbiased covariance (ddof = 1) of every frame added so far."""
        if self.count < 2:
            raise ValueError(f"need at least 2 MFCC frames for a covariance, have {self.count}")
        return MfccStats(self._mean.copy(), self._scatter / (self.count - 1))


def reference_mfcc_stats(audios: Iterable[np.ndarray], sample_rate: int) -> MfccStats:
    """MFCC statistics of a set of real audio (e.g. all held-out examples), accumulated so memory stays flat."""
    accumulator = MfccAccumulator()
    for audio in audios:
        accumulator.add(mfcc_frames(audio, sample_rate))
    return accumulator.stats()


def mfcc_stats(frames: np.ndarray) -> MfccStats:
    """(mean, cov) of one array of MFCC frames; use :class:`MfccAccumulator` across many files."""
    accumulator = MfccAccumulator()
    accumulator.add(frames)
    return accumulator.stats()


def frechet_distance(a: MfccStats, b: MfccStats) -> float:
    """Fréchet distance between N(μ_a, Σ_a) and N(μ_b, Σ_b).

    d² = |μ_a - μ_b|² + Tr(Σ_a) + Tr(Σ_b) - 2 Tr((Σ_a Σ_b)^{1/2}). The last trace is computed as
    Tr((Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}), equal by similarity, whose argument is symmetric PSD: its
    eigenvalues are real and non-negative up to rounding, so no complex part from a general matrix
    square root (``scipy.linalg.sqrtm`` of the non-symmetric Σ_a Σ_b) has to be discarded. Rounding
    can leave d² slightly negative for identical inputs; it is clipped at 0. Returns d² (as FID does).
    """
    sqrt_a = _psd_sqrt(a.cov)
    middle = sqrt_a @ b.cov @ sqrt_a
    cross_trace = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())
    mean_term = float(np.sum(np.square(a.mean - b.mean)))
    return max(0.0, mean_term + float(np.trace(a.cov) + np.trace(b.cov)) - 2.0 * cross_trace)


def frechet_clip_to_set(clip_mfcc: np.ndarray | MfccStats, reference: np.ndarray | MfccStats) -> float:
    """``frechet_clip_to_set``: Fréchet distance of one clip's MFCC statistics to a whole set's (the eval audio).

    Either side may be MFCC frames or precomputed :class:`MfccStats` (the held-out reference is
    accumulated once over many files).
    """
    return frechet_distance(_as_stats(clip_mfcc), _as_stats(reference))


def _as_stats(value: np.ndarray | MfccStats) -> MfccStats:
    return value if isinstance(value, MfccStats) else mfcc_stats(value)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


# ---- one clip ----

def clip_metrics(audio: np.ndarray, sample_rate: int, frame_rate: int, target_f0_hz: np.ndarray,
                 target_loudness_db: np.ndarray, reference_mfcc_stats: MfccStats, *,
                 harmonic_audio: np.ndarray | None = None, noise_audio: np.ndarray | None = None,
                 target_voiced: np.ndarray | None = None, f0_method: str = "swift", fmin_hz: float = 30.0,
                 fmax_hz: float = 2000.0, loudness_n_fft: int = 512) -> dict[str, float]:
    """All per-clip metrics of pipeline.vocab.CLIP_METRICS except ``reencode_loglik`` (needs the encoder) and ``valid``.

    ``target_f0_hz`` / ``target_loudness_db`` are the conditioning on the frame grid. ``hnr_db`` is
    from the controls when both synthesiser branches are given, else estimated from the audio.
    ``loudness_n_fft`` must match the one the conditioning was computed with (prepare.loudness_n_fft).
    """
    target_f0 = np.asarray(target_f0_hz, np.float64)
    n_frames = len(target_f0)
    mfcc = mfcc_frames(audio, sample_rate)
    metrics = {
        "spectral_flatness": spectral_flatness(audio),
        "timbre_consistency": timbre_consistency(mfcc),
        "frechet_clip_to_set": frechet_clip_to_set(mfcc, reference_mfcc_stats) if len(mfcc) >= 2 else math.nan,
    }
    if harmonic_audio is not None and noise_audio is not None:
        metrics["hnr_db"] = hnr_db_from_controls(harmonic_audio, noise_audio)
    else:
        metrics["hnr_db"] = hnr_db_from_audio(audio, sample_rate, target_f0, frame_rate)
    f0, confidence = estimate_f0(audio, sample_rate, frame_rate, n_frames, method=f0_method,
                                 fmin_hz=fmin_hz, fmax_hz=fmax_hz)
    metrics["f0_rpa"], metrics["f0_median_cents"] = f0_accuracy(f0, confidence, target_f0, target_voiced)
    loudness = compute_loudness_db(audio, sample_rate, frame_rate, n_frames, n_fft=loudness_n_fft)
    metrics["loudness_l1_db"] = loudness_l1_db(target_loudness_db, loudness)
    return metrics


def is_valid(metrics: dict[str, float], min_hnr_db: float, min_f0_rpa: float) -> tuple[bool, str]:
    """``valid``: does the clip sound like a pitched note? (ok, reason naming each failed threshold).

    The report's invalid cluster was a noise-only sound: low harmonic energy (``hnr_db``) and no
    trackable pitch (``f0_rpa``). A missing or NaN metric fails its threshold.
    """
    failures = []
    for name, minimum in (("hnr_db", min_hnr_db), ("f0_rpa", min_f0_rpa)):
        value = metrics.get(name, math.nan)
        if value is None or not np.isfinite(value):
            failures.append(f"{name} is undefined")
        elif value < minimum:
            failures.append(f"{name} {value:.3g} < {minimum:.3g}")
    if failures:
        return False, "; ".join(failures)
    return True, f"hnr_db >= {min_hnr_db:.3g} and f0_rpa >= {min_f0_rpa:.3g}"


# ---- helpers ----

def _active(frame_power: np.ndarray, top_db: float = ACTIVE_TOP_DB) -> np.ndarray:
    """Frames within ``top_db`` of the loudest frame (all False for digital silence)."""
    peak = float(frame_power.max()) if frame_power.size else 0.0
    if peak <= 0:
        return np.zeros(frame_power.shape, bool)
    return frame_power >= peak * 10.0 ** (-top_db / 10.0)


def _hop(sample_rate: int, frame_rate: int) -> int:
    if sample_rate % frame_rate:
        raise ValueError(f"frame_rate {frame_rate} must divide sample_rate {sample_rate} (integer hop)")
    return sample_rate // frame_rate


def _same_length(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    arrays = tuple(np.asarray(a, np.float64).reshape(-1) for a in arrays)
    n = min(len(a) for a in arrays)
    return tuple(a[:n] for a in arrays)
