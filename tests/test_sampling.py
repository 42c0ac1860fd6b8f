"""The sampling methods of ARCHITECTURE.md, checked on their statistics and on exact reproducibility."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import solve_triangular
from sklearn.mixture import GaussianMixture

from pipeline.latent.ztable import z_matrix
from pipeline.prior.mixture import cholesky_factors
from pipeline.prior.samplers import (
    RHO_MAX,
    ar1_filter,
    estimate_rho,
    make_rng,
    sample_direct,
    sample_hold,
    sample_inverse_transform,
    sample_temporal,
)

D = 4
N_DRAWS = 20_000


def mixture_from_parameters(weights, means, covariances) -> GaussianMixture:
    """A 'fitted' full-covariance mixture with known parameters."""
    gmm = GaussianMixture(n_components=len(weights), covariance_type="full")
    gmm.weights_ = np.asarray(weights, float)
    gmm.means_ = np.asarray(means, float)
    gmm.covariances_ = np.asarray(covariances, float)
    gmm.precisions_cholesky_ = np.linalg.inv(np.linalg.cholesky(gmm.covariances_)).transpose(0, 2, 1)
    gmm.precisions_ = np.linalg.inv(gmm.covariances_)
    return gmm


def random_covariance(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.5 * np.eye(d)


@pytest.fixture(scope="module")
def gmm() -> GaussianMixture:
    rng = np.random.default_rng(123)
    means = rng.normal(0.0, 5.0, size=(3, D))
    covs = np.stack([random_covariance(rng, D) for _ in range(3)])
    return mixture_from_parameters([0.2, 0.5, 0.3], means, covs)


def whiten(gmm: GaussianMixture, k: int, z: np.ndarray) -> np.ndarray:
    return solve_triangular(cholesky_factors(gmm)[k], (z - gmm.means_[k]).T, lower=True).T


def assert_cluster_moments(gmm: GaussianMixture, k: int, z: np.ndarray, mean_tol: float, cov_tol: float) -> None:
    """Sample mean within mean_tol standard deviations; covariance within cov_tol relative (Frobenius)."""
    cov = gmm.covariances_[k]
    std = np.sqrt(np.diag(cov))
    assert np.all(np.abs(z.mean(axis=0) - gmm.means_[k]) < mean_tol * std)
    assert np.linalg.norm(np.cov(z.T) - cov) < cov_tol * np.linalg.norm(cov)


def test_make_rng_streams_are_reproducible_and_distinct():
    a = make_rng(0, 8, "temporal", 3).random(5)
    np.testing.assert_array_equal(a, make_rng(0, 8, "temporal", 3).random(5))
    for other in (make_rng(1, 8, "temporal", 3), make_rng(0, 8, "temporal", 4), make_rng(0, 8, "direct", 3),
                  make_rng(0, 10, "temporal", 3), make_rng(0)):
        assert not np.array_equal(a, other.random(5))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_inverse_transform_matches_cluster_moments(gmm, k):
    z = sample_inverse_transform(gmm, k, N_DRAWS, make_rng(0, k))
    assert z.shape == (N_DRAWS, D)
    # standard error of the mean is std/sqrt(20000) = 0.007 std; of the covariance ~1-2 %
    assert_cluster_moments(gmm, k, z, mean_tol=0.03, cov_tol=0.05)
    # nearly uncorrelated in time: i.i.d. frames
    x = whiten(gmm, k, z)
    assert abs(np.mean([np.corrcoef(x[:-1, j], x[1:, j])[0, 1] for j in range(D)])) < 0.02


def test_direct_follows_weights_and_is_not_grouped(gmm):
    z, components = sample_direct(gmm, N_DRAWS, make_rng(0, "direct"))
    assert z.shape == (N_DRAWS, D) and components.shape == (N_DRAWS,)
    counts = np.bincount(components, minlength=3)
    expected = gmm.weights_ * N_DRAWS
    chi_square = float(np.sum((counts - expected) ** 2 / expected))
    assert chi_square < 13.8  # 99.9 % quantile of chi-square with 2 degrees of freedom
    # i.i.d. labels switch between frames with probability 1 - sum(pi^2) = 0.62; grouped ones ~never
    switches = np.count_nonzero(np.diff(components))
    expected_switches = (1 - np.sum(gmm.weights_**2)) * (N_DRAWS - 1)
    assert abs(switches - expected_switches) < 0.03 * expected_switches
    # each frame's z comes from its own component
    for k in range(3):
        assert_cluster_moments(gmm, k, z[components == k], mean_tol=0.06, cov_tol=0.1)


def test_temporal_with_rho_zero_is_inverse_transform_bit_for_bit(gmm):
    for k in range(3):
        a = sample_temporal(gmm, k, 500, 0.0, make_rng(5, "clip", k))
        b = sample_inverse_transform(gmm, k, 500, make_rng(5, "clip", k))
        np.testing.assert_array_equal(a, b)


def test_temporal_autocorrelation_and_marginals(gmm):
    rho, k = 0.9, 1
    z = sample_temporal(gmm, k, N_DRAWS, rho, make_rng(1, "temporal"))
    x = whiten(gmm, k, z)
    lag1 = np.mean([np.corrcoef(x[:-1, j], x[1:, j])[0, 1] for j in range(D)])
    assert abs(lag1 - rho) < 0.03
    # with rho = 0.9 the effective sample size is ~20000·0.1/1.9 ≈ 1000, hence the wider tolerances
    assert_cluster_moments(gmm, k, z, mean_tol=0.12, cov_tol=0.15)


def test_ar1_filter_keeps_unit_variance():
    eps = make_rng(2).standard_normal((50_000, 1))
    x = ar1_filter(eps, 0.7)
    assert x.var() == pytest.approx(1.0, abs=0.05)  # sd of the estimate ~0.013
    assert x[0, 0] == eps[0, 0]


@pytest.mark.parametrize("method", ["direct", "inverse_transform", "temporal", "hold"])
def test_same_seed_same_arrays_different_seed_different(gmm, method):
    def draw(seed: int) -> np.ndarray:
        rng = make_rng(seed, method)
        if method == "direct":
            return sample_direct(gmm, 300, rng)[0]
        if method == "inverse_transform":
            return sample_inverse_transform(gmm, 2, 300, rng)
        if method == "temporal":
            return sample_temporal(gmm, 2, 300, 0.8, rng)
        return sample_hold(gmm, 2, [50, 120, 200], 300, rng)

    np.testing.assert_array_equal(draw(11), draw(11))
    assert not np.array_equal(draw(11), draw(12))


def test_hold_is_constant_within_notes(gmm):
    onsets = [40, 100, 101, 250]
    z = sample_hold(gmm, 0, onsets, 300, make_rng(3, "hold"))
    assert z.shape == (300, D)
    bounds = [0, *onsets, 300]
    segments = [z[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
    for segment in segments:
        assert np.all(segment == segment[0])
    assert len({tuple(s[0]) for s in segments}) == len(segments)  # a fresh draw per note
    # an onset at every frame is inverse transform sampling
    np.testing.assert_array_equal(sample_hold(gmm, 0, range(300), 300, make_rng(4)),
                                  sample_inverse_transform(gmm, 0, 300, make_rng(4)))
    with pytest.raises(ValueError):
        sample_hold(gmm, 0, [300], 300, make_rng(4))


def ar1_table(gmm: GaussianMixture, rho_by_cluster: dict[int, float], n_examples: int, n_frames: int) -> pd.DataFrame:
    """A z table (extract_z's format) whose examples each run an AR(1) inside one cluster."""
    rng = np.random.default_rng(99)
    rows = []
    for example in range(n_examples):
        k = example % gmm.n_components
        x = ar1_filter(rng.standard_normal((n_frames, D)), rho_by_cluster[k])
        z = gmm.means_[k] + x @ cholesky_factors(gmm)[k].T
        frame = pd.DataFrame(z, columns=[f"z_{i}" for i in range(D)])
        frame.insert(0, "frame", np.arange(n_frames))
        frame.insert(0, "example_id", f"ex{example:03d}")
        rows.append(frame.assign(source="synthetic", split="train", f0_hz=220.0, loudness_db=-20.0))
    table = pd.concat(rows, ignore_index=True)
    return table.sample(frac=1.0, random_state=0).reset_index(drop=True)  # row order must not matter


def separated_mixture() -> GaussianMixture:
    rng = np.random.default_rng(7)
    means = np.array([[0.0] * D, [40.0] + [0.0] * (D - 1), [0.0, 40.0] + [0.0] * (D - 2)])
    return mixture_from_parameters([0.3, 0.3, 0.4], means, [random_covariance(rng, D) for _ in range(3)])


def test_estimate_rho_recovers_known_rho():
    gmm = separated_mixture()
    truth = {0: 0.8, 1: 0.3, 2: 0.95}
    table = ar1_table(gmm, truth, n_examples=30, n_frames=400)
    labels = gmm.predict(z_matrix(table))
    for k, rho in truth.items():
        estimate = estimate_rho(table, gmm, k, labels=labels)
        assert estimate.rho == pytest.approx(rho, abs=0.03), estimate.reason
        assert estimate.n_pairs == 10 * 399
    assert estimate_rho(table, gmm, 0).rho == estimate_rho(table, gmm, 0, labels=labels).rho


def test_estimate_rho_with_too_few_pairs_or_anticorrelation():
    gmm = separated_mixture()
    table = ar1_table(gmm, {0: 0.9, 1: 0.9, 2: 0.9}, n_examples=3, n_frames=6)
    estimate = estimate_rho(table, gmm, 1)
    assert estimate.rho == 0.0 and estimate.n_pairs == 5 and "need" in estimate.reason
    negative = ar1_table(gmm, {0: -0.5, 1: 0.0, 2: 0.0}, n_examples=3, n_frames=500)
    assert estimate_rho(negative, gmm, 0).rho == 0.0
    assert 0.0 <= estimate_rho(ar1_table(gmm, {0: 0.9999, 1: 0, 2: 0}, 3, 500), gmm, 0).rho <= RHO_MAX


def test_z_matrix_orders_columns_numerically():
    table = pd.DataFrame({"example_id": ["a"], "frame": [0], "z_10": [10.0], "z_2": [2.0], "f0_hz": [1.0],
                          **{f"z_{i}": [float(i)] for i in (0, 1, 3, 4, 5, 6, 7, 8, 9)}})
    np.testing.assert_array_equal(z_matrix(table), [np.arange(11.0)])
    with pytest.raises(ValueError):
        z_matrix(table.drop(columns="z_3"))
