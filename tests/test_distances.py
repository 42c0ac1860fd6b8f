"""Set-level distances to real audio: zero for the same distribution, growing with a shift, unit-free;
their intervals over examples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.linalg import sqrtm

from pipeline.evaluation.tables import real_reference_frames, set_distances
from pipeline.metrics.distances import (
    frechet_to_real,
    kad_to_real,
    median_bandwidth,
    mmd2_unbiased,
    standardise_to_real,
    subsample_frames,
)

D = 6


def frames(n: int, seed: int, shift: float = 0.0, scales=None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(1.0, 20.0, D) if scales is None else scales  # MFCC-like unequal spreads
    return (rng.standard_normal((n, D)) + shift) * scales + np.arange(D)


@pytest.fixture(scope="module")
def real():
    return frames(1500, seed=0)


def test_same_distribution_is_near_zero(real):
    same = frames(1500, seed=1)
    kad = kad_to_real(same, real)
    assert abs(kad) < 2e-3  # unbiased: may be slightly negative
    assert frechet_to_real(same, real) < 0.03


def test_distances_grow_monotonically_with_the_shift(real):
    shifts = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
    kad = [kad_to_real(frames(1500, seed=2, shift=s), real) for s in shifts]
    fd = [frechet_to_real(frames(1500, seed=2, shift=s), real) for s in shifts]
    assert np.all(np.diff(kad) > 0) and np.all(np.diff(fd) > 0)
    assert kad[-1] > 100 * abs(kad[0])
    # Fréchet of a pure mean shift s in standardised units: |δ|² = D s² (plus sampling noise)
    assert fd[-2] == pytest.approx(D * 1.0, rel=0.1)


def test_a_wider_distribution_is_farther(real):
    wider = frames(1500, seed=3, scales=np.linspace(1.0, 20.0, D) * 1.5)
    assert kad_to_real(wider, real) > 10 * abs(kad_to_real(frames(1500, seed=3), real))


def test_invariant_to_a_global_scale_and_offset_of_the_features(real):
    gen = frames(1200, seed=4, shift=0.3)
    for scale, offset in ((1000.0, 0.0), (1e-3, 5.0)):
        assert kad_to_real(gen * scale + offset, real * scale + offset) == pytest.approx(kad_to_real(gen, real),
                                                                                         rel=1e-6)
        assert frechet_to_real(gen * scale + offset, real * scale + offset) == pytest.approx(
            frechet_to_real(gen, real), rel=1e-6)


def test_mmd_matches_a_direct_double_loop():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((9, 3)) + 0.5
    sigma = 1.3

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(a, b) for a in x for b in y) / (7 * 9)
    assert mmd2_unbiased(x, y, sigma) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_frechet_matches_scipy_sqrtm(real):
    gen = frames(800, seed=6, shift=0.4, scales=np.linspace(2.0, 9.0, D))
    g, r = standardise_to_real(gen, real)
    mu_g, mu_r = g.mean(0), r.mean(0)
    cov_g, cov_r = np.cov(g.T), np.cov(r.T)
    expected = np.sum((mu_g - mu_r) ** 2) + np.trace(cov_g + cov_r - 2 * np.real(sqrtm(cov_g @ cov_r)))
    assert frechet_to_real(gen, real) == pytest.approx(expected, rel=1e-8)


def test_median_bandwidth_of_standard_normals():
    # |a - b|² of two N(0, I_d) draws is 2·χ²_d: the median distance is sqrt(2 · median χ²_d)
    x = np.random.default_rng(7).standard_normal((2000, D))
    from scipy.stats import chi2

    assert median_bandwidth(x) == pytest.approx(np.sqrt(2 * chi2(D).median()), rel=0.02)


def test_subsampling_is_seeded_and_capped(real):
    gen = frames(5000, seed=8, shift=0.2)
    a = kad_to_real(gen, real, max_frames=500, seed=3)
    assert a == kad_to_real(gen, real, max_frames=500, seed=3)
    assert a != kad_to_real(gen, real, max_frames=500, seed=4)
    picked = subsample_frames(gen, 500, np.random.default_rng(0))
    assert picked.shape == (500, D)
    assert subsample_frames(gen, None, np.random.default_rng(0)) is gen


def test_bad_input_is_rejected(real):
    with pytest.raises(ValueError, match="dims"):
        kad_to_real(np.zeros((10, D + 1)), real)
    with pytest.raises(ValueError, match="NaN"):
        frechet_to_real(np.full((10, D), np.nan), real)
    with pytest.raises(ValueError, match="at least 2"):
        kad_to_real(real[:1], real)
    with pytest.raises(ValueError, match="identical"):
        kad_to_real(np.ones((5, 2)), np.ones((5, 2)))


def per_example_sets(n_examples: int, outlier_shift: float = 0.0):
    """Real frames per example (each example its own distribution), and one method's clips on the same
    examples drawn from the same distributions, except example 0 shifted by ``outlier_shift``. The
    frames go straight into set_distances' MFCC cache, keyed by the clip paths."""
    real = {e: frames(300, seed=10 + e, shift=0.5 * e) for e in range(n_examples)}
    cache, rows = {}, []
    for e in range(n_examples):
        wav = f"e{e}.wav"
        cache[str(Path("clips") / wav)] = frames(300, seed=50 + e, shift=0.5 * e + (outlier_shift if e == 0 else 0.0))
        rows.append({"conditioning": "real", "method": "direct", "example": e, "folder": "clips", "wav": wav})
    return pd.DataFrame(rows), real, cache


