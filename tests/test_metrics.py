"""Per-clip metrics on signals whose answers are known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.audio.features import estimate_f0
from pipeline.metrics.clip import (
    MfccAccumulator,
    MfccStats,
    clip_metrics,
    f0_accuracy,
    frechet_clip_to_set,
    frechet_distance,
    hnr_db_from_audio,
    hnr_db_from_controls,
    is_valid,
    loudness_l1_db,
    mfcc_frames,
    mfcc_stats,
    spectral_flatness,
    timbre_consistency,
)

SR = 16_000
FRAME_RATE = 250
SECONDS = 2.0
N_FRAMES = int(SECONDS * FRAME_RATE)
F0 = 220.0
TIME = np.arange(int(SECONDS * SR)) / SR
TARGET_F0 = np.full(N_FRAMES, F0)


def harmonic_tone(amplitudes: np.ndarray) -> np.ndarray:
    """Sum of harmonics of F0; ``amplitudes`` is [n_harmonics] (steady) or [n_samples, n_harmonics]."""
    amplitudes = np.broadcast_to(amplitudes, (len(TIME), np.shape(amplitudes)[-1]))
    phases = 2 * np.pi * F0 * np.outer(TIME, np.arange(1, amplitudes.shape[1] + 1))
    return (amplitudes * np.sin(phases)).sum(axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def tone() -> np.ndarray:
    return harmonic_tone(0.3 / np.arange(1, 6))


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal(len(TIME))).astype(np.float32)


@pytest.fixture(scope="module")
def changing_tone() -> np.ndarray:
    """Same pitch, a new random harmonic balance every 50 ms: an unstable timbre."""
    blocks = np.random.default_rng(1).uniform(0.0, 0.3, size=(int(SECONDS * 20) + 1, 8))
    return harmonic_tone(np.repeat(blocks, SR // 20, axis=0)[: len(TIME)])


def test_tone_pitch_is_tracked(tone):
    f0, confidence = estimate_f0(tone, SR, FRAME_RATE, N_FRAMES)
    rpa, median_cents = f0_accuracy(f0, confidence, TARGET_F0)
    assert rpa > 0.95
    assert median_cents < 5.0


def test_f0_accuracy_by_hand():
    target = np.array([100.0, 100.0, 100.0, 100.0, 0.0])
    measured = np.array([100.0, 100.0 * 2 ** (40 / 1200), 100.0 * 2 ** (-60 / 1200), 100.0, 300.0])
    confidence = np.array([0.9, 0.9, 0.9, 0.1, 0.9])  # frame 3 unvoiced: a miss; frame 4 not in target
    rpa, median_cents = f0_accuracy(measured, confidence, target)
    assert rpa == pytest.approx(2 / 4)
    assert median_cents == pytest.approx(40.0)
    assert f0_accuracy(measured, confidence, target, target_voiced=[1, 1, 0, 0, 0])[0] == pytest.approx(1.0)
    assert math.isnan(f0_accuracy(measured, confidence, np.zeros(5))[0])


def test_loudness_l1():
    assert loudness_l1_db(np.array([-20.0, -30.0, -40.0]), np.array([-22.0, -30.0, -35.0])) == pytest.approx(7 / 3)


def test_hnr_from_controls_on_known_energies():
    harmonic = np.full(1000, 2.0)  # energy 4000
    noise = np.full(1000, 0.2)  # energy 40
    assert hnr_db_from_controls(harmonic, noise) == pytest.approx(20.0)
    assert hnr_db_from_controls(noise, harmonic) == pytest.approx(-20.0)
    assert hnr_db_from_controls(harmonic, harmonic) == pytest.approx(0.0)


def test_hnr_from_audio_separates_tone_and_noise(tone, noise):
    assert hnr_db_from_audio(tone, SR, TARGET_F0, FRAME_RATE) > 15.0
    noise_hnr = hnr_db_from_audio(noise, SR, TARGET_F0, FRAME_RATE)
    # white noise: the share b of bins within ±2 bins of a harmonic sets 10·log10(b / (1 - b))
    freqs = np.fft.rfftfreq(4096, 1 / SR)
    b = np.mean(np.abs(freqs - np.maximum(np.round(freqs / F0), 1) * F0) <= 2 * SR / 4096)
    assert noise_hnr == pytest.approx(10 * np.log10(b / (1 - b)), abs=1.0)
    # an equal mix of both lands in between
    assert noise_hnr < hnr_db_from_audio(tone + noise, SR, TARGET_F0, FRAME_RATE) < 15.0
    assert math.isnan(hnr_db_from_audio(np.zeros_like(tone), SR, TARGET_F0, FRAME_RATE))


def test_spectral_flatness(tone, noise):
    assert spectral_flatness(tone) < 0.01
    assert spectral_flatness(noise) > 0.4
    # silence around a tone does not count as flat spectrum
    padded = np.concatenate([np.zeros(SR, np.float32), tone, np.zeros(SR, np.float32)])
    assert spectral_flatness(padded) < 0.01


def test_timbre_consistency_is_lower_for_a_steady_tone(tone, noise, changing_tone):
    steady = timbre_consistency(mfcc_frames(tone, SR))
    assert mfcc_frames(tone, SR).shape[1] == 19  # 20 MFCCs without c0
    assert steady < 0.6 * timbre_consistency(mfcc_frames(noise, SR))
    assert steady < 0.3 * timbre_consistency(mfcc_frames(changing_tone, SR))
    # a level change is not a timbre change: c0 is excluded
    assert timbre_consistency(mfcc_frames(0.1 * tone, SR)) == pytest.approx(steady, rel=0.05)


def test_frechet_clip_to_set(tone, noise, changing_tone):
    reference = mfcc_stats(mfcc_frames(tone, SR))
    assert frechet_clip_to_set(mfcc_frames(tone, SR), reference) == pytest.approx(0.0, abs=1e-6)
    first_half = frechet_clip_to_set(mfcc_frames(tone[: len(tone) // 2], SR), reference)
    to_noise = frechet_clip_to_set(mfcc_frames(noise, SR), reference)
    to_changing = frechet_clip_to_set(mfcc_frames(changing_tone, SR), reference)
    assert first_half < 0.05 * min(to_noise, to_changing)
    # symmetric, and zero only for identical statistics
    assert frechet_clip_to_set(reference, mfcc_frames(noise, SR)) == pytest.approx(to_noise, rel=1e-6)


def test_frechet_distance_closed_form():
    """Diagonal Gaussians: d² = |Δμ|² + Σ (σ_a - σ_b)²."""
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    distance = frechet_distance(MfccStats(np.zeros(3), np.diag(var_a)), MfccStats(np.ones(3), np.diag(var_b)))
    assert distance == pytest.approx(3.0 + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2))


def test_mfcc_accumulator_matches_one_pass():
    frames = np.random.default_rng(3).normal(50.0, 10.0, size=(1000, 19)) @ np.triu(np.ones((19, 19)))
    accumulator = MfccAccumulator()
    for chunk in np.array_split(frames, [10, 11, 400, 999]):
        accumulator.add(chunk)
    accumulator.add(np.empty((0, 19)))
    stats = accumulator.stats()
    assert accumulator.count == 1000
    np.testing.assert_allclose(stats.mean, frames.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(frames.T), rtol=1e-10)
    mean, cov = mfcc_stats(frames)
    np.testing.assert_allclose(mean, stats.mean, rtol=1e-12)
    np.testing.assert_allclose(cov, stats.cov, rtol=1e-10)
    with pytest.raises(ValueError):
        MfccAccumulator().stats()


def test_noise_is_invalid_and_names_hnr(noise):
    f0, confidence = estimate_f0(noise, SR, FRAME_RATE, N_FRAMES)
    rpa, median_cents = f0_accuracy(f0, confidence, TARGET_F0)
    metrics = {"hnr_db": hnr_db_from_audio(noise, SR, TARGET_F0, FRAME_RATE), "f0_rpa": rpa}
    ok, reason = is_valid(metrics, min_hnr_db=0.0, min_f0_rpa=0.5)
    assert not ok and "hnr_db" in reason and "f0_rpa" in reason
    ok, reason = is_valid({"hnr_db": -3.0, "f0_rpa": 0.9}, min_hnr_db=0.0, min_f0_rpa=0.5)
    assert not ok and "hnr_db" in reason and "f0_rpa" not in reason
    ok, reason = is_valid({"hnr_db": float("nan"), "f0_rpa": 0.9}, min_hnr_db=0.0, min_f0_rpa=0.5)
    assert not ok and "hnr_db is undefined" in reason
    assert is_valid({"hnr_db": 12.0, "f0_rpa": 0.9}, min_hnr_db=0.0, min_f0_rpa=0.5)[0]


def test_clip_metrics_on_a_clean_tone(tone):
    """The one test that loads ddsp (for its loudness): all metric names, tone-like values."""
    from pipeline.audio.features import compute_loudness_db

    loudness = compute_loudness_db(tone, SR, FRAME_RATE, N_FRAMES)
    reference = mfcc_stats(mfcc_frames(tone, SR))
    metrics = clip_metrics(tone, SR, FRAME_RATE, TARGET_F0, loudness + 3.0, reference)
    assert set(metrics) == {"f0_rpa", "f0_median_cents", "loudness_l1_db", "hnr_db", "spectral_flatness",
                            "timbre_consistency", "frechet_clip_to_set"}
    assert metrics["f0_rpa"] > 0.95
    assert metrics["loudness_l1_db"] == pytest.approx(3.0, abs=1e-4)
    assert metrics["hnr_db"] > 15.0
    assert metrics["frechet_clip_to_set"] == pytest.approx(0.0, abs=1e-6)
    assert is_valid(metrics, min_hnr_db=10.0, min_f0_rpa=0.8) == (True, "hnr_db >= 10 and f0_rpa >= 0.8")
    with_controls = clip_metrics(tone, SR, FRAME_RATE, TARGET_F0, loudness, reference,
                                 harmonic_audio=tone, noise_audio=0.1 * tone)
    assert with_controls["hnr_db"] == pytest.approx(20.0)
