"""Mixture fitting, pickle-free persistence, metrics and the choice of K."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from pipeline.evaluation.aggregate import recommend_k
from pipeline.prior.mixture import (
    ARRAYS_FILE,
    META_FILE,
    cholesky_factors,
    fit_mixture,
    full_covariances,
    load_mixture,
    mixture_metrics,
    save_mixture,
)

CENTRES = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0]])


def separated_clusters(n_per: int, seed: int) -> np.ndarray:
    """Three well-separated correlated blobs in 3-D."""
    rng = np.random.default_rng(seed)
    mixing = np.array([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [0.2, -0.3, 0.6]])
    return np.concatenate([c + rng.standard_normal((n_per, 3)) @ mixing.T for c in CENTRES])


@pytest.fixture(scope="module")
def z_train() -> np.ndarray:
    return separated_clusters(300, seed=1)


@pytest.fixture(scope="module")
def z_eval() -> np.ndarray:
    return separated_clusters(100, seed=2)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_save_load_round_trip_without_pickle(tmp_path, z_train, covariance_type):
    gmm = fit_mixture(z_train, 3, covariance_type, seed=0)
    save_mixture(gmm, tmp_path)
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as data:
        assert set(data.files) == {"weights", "means", "covariances", "precisions_cholesky"}
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["covariance_type"] == covariance_type and meta["n_components"] == 3 and meta["n_features"] == 3

    loaded = load_mixture(tmp_path)
    np.testing.assert_allclose(loaded.score_samples(z_train), gmm.score_samples(z_train), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(loaded.predict(z_train), gmm.predict(z_train))
    np.testing.assert_array_equal(loaded.precisions_, gmm.precisions_)
    assert loaded.converged_ == gmm.converged_ and loaded.n_iter_ == gmm.n_iter_
    assert loaded.sample(5)[0].shape == (5, 3)


def test_fit_is_reproducible(z_train):
    a = fit_mixture(z_train, 3, "full", seed=7)
    b = fit_mixture(z_train, 3, "full", seed=7)
    np.testing.assert_array_equal(a.means_, b.means_)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_cholesky_factors_reproduce_covariances(z_train, covariance_type):
    gmm = fit_mixture(z_train, 3, covariance_type, seed=0)
    covs = full_covariances(gmm)
    factors = cholesky_factors(gmm)
    assert covs.shape == factors.shape == (3, 3, 3)
    np.testing.assert_allclose(factors @ np.swapaxes(factors, 1, 2), covs, atol=1e-12)
    assert np.allclose(np.triu(factors, 1), 0.0)
    # the expanded covariances give sklearn's own mixture density
    log_terms = [np.log(w) + multivariate_normal(m, c).logpdf(z_train[:5])
                 for w, m, c in zip(gmm.weights_, gmm.means_, covs)]
    np.testing.assert_allclose(logsumexp(log_terms, axis=0), gmm.score_samples(z_train[:5]), atol=1e-9)


def test_mixture_metrics(z_train, z_eval):
    gmm = fit_mixture(z_train, 3, "full", seed=0)
    metrics = mixture_metrics(gmm, z_train, z_eval)
    assert set(metrics) == {"bic", "aic", "train_loglik", "heldout_loglik", "weights"}
    assert np.isfinite(metrics["heldout_loglik"])
    assert metrics["heldout_loglik"] == pytest.approx(np.mean(gmm.score_samples(z_eval)))
    assert sum(metrics["weights"]) == pytest.approx(1.0)
    assert metrics["weights"] == pytest.approx([1 / 3] * 3, abs=0.02)
    assert metrics["bic"] > metrics["aic"]  # log(900) > 2 per parameter
    json.dumps(metrics)  # plain Python types only
    assert mixture_metrics(gmm, z_train, np.empty((0, 3)))["heldout_loglik"] is None


def test_recommend_k_finds_the_true_number_of_clusters(z_train, z_eval):
    rows = []
    for k in (1, 2, 3, 4, 5, 6):
        gmm = fit_mixture(z_train, k, "full", seed=0)
        rows.append({"k": k, **mixture_metrics(gmm, z_train, z_eval)})
    assert recommend_k(pd.DataFrame(rows)) == 3
    assert recommend_k(rows) == 3


def test_recommend_k_ties_and_failed_fits():
    rows = [{"k": 2, "bic": 10.0, "heldout_loglik": -1.0}, {"k": 4, "bic": 10.0, "heldout_loglik": -0.5},
            {"k": 3, "bic": float("nan"), "heldout_loglik": 0.0}, {"k": 5, "bic": 12.0, "heldout_loglik": 9.0}]
    assert recommend_k(rows) == 4  # tie on BIC: better held-out likelihood
    assert recommend_k([{"k": 6, "bic": 1.0}, {"k": 2, "bic": 1.0}]) == 2  # full tie: fewer clusters
    with pytest.raises(ValueError):
        recommend_k([{"k": 2, "bic": float("nan")}])


def test_fit_rejects_bad_input(z_train):
    with pytest.raises(ValueError, match="covariance_type"):
        fit_mixture(z_train, 2, "banana", seed=0)
    with pytest.raises(ValueError, match="n_components"):
        fit_mixture(z_train[:3], 4, "full", seed=0)