def test_set_distance_intervals_span_the_spread_between_examples():
    clips, real, cache = per_example_sets(5)
    matched = set_distances(clips, real, max_frames=None, seed=0, cache=cache)["direct"]
    clips, real, cache = per_example_sets(5, outlier_shift=3.0)
    outlier = set_distances(clips, real, max_frames=None, seed=0, cache=cache)["direct"]
    assert matched["kad_to_real"]["ci_low"] < 0 < matched["kad_to_real"]["ci_high"]  # unbiased: ~0 when matched
    for name in ("kad_to_real", "frechet_to_real"):
        for entry in (matched, outlier):
            assert entry[name]["ci_low"] <= entry[name]["mean"] <= entry[name]["ci_high"]
        # one example far off: farther as a set, and much less certain (its deletion moves the value most)
        assert outlier[name]["mean"] > 3 * matched[name]["mean"]
        width = {key: entry[name]["ci_high"] - entry[name]["ci_low"] for key, entry in
                 (("matched", matched), ("outlier", outlier))}
        assert width["outlier"] > 5 * width["matched"]
    # the value on every example is what kad_to_real gives on all frames at once
    gen = np.concatenate([cache[str(Path("clips") / f"e{e}.wav")] for e in range(5)])
    assert outlier["kad_to_real"]["mean"] == kad_to_real(gen, np.concatenate(list(real.values())), max_frames=None)


def test_set_distances_with_two_examples_have_no_interval():
    clips, real, cache = per_example_sets(2)
    entry = set_distances(clips, real, max_frames=None, seed=0, cache=cache)["direct"]["kad_to_real"]
    assert entry["ci_low"] is None and entry["ci_high"] is None and np.isfinite(entry["mean"])


def test_real_reference_frames_are_keyed_by_example_and_reject_other_names(tmp_path):
    tone = np.sin(2 * np.pi * 220 * np.arange(8000) / 16000).astype(np.float32)
    for example in (0, 2):
        sf.write(tmp_path / f"real_e{example}.wav", tone, 16000)
    assert sorted(real_reference_frames(tmp_path, {})) == [0, 2]
    sf.write(tmp_path / "take1.wav", tone, 16000)
    with pytest.raises(ValueError, match="take1.wav"):
        real_reference_frames(tmp_path, {})
