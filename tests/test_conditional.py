"""The conditional prior z | (f0, loudness): closed-form conditioning, sampling and scoring on synthetic data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import solve_triangular

from pipeline.prior.conditional import (
    CONDITIONAL_FILE,
    condition_components,
    conditional_loglik_frames,
    controls,
    estimate_conditional_rho,
    fit_joint_mixture,
    heldout_conditional_loglik,
    joint_frames,
    load_conditional,
    marginal_loglik_frames,
    regression_mean,
    responsibilities,
    sample_conditional,
    sample_conditional_mixture,
    save_conditional,
    scale_db,
    scale_f0_hz,
)
from pipeline.prior.mixture import fit_mixture, single_threaded
from pipeline.prior.samplers import make_rng

# z = A c + b + e with e ~ N(0, NOISE): z depends linearly on the scaled controls
A = np.array([[2.0, -1.0], [0.5, 1.5], [-1.0, 0.0]])
B = np.array([0.3, -0.2, 1.0])
NOISE = np.array([[0.04, 0.01, 0.0], [0.01, 0.02, 0.0], [0.0, 0.0, 0.03]])
C_MEAN = np.array([0.45, 0.6])
C_COV = np.array([[0.01, 0.002], [0.002, 0.02]])


def dependent_frames(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.multivariate_normal(C_MEAN, C_COV, size=n)
    z = c @ A.T + B + rng.multivariate_normal(np.zeros(3), NOISE, size=n)
    return z, c


def independent_frames(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.multivariate_normal(C_MEAN, C_COV, size=n)
    z = rng.multivariate_normal(B, NOISE + np.eye(3) * 0.05, size=n)
    return z, c


@pytest.fixture(scope="module")
def dependent_mixture():
    z, c = dependent_frames(8000, seed=1)
    return fit_joint_mixture(z, c, n_components=1, seed=0)


def test_scaling_matches_ddsp_formulas():
    np.testing.assert_allclose(scale_f0_hz(np.array([440.0, 880.0, 0.0])), [69 / 127, 81 / 127, 0.0])
    np.testing.assert_allclose(scale_db(np.array([-80.0, -40.0, 0.0])), [0.0, 0.5, 1.0])
    c = controls([440.0, 220.0], [-40.0, -20.0])
    assert c.shape == (2, 2)
    np.testing.assert_allclose(c[:, 1], [0.5, 0.75])


def test_scaling_equals_ddsp_preprocessing():
    from pipeline.compat import import_ddsp

    import_ddsp()
    from ddsp.training import preprocessing

    f0 = np.array([0.0, 27.5, 261.6, 440.0, 4186.0], np.float32)
    db = np.array([-80.0, -55.5, -12.0, 0.0], np.float32)
    np.testing.assert_allclose(scale_f0_hz(f0), np.asarray(preprocessing.scale_f0_hz(f0)), atol=1e-6)
    np.testing.assert_allclose(scale_db(db), np.asarray(preprocessing.scale_db(db)), atol=1e-6)


def test_closed_form_conditioning_recovers_the_linear_dependence(dependent_mixture):
    m = dependent_mixture
    # with one component, G = Σ_zc Σ_cc⁻¹ is the regression matrix and S the residual covariance
    np.testing.assert_allclose(m.gain[0], A, atol=0.08)
    np.testing.assert_allclose(m.cond_cov[0], NOISE, atol=0.004)
    c = np.array([[0.5, 0.7]])
    np.testing.assert_allclose(m.conditional_mean(0, c)[0], A @ c[0] + B, atol=0.02)


def test_conditional_draws_have_the_right_mean_and_covariance(dependent_mixture):
    n = 20_000
    f0 = np.full(n, 0.40)
    ld = np.full(n, 0.55)
    z = sample_conditional(dependent_mixture, 0, f0, ld, rho=0.0, rng=make_rng(0, "cond"))
    expected_mean = A @ np.array([0.40, 0.55]) + B
    np.testing.assert_allclose(z.mean(axis=0), expected_mean, atol=0.01)
    np.testing.assert_allclose(np.cov(z.T), NOISE, atol=0.003)
    # the draw follows a moving control: frame means track A c_t + b
    ramp = np.linspace(0.3, 0.6, n)
    z_ramp = sample_conditional(dependent_mixture, 0, ramp, np.full(n, 0.6), 0.0, make_rng(0, "ramp"))
    residual = z_ramp - (np.stack([ramp, np.full(n, 0.6)], 1) @ A.T + B)
    assert np.all(np.abs(residual.mean(axis=0)) < 0.01)
    # corr(c, z_0) = sd(A_00 c) / sd(z_0) over the ramp: A_00² var(ramp) against the added noise
    signal = A[0, 0] ** 2 * np.var(ramp)
    assert np.corrcoef(ramp, z_ramp[:, 0])[0, 1] == pytest.approx(np.sqrt(signal / (signal + NOISE[0, 0])), abs=0.02)


def test_ar1_copula_gives_the_asked_lag1_correlation(dependent_mixture):
    n = 20_000
    z = sample_conditional(dependent_mixture, 0, np.full(n, 0.45), np.full(n, 0.6), 0.9, make_rng(3))
    white = solve_triangular(dependent_mixture.cond_chol[0],
                             (z - dependent_mixture.conditional_mean(0, np.tile([0.45, 0.6], (n, 1)))).T,
                             lower=True).T
    lag1 = [np.corrcoef(white[:-1, j], white[1:, j])[0, 1] for j in range(3)]
    np.testing.assert_allclose(lag1, 0.9, atol=0.02)
    # the marginal stays N(E[z|c], S): the copula changes only the time dependence
    np.testing.assert_allclose(np.cov(white.T), np.eye(3), atol=0.15)


def test_estimate_conditional_rho_recovers_the_sampler_rho(dependent_mixture):
    rows = []
    for example in range(20):
        rng = make_rng(5, example)
        f0 = 0.45 + 0.05 * np.sin(np.linspace(0, 3, 250) + example)
        ld = 0.6 + 0.05 * np.cos(np.linspace(0, 2, 250))
        z = sample_conditional(dependent_mixture, 0, f0, ld, 0.7, rng)
        f0_hz = 440.0 * 2 ** ((f0 * 127 - 69) / 12)
        frame = pd.DataFrame(z, columns=[f"z_{i}" for i in range(3)])
        frame["example_id"], frame["frame"] = example, np.arange(250)
        frame["f0_hz"], frame["loudness_db"] = f0_hz, (ld - 1.0) * 80.0
        rows.append(frame)
    table = pd.concat(rows, ignore_index=True)
    estimate = estimate_conditional_rho(table, dependent_mixture, 0)
    assert estimate.n_pairs == 20 * 249
    assert estimate.rho == pytest.approx(0.7, abs=0.03)


def test_without_dependence_it_is_the_unconditional_cluster():
    z, c = independent_frames(8000, seed=2)
    m = fit_joint_mixture(z, c, n_components=1, seed=0)
    np.testing.assert_allclose(m.gain[0], 0.0, atol=0.15)
    # S is (nearly) Σ_zz: conditioning removes nothing
    np.testing.assert_allclose(m.cond_cov[0], m.marginal_cov_zz[0], atol=0.003)
    with single_threaded():
        z_only = fit_mixture(z, 1, seed=0)
    np.testing.assert_allclose(m.mean_z[0], z_only.means_[0], atol=1e-9)
    np.testing.assert_allclose(m.marginal_cov_zz[0], z_only.covariances_[0], atol=1e-9)
    draws = sample_conditional(m, 0, np.full(20_000, 0.3), np.full(20_000, 0.9), 0.0, make_rng(1))
    np.testing.assert_allclose(draws.mean(axis=0), z_only.means_[0], atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T), z_only.covariances_[0], atol=0.006)


def test_conditional_loglik_beats_unconditional_only_when_z_depends_on_c(dependent_mixture):
    z_eval, c_eval = dependent_frames(3000, seed=7)
    conditional = heldout_conditional_loglik(dependent_mixture, z_eval, c_eval)
    marginal = float(marginal_loglik_frames(dependent_mixture, z_eval).mean())
    z_train, _ = dependent_frames(8000, seed=1)
    z_only = float(fit_mixture(z_train, 1, seed=0).score(z_eval))
    # the true gain: log det Σ_zz - log det S, halved (the mutual information of z and c)
    z_cov = A @ C_COV @ A.T + NOISE
    info = 0.5 * (np.linalg.slogdet(z_cov)[1] - np.linalg.slogdet(NOISE)[1])
    assert conditional - marginal == pytest.approx(info, abs=0.05)
    assert marginal == pytest.approx(z_only, abs=0.01)

    zi_train, ci_train = independent_frames(8000, seed=2)
    independent = fit_joint_mixture(zi_train, ci_train, 1, seed=0)
    zi_eval, ci_eval = independent_frames(3000, seed=8)
    gap = (heldout_conditional_loglik(independent, zi_eval, ci_eval)
           - marginal_loglik_frames(independent, zi_eval).mean())
    assert abs(gap) < 0.01


def test_conditional_loglik_is_joint_minus_control_marginal(dependent_mixture):
    z, c = dependent_frames(50, seed=9)
    m = dependent_mixture
    per_frame = conditional_loglik_frames(m, z, c)
    from scipy.stats import multivariate_normal

    expected = [multivariate_normal(m.mean_z[0] + m.gain[0] @ (ct - m.mean_c[0]), m.cond_cov[0]).logpdf(zt)
                for zt, ct in zip(z, c)]
    np.testing.assert_allclose(per_frame, expected, rtol=1e-8, atol=1e-8)


@pytest.fixture(scope="module")
def two_clusters():
    """Two clusters with opposite dependences of z on loudness, separated in f0."""
    rng = np.random.default_rng(11)
    n = 6000
    f0 = np.concatenate([rng.normal(0.35, 0.01, n), rng.normal(0.55, 0.01, n)])
    ld = rng.normal(0.6, 0.1, 2 * n)
    slope = np.concatenate([np.full(n, 3.0), np.full(n, -3.0)])
    z = np.stack([slope * (ld - 0.6) + rng.normal(0, 0.05, 2 * n),
                  np.concatenate([np.full(n, -1.0), np.full(n, 1.0)]) + rng.normal(0, 0.05, 2 * n)], 1)
    c = np.stack([f0, ld], 1)
    return fit_joint_mixture(z, c, n_components=2, seed=0), z, c


def test_per_component_conditionals_and_responsibilities(two_clusters):
    m, _, _ = two_clusters
    low = int(np.argmin(m.mean_c[:, 0]))
    high = 1 - low
    assert m.gain[low][0, 1] == pytest.approx(3.0, abs=0.1)
    assert m.gain[high][0, 1] == pytest.approx(-3.0, abs=0.1)
    probs = responsibilities(m, np.array([[0.35, 0.6], [0.55, 0.6], [0.45, 0.6]]))
    assert probs[0, low] > 0.999 and probs[1, high] > 0.999
    from scipy.stats import multivariate_normal

    dens = [m.weights[k] * multivariate_normal(m.mean_c[k], m.cov_cc[k]).pdf([0.45, 0.6]) for k in range(2)]
    np.testing.assert_allclose(probs[2], np.array(dens) / sum(dens), rtol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # GMR mean at a high-f0 control follows the high cluster's regression
    mean = regression_mean(m, np.array([[0.55, 0.7]]))[0]
    assert mean[0] == pytest.approx(-0.3, abs=0.03) and mean[1] == pytest.approx(1.0, abs=0.03)


def test_whole_mixture_sampler_picks_components_from_the_controls(two_clusters):
    m, _, _ = two_clusters
    low = int(np.argmin(m.mean_c[:, 0]))
    f0 = np.concatenate([np.full(500, 0.35), np.full(500, 0.55)])
    z, components = sample_conditional_mixture(m, f0, np.full(1000, 0.7), 0.5, make_rng(2))
    assert np.all(components[:500] == low) and np.all(components[500:] == 1 - low)
    assert z[:500, 0].mean() == pytest.approx(0.3, abs=0.03)
    assert z[500:, 1].mean() == pytest.approx(1.0, abs=0.03)


def test_sampling_is_reproducible(dependent_mixture):
    f0, ld = np.full(100, 0.45), np.full(100, 0.6)
    a = sample_conditional(dependent_mixture, 0, f0, ld, 0.8, make_rng(0, 1))
    np.testing.assert_array_equal(a, sample_conditional(dependent_mixture, 0, f0, ld, 0.8, make_rng(0, 1)))
    assert not np.array_equal(a, sample_conditional(dependent_mixture, 0, f0, ld, 0.8, make_rng(0, 2)))


def test_save_load_round_trip(tmp_path, two_clusters):
    m, z, c = two_clusters
    save_conditional(m, tmp_path / "joint")
    assert (tmp_path / "joint" / CONDITIONAL_FILE).is_file()
    loaded = load_conditional(tmp_path / "joint")
    assert loaded.n_z == 2 and loaded.control_names == ("f0_scaled", "ld_scaled")
    for name in ("weights", "mean_z", "mean_c", "gain", "cond_cov", "cond_chol"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(m, name))
    np.testing.assert_array_equal(conditional_loglik_frames(loaded, z[:100], c[:100]),
                                  conditional_loglik_frames(m, z[:100], c[:100]))


def test_bad_input_is_rejected(dependent_mixture, tmp_path):
    with pytest.raises(ValueError, match="rho"):
        sample_conditional(dependent_mixture, 0, [0.4], [0.5], 1.0, make_rng(0))
    with pytest.raises(ValueError, match="cluster k"):
        sample_conditional(dependent_mixture, 3, [0.4], [0.5], 0.0, make_rng(0))
    with pytest.raises(ValueError, match="ld_scaled has 2"):
        sample_conditional(dependent_mixture, 0, [0.4], [0.5, 0.5], 0.0, make_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        joint_frames(np.zeros((2, 3)), np.array([[0.1, np.nan], [0.1, 0.2]]))
    with pytest.raises(ValueError, match="at least one control"):
        condition_components(dependent_mixture.gmm, 5)
    with pytest.raises(FileNotFoundError, match="conditional.json"):
        load_conditional(tmp_path)
