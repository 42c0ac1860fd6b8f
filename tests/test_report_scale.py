"""ddsp 1.x loudness on signals with a closed-form answer, and the fitted 1.x -> 3.x loudness mapping."""
from __future__ import annotations

import json

import librosa
import numpy as np
import pytest

from pipeline.audio.report_scale import (
    LD_RANGE_V1,
    REF_DB_V1,
    LoudnessMapping,
    compute_loudness_v1,
    corpus_loudness_pairs,
    fit_loudness_mapping,
    load_mapping,
    loudness_pairs,
    report_db_v1,
    report_loudness_db_v3,
    save_mapping,
)

SR, FR, N_FFT = 16000, 250, 2048


def a_weights() -> np.ndarray:
    with np.errstate(divide="ignore"):
        return librosa.A_weighting(librosa.fft_frequencies(sr=SR, n_fft=N_FFT))


def steady(loudness: np.ndarray) -> np.ndarray:
    """Frames whose 2048-sample window lies inside the signal (1.x 'end' framing, 2 s of audio)."""
    return loudness[: 2 * FR - N_FFT // (SR // FR) - 1]


def test_report_constant_on_the_1x_scale():
    assert report_db_v1() == pytest.approx((0.39189076 - 1.0) * 120.0)
    assert report_db_v1() == pytest.approx(-72.973, abs=1e-3)


def test_bin_centred_sine_matches_the_closed_form():
    # 1000 Hz is bin 128 of a 2048-point FFT at 16 kHz; a periodic Hann window puts A·N/4 in that
    # bin, A·N/8 in its two neighbours and nothing elsewhere, so every other bin sits on the floor
    amplitude = 0.5
    t = np.arange(2 * SR) / SR
    audio = amplitude * np.sin(2 * np.pi * 1000.0 * t)
    loudness = steady(compute_loudness_v1(audio, SR, FR, dtype=np.float64))
    weights = a_weights()
    peak = 20 * np.log10(amplitude * N_FFT / 4) + weights[128] - REF_DB_V1
    sides = [20 * np.log10(amplitude * N_FFT / 8) + weights[k] - REF_DB_V1 for k in (127, 129)]
    expected = (peak + sum(sides) - (N_FFT // 2 + 1 - 3) * LD_RANGE_V1) / (N_FFT // 2 + 1)
    np.testing.assert_allclose(loudness, expected, atol=1e-3)
    assert expected == pytest.approx(-119.6, abs=0.1)  # a pure tone is almost the floor on the 1.x scale


def test_white_noise_matches_the_expected_log_power():
    # complex Gaussian bins: E[10 log10 |X|²] = 10 log10(σ² Σ w²) - 10 γ / ln 10 (log of an exponential)
    sigma = 0.5
    audio = np.random.default_rng(0).normal(0.0, sigma, 2 * SR)
    loudness = steady(compute_loudness_v1(audio, SR, FR))
    window = librosa.filters.get_window("hann", N_FFT, fftbins=True)
    weights = a_weights()
    log_bias = 10 * np.euler_gamma / np.log(10)
    expected = np.mean(10 * np.log10(sigma**2 * np.sum(window**2)) - log_bias + weights - REF_DB_V1)
    assert loudness.mean() == pytest.approx(expected, abs=0.15)
    # 1.x's reference: white noise of amplitude 1 is near 0 dB
    unit = steady(compute_loudness_v1(np.random.default_rng(1).uniform(-1, 1, 2 * SR), SR, FR))
    assert abs(unit.mean()) < 3.0


def test_framing_and_length():
    audio = np.random.default_rng(2).normal(0, 0.1, SR)
    assert len(compute_loudness_v1(audio, SR, FR)) == FR  # int(seconds · frame_rate), as 1.x
    assert len(compute_loudness_v1(audio, SR, FR, n_frames=300)) == 300
    assert compute_loudness_v1(audio, SR, FR, n_frames=300)[-1] == -LD_RANGE_V1
    centred = compute_loudness_v1(audio, SR, FR, padding="center")
    end = compute_loudness_v1(audio, SR, FR, padding="end")
    # 'center' is 'end' delayed by n_fft/2 samples = 16 frames at hop 64
    np.testing.assert_allclose(centred[16:200], end[:184], atol=1e-4)
    np.testing.assert_allclose(compute_loudness_v1(audio, SR, FR, block_frames=37), end, rtol=0, atol=1e-9)
    assert len(compute_loudness_v1(audio[:10], SR, FR)) == 0  # shorter than one frame period, as 1.x
    silence = compute_loudness_v1(np.zeros(SR), SR, FR)
    np.testing.assert_array_equal(silence, -LD_RANGE_V1)
    with pytest.raises(ValueError, match="divide"):
        compute_loudness_v1(audio, SR, 300)


def test_mapping_is_monotone_and_fits_a_known_relation():
    rng = np.random.default_rng(3)
    v1 = rng.uniform(-110, -20, 5000)
    v3 = 0.8 * v1 + 30 + 0.005 * (v1 + 60) ** 2 + rng.normal(0, 2, 5000)  # increasing on [-110, -20]
    truth = 0.8 * -70 + 30 + 0.005 * 100
    # isotonic regression estimates E[v3 | v1]; percentile matching matches distributions (the noise
    # widens v3's, so it is biased away from the median)
    for method, tolerance in (("isotonic", 1.0), ("quantile", 2.5)):
        mapping = fit_loudness_mapping(v1, v3, method=method)
        assert np.all(np.diff(mapping.v1_db) > 0) and np.all(np.diff(mapping.v3_db) >= 0)
        grid = np.linspace(-130, 0, 500)
        assert np.all(np.diff(mapping(grid)) >= 0)
        assert float(mapping(-70.0)) == pytest.approx(truth, abs=tolerance)
        assert len(mapping.v1_db) <= 201
    # outside the fitted range the map is clipped to its end values
    assert float(mapping(-500.0)) == mapping.v3_db[0]


def test_mapping_merges_floor_duplicates():
    v1 = np.concatenate([np.full(500, -120.0), np.linspace(-100, -40, 500)])
    v3 = np.concatenate([np.full(500, -80.0), np.linspace(-60, -10, 500)])
    mapping = fit_loudness_mapping(v1, v3)
    assert mapping.v1_db[0] == -120.0 and mapping.v3_db[0] == -80.0
    assert np.all(np.diff(mapping.v1_db) > 0)


def test_save_load_and_the_report_constant(tmp_path):
    v1 = np.linspace(-120, 0, 300)
    mapping = fit_loudness_mapping(v1, v1 / 2, method="quantile")
    path = save_mapping(mapping, tmp_path / "scale" / "loudness_map.json")
    assert json.loads(path.read_text())["method"] == "quantile"
    loaded = load_mapping(path)
    assert loaded == mapping
    assert report_loudness_db_v3(loaded) == pytest.approx(report_db_v1() / 2, abs=0.05)
    broken = json.loads(path.read_text())
    broken["v3_db"] = broken["v3_db"][::-1]
    path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="monotone"):
        load_mapping(path)
    with pytest.raises(ValueError, match="method"):
        fit_loudness_mapping(v1, v1, method="spline")
    with pytest.raises(ValueError, match="distinct"):
        fit_loudness_mapping(np.zeros(10), np.zeros(10))
    assert isinstance(loaded, LoudnessMapping)


def stationary_tone(level: float, seed: int, secs: float = 1.0) -> np.ndarray:
    """A steady harmonic tone with a little noise: constant loudness on both scales."""
    t = np.arange(int(secs * SR)) / SR
    tone = sum(np.sin(2 * np.pi * 220.0 * (k + 1) * t + k) / (k + 1) for k in range(6))
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (level * (tone / 3 + noise)).astype(np.float32)


def test_mapping_fitted_on_a_corpus_recovers_the_3x_loudness_of_steady_audio():
    levels = np.geomspace(0.003, 0.9, 25)  # 2 dB apart
    clips = [stationary_tone(level, i, secs=0.4) for i, level in enumerate(levels)]
    v1, v3 = corpus_loudness_pairs(clips, SR, FR, 512)
    assert len(v1) == len(v3) == 25 * (100 - 2 * 16)  # clip edges trimmed
    mapping = fit_loudness_mapping(v1, v3)
    # a level between two of the corpus levels, never seen in the fit
    probe_v1, probe_v3 = loudness_pairs(stationary_tone(float(np.sqrt(levels[9] * levels[10])), 99), SR, FR, 512)
    inner = slice(None)  # edges already trimmed
    assert np.ptp(probe_v3[inner]) < 1.0  # the probe's loudness really is constant
    mapped = float(np.median(mapping(probe_v1[inner])))
    assert mapped == pytest.approx(float(np.median(probe_v3[inner])), abs=1.0)
    # and the two scales differ by far more than that on this audio
    assert abs(np.median(probe_v1[inner]) - np.median(probe_v3[inner])) > 10.0
