"""A conditional prior: z given the controls, from one mixture over the joint frame vector.

ARCHITECTURE.md, "Sampling methods". Every frame is the joint vector y_t = (z_t, c_t) with the controls
c_t = (f0_scaled_t, ld_scaled_t) on ddsp's input scales (3.x): f0_scaled = hz_to_midi(f0) / 127
(0 Hz -> 0) and ld_scaled = dB / 80 + 1 (``ddsp.training.preprocessing.scale_db``). One Gaussian
mixture is fitted over y (:func:`fit_joint_mixture`, EM as :func:`pipeline.prior.mixture.fit_mixture`), so
every component k has a joint Gaussian with blocks

    μ_k = [μ_z; μ_c],   Σ_k = [[Σ_zz, Σ_zc], [Σ_cz, Σ_cc]].

Within component k the conditional of z given c is Gaussian in closed form (Schur complement):

    z | c ~ N(μ_z + G (c - μ_c),  S),   G = Σ_zc Σ_cc⁻¹,   S = Σ_zz - Σ_zc Σ_cc⁻¹ Σ_cz

(:func:`condition_components`). Over the whole mixture the component probabilities are conditioned
on c too (Gaussian mixture regression): r_k(c) ∝ π_k N(c; μ_c,k, Σ_cc,k).

Sampling (:func:`sample_conditional`) draws every frame of a clip from one component k, with the
whitened draws x_t made temporally coherent by the same AR(1) Gaussian copula as
:func:`pipeline.prior.samplers.sample_temporal` (x_t = ρ x_{t-1} + √(1-ρ²) ε_t, ε_t = Φ⁻¹(u_t)):

    z_t = μ_z + G (c_t - μ_c) + L_S x_t,   S = L_S L_Sᵀ.

So each z_t is exactly N(cond. mean at c_t, S), and with ρ = 0 the frames are independent given c.
Notation: c is the controls, x the whitened draws (as in pipeline.prior.samplers).

Scoring (:func:`heldout_conditional_loglik`): log p(z | c) = log p(z, c) - log p(c), with p(z, c)
the joint mixture and p(c) its marginal over the control dimensions (a mixture of the Σ_cc,k).
Beside it :func:`marginal_loglik_frames` gives log p(z) from the same mixture, so the two are
comparable: conditioning can only help when z depends on the controls.

Stored like the unconditional mixture (``mixture.npz`` + ``mixture.json`` from
:func:`pipeline.prior.mixture.save_mixture`, no pickle) plus ``conditional.json`` naming the blocks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

from pipeline.prior.mixture import as_frames, fit_mixture, full_covariances, load_mixture, save_mixture, single_threaded
from pipeline.prior.samplers import (
    MIN_RHO_PAIRS,
    RHO_MAX,
    RhoEstimate,
    _consecutive_pairs,
    _pearson,
    ar1_filter,
    standard_normals,
    z_matrix,
)

CONTROL_NAMES = ("f0_scaled", "ld_scaled")
F0_RANGE = 127.0  # ddsp.spectral_ops.F0_RANGE (MIDI)
DB_RANGE = 80.0  # ddsp.core.DB_RANGE, the range of ddsp 3.x's scale_db
CONDITIONAL_FILE = "conditional.json"
CONDITIONAL_FORMAT_VERSION = 1


# ---- ddsp 3.x input scaling (numpy, no TensorFlow) ----

def scale_f0_hz(f0_hz: np.ndarray) -> np.ndarray:
    """f0_scaled = hz_to_midi(f0) / 127, with 0 Hz (and below) mapped to MIDI 0 as ddsp does. [n] -> [n]."""
    f0_hz = np.asarray(f0_hz, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        midi = 12.0 * (np.log2(f0_hz) - np.log2(440.0)) + 69.0
    return np.where(f0_hz > 0, midi, 0.0) / F0_RANGE


def scale_db(loudness_db: np.ndarray) -> np.ndarray:
    """ld_scaled = dB / 80 + 1 (ddsp 3.x ``scale_db``). [n] -> [n]."""
    return np.asarray(loudness_db, np.float64) / DB_RANGE + 1.0


def controls(f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
    """The scaled controls c_t = (f0_scaled, ld_scaled) [n, 2] from f0 in Hz and loudness in dB [n]."""
    f0_hz, loudness_db = np.asarray(f0_hz).reshape(-1), np.asarray(loudness_db).reshape(-1)
    if len(f0_hz) != len(loudness_db):
        raise ValueError(f"f0_hz has {len(f0_hz)} frames but loudness_db has {len(loudness_db)}")
    return np.stack([scale_f0_hz(f0_hz), scale_db(loudness_db)], axis=1)


def joint_frames(z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """y = [z, c] [n, d + n_controls] from z [n, d] and scaled controls c [n, n_controls]."""
    z, c = as_frames(z, "z"), as_frames(c, "controls")
    if len(z) != len(c):
        raise ValueError(f"z has {len(z)} frames but the controls have {len(c)}")
    return np.concatenate([z, c], axis=1)


# ---- the mixture and its conditionals ----

@dataclass(frozen=True)
class ConditionalMixture:
    """A mixture over y = (z, c) and, per component, the Gaussian of z given c.

    Arrays (K components, d z-dimensions, m controls): ``weights`` [K]; ``mean_z`` [K, d];
    ``mean_c`` [K, m]; ``cov_cc`` [K, m, m] (the controls' marginal); ``gain`` G [K, d, m];
    ``cond_cov`` S [K, d, d]; ``cond_chol`` L_S [K, d, d] lower triangular; ``marginal_cov_zz``
    Σ_zz [K, d, d] (z's marginal, for log p(z)).
    """

    gmm: GaussianMixture
    n_z: int
    control_names: tuple[str, ...]
    weights: np.ndarray
    mean_z: np.ndarray
    mean_c: np.ndarray
    cov_cc: np.ndarray
    gain: np.ndarray
    cond_cov: np.ndarray
    cond_chol: np.ndarray
    marginal_cov_zz: np.ndarray

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def n_controls(self) -> int:
        return len(self.control_names)

    def conditional_mean(self, k: int, c: np.ndarray) -> np.ndarray:
        """E[z | c] within component k: μ_z + G (c - μ_c). c [n, m] -> [n, d]."""
        self._check_k(k)
        c = self._check_controls(c)
        return self.mean_z[k] + (c - self.mean_c[k]) @ self.gain[k].T

    def _check_k(self, k: int) -> None:
        if not 0 <= k < self.n_components:
            raise ValueError(f"cluster k must be in [0, {self.n_components}), got {k}")

    def _check_controls(self, c: np.ndarray) -> np.ndarray:
        c = as_frames(c, "controls")
        if c.shape[1] != self.n_controls:
            raise ValueError(f"controls must have {self.n_controls} columns {self.control_names}, got {c.shape[1]}")
        return c


def condition_components(gmm: GaussianMixture, n_z: int,
                         control_names: Sequence[str] = CONTROL_NAMES) -> ConditionalMixture:
    """Split every component of a mixture over [z (first n_z dims), c] into z | c (Schur complement).

    G = Σ_zc Σ_cc⁻¹ is solved with a Cholesky factor of Σ_cc (positive definite: EM adds
    ``reg_covar`` to every diagonal); S = Σ_zz - G Σ_cz is symmetrised before its Cholesky factor
    so rounding cannot make it fail for a well-conditioned component.
    """
    means = np.asarray(gmm.means_, np.float64)
    n_features = means.shape[1]
    n_c = n_features - n_z
    if n_z < 1 or n_c < 1:
        raise ValueError(f"n_z must leave at least one control: {n_z} z dims of {n_features} features")
    if len(control_names) != n_c:
        raise ValueError(f"{n_c} control dimensions but {len(control_names)} names {tuple(control_names)}")
    cov = full_covariances(gmm)
    cov_zz, cov_zc, cov_cc = cov[:, :n_z, :n_z], cov[:, :n_z, n_z:], cov[:, n_z:, n_z:]
    gains, cond_covs = [], []
    for k in range(len(means)):
        factor = cho_factor(cov_cc[k], lower=True)
        gain = cho_solve(factor, cov_zc[k].T).T  # Σ_zc Σ_cc⁻¹ (Σ_cc symmetric)
        cond = cov_zz[k] - gain @ cov_zc[k].T
        gains.append(gain)
        cond_covs.append((cond + cond.T) / 2)
    cond_cov = np.stack(cond_covs)
    return ConditionalMixture(gmm=gmm, n_z=n_z, control_names=tuple(control_names),
                              weights=np.asarray(gmm.weights_, np.float64), mean_z=means[:, :n_z],
                              mean_c=means[:, n_z:], cov_cc=cov_cc, gain=np.stack(gains), cond_cov=cond_cov,
                              cond_chol=np.linalg.cholesky(cond_cov), marginal_cov_zz=cov_zz)


def fit_joint_mixture(z: np.ndarray, c: np.ndarray, n_components: int, covariance_type: str = "full",
                      seed: int = 0, **fit_kwargs) -> ConditionalMixture:
    """EM over y = [z, c] (z [n, d], scaled controls c [n, 2]); ``fit_kwargs`` as :func:`fit_mixture`.

    Seeded and single-threaded like the unconditional fits, so the same data give the same mixture.
    Only ``full`` (and ``tied``) covariances can carry a z-c dependence; ``diag``/``spherical``
    fit, but their conditionals equal the unconditional clusters.
    """
    z = as_frames(z, "z")
    gmm = fit_mixture(joint_frames(z, c), n_components, covariance_type, seed, **fit_kwargs)
    return condition_components(gmm, z.shape[1])


def save_conditional(mixture: ConditionalMixture, folder: str | Path) -> Path:
    """``mixture.npz`` + ``mixture.json`` (the joint mixture) and ``conditional.json`` (its blocks)."""
    folder = save_mixture(mixture.gmm, folder)
    meta = {"format_version": CONDITIONAL_FORMAT_VERSION, "n_z": mixture.n_z,
            "control_names": list(mixture.control_names),
            "scaling": {"f0_scaled": "hz_to_midi(f0_hz) / 127", "ld_scaled": f"loudness_db / {DB_RANGE:g} + 1"}}
    (folder / CONDITIONAL_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def load_conditional(folder: str | Path) -> ConditionalMixture:
    """The :class:`ConditionalMixture` written by :func:`save_conditional` (conditionals recomputed)."""
    folder = Path(folder)
    path = folder / CONDITIONAL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a conditional mixture folder")
    meta = json.loads(path.read_text())
    if meta.get("format_version") != CONDITIONAL_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    return condition_components(load_mixture(folder), int(meta["n_z"]), tuple(meta["control_names"]))


# ---- sampling ----

def sample_conditional(mixture: ConditionalMixture, cluster: int, f0_scaled: np.ndarray, ld_scaled: np.ndarray,
                       rho: float, rng: np.random.Generator) -> np.ndarray:
    """z [n_frames, d] from component ``cluster`` given the controls f0_scaled[t], ld_scaled[t] [n_frames].

    z_t = μ_z + G (c_t - μ_c) + L_S x_t with x the AR(1)-filtered standard normals of
    :func:`pipeline.prior.samplers.sample_temporal` (same draws from the same generator state), so ρ = 0
    gives independent frames given c and every frame's marginal is exactly N(E[z | c_t], S).
    """
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must be in (-1, 1), got {rho}")
    c = _controls_from(f0_scaled, ld_scaled)
    mean = mixture.conditional_mean(cluster, c)
    x = ar1_filter(standard_normals(rng, len(c), mixture.n_z), rho)
    return mean + x @ mixture.cond_chol[cluster].T


def responsibilities(mixture: ConditionalMixture, c: np.ndarray) -> np.ndarray:
    """r_k(c_t) = π_k N(c_t; μ_c,k, Σ_cc,k) / p(c_t), [n, K]: the component probabilities given c."""
    log_joint = _log_weighted_marginal(mixture, mixture._check_controls(c))
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def sample_conditional_mixture(mixture: ConditionalMixture, f0_scaled: np.ndarray, ld_scaled: np.ndarray,
                               rho: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Whole-mixture variant: every frame picks k_t ~ r(c_t), then z_t from component k_t's z | c_t.

    Returns z [n, d] and the components [n]. The whitened draws are one AR(1) sequence shared by
    all components, so while k_t stays the same the timbre moves as smoothly as in
    :func:`sample_conditional`; a component switch still jumps (that is what the controls ask for).
    """
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must be in (-1, 1), got {rho}")
    c = _controls_from(f0_scaled, ld_scaled)
    probs = responsibilities(mixture, c)
    cumulative = np.cumsum(probs, axis=1)
    draws = rng.random(len(c))[:, None]
    components = np.minimum((draws >= cumulative).sum(axis=1), mixture.n_components - 1)
    x = ar1_filter(standard_normals(rng, len(c), mixture.n_z), rho)
    means = mixture.mean_z[components] + np.einsum("nij,nj->ni", mixture.gain[components],
                                                   c - mixture.mean_c[components])
    return means + np.einsum("nij,nj->ni", mixture.cond_chol[components], x), components


def regression_mean(mixture: ConditionalMixture, c: np.ndarray) -> np.ndarray:
    """GMR's E[z | c] = Σ_k r_k(c) (μ_z,k + G_k (c - μ_c,k)), [n, d] (a deterministic anchor)."""
    c = mixture._check_controls(c)
    probs = responsibilities(mixture, c)
    per_component = mixture.mean_z[None] + np.einsum("kij,nkj->nki", mixture.gain, c[:, None] - mixture.mean_c[None])
    return np.einsum("nk,nki->ni", probs, per_component)


# ---- scoring ----

def conditional_loglik_frames(mixture: ConditionalMixture, z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """log p(z_t | c_t) = log p(z_t, c_t) - log p(c_t) per frame [n] under the whole joint mixture."""
    c = mixture._check_controls(c)
    y = joint_frames(z, c)
    if y.shape[1] != mixture.n_z + mixture.n_controls:
        raise ValueError(f"z must have {mixture.n_z} dims, got {y.shape[1] - mixture.n_controls}")
    with single_threaded():
        log_joint = mixture.gmm.score_samples(y)
    return log_joint - logsumexp(_log_weighted_marginal(mixture, c), axis=1)


def heldout_conditional_loglik(mixture: ConditionalMixture, z: np.ndarray, c: np.ndarray) -> float:
    """Mean over held-out frames of log p(z | f0, loudness) (higher is better), z [n, d], c [n, 2]."""
    return float(np.mean(conditional_loglik_frames(mixture, z, c)))


def marginal_loglik_frames(mixture: ConditionalMixture, z: np.ndarray) -> np.ndarray:
    """log p(z_t) per frame [n] under the z-marginal of the joint mixture (the unconditional twin)."""
    z = as_frames(z, "z")
    return logsumexp(np.log(mixture.weights)[None] + _log_gaussians(z, mixture.mean_z, mixture.marginal_cov_zz),
                     axis=1)


def _log_weighted_marginal(mixture: ConditionalMixture, c: np.ndarray) -> np.ndarray:
    """log π_k + log N(c_t; μ_c,k, Σ_cc,k), [n, K]."""
    return np.log(mixture.weights)[None] + _log_gaussians(c, mixture.mean_c, mixture.cov_cc)


def _log_gaussians(values: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """log N(values_t; means_k, covs_k) for every frame and component, [n, K]."""
    out = np.empty((len(values), len(means)))
    dim = values.shape[1]
    for k in range(len(means)):
        factor = np.linalg.cholesky(covs[k])
        white = solve_triangular(factor, (values - means[k]).T, lower=True)
        log_det = 2.0 * np.log(np.diag(factor)).sum()
        out[:, k] = -0.5 * (np.sum(white * white, axis=0) + log_det + dim * np.log(2 * np.pi))
    return out


# ---- temporal coherence of real z given c ----

def estimate_conditional_rho(frames: pd.DataFrame, mixture: ConditionalMixture, k: int, *,
                             labels: np.ndarray | None = None, min_pairs: int = MIN_RHO_PAIRS) -> RhoEstimate:
    """ρ for :func:`sample_conditional`: lag-1 autocorrelation of real z whitened given c in component k.

    Like :func:`pipeline.prior.samplers.estimate_rho`, but the whitening is x = L_S⁻¹ (z - E[z | c]), the
    space where the conditional sampler's AR(1) runs. ``frames`` is a z table (example_id, frame,
    z_0.., f0_hz, loudness_db); frames are assigned by the joint mixture's ``predict`` (or ``labels``).
    """
    z = z_matrix(frames)
    c = controls(frames["f0_hz"].to_numpy(), frames["loudness_db"].to_numpy())
    if labels is None:
        with single_threaded():
            labels = mixture.gmm.predict(joint_frames(z, c))
    first, second = _consecutive_pairs(frames, np.asarray(labels) == k)
    if len(first) < min_pairs:
        return RhoEstimate(0.0, len(first), f"only {len(first)} consecutive frame pairs in cluster {k} "
                                            f"(need {min_pairs}); using rho = 0")
    residual = z - mixture.conditional_mean(k, c)
    x_first = solve_triangular(mixture.cond_chol[k], residual[first].T, lower=True).T
    x_second = solve_triangular(mixture.cond_chol[k], residual[second].T, lower=True).T
    per_dim = [r for r in (_pearson(x_first[:, j], x_second[:, j]) for j in range(mixture.n_z)) if np.isfinite(r)]
    if not per_dim:
        return RhoEstimate(0.0, len(first), f"cluster {k}: z is constant over its frame pairs; using rho = 0")
    raw = float(np.mean(per_dim))
    rho = float(np.clip(raw, 0.0, RHO_MAX))
    reason = (f"conditional lag-1 autocorrelation {raw:.4f} over {len(first)} pairs"
              + ("" if rho == raw else f", clipped to {rho}"))
    return RhoEstimate(rho, len(first), reason)


def _controls_from(f0_scaled: np.ndarray, ld_scaled: np.ndarray) -> np.ndarray:
    f0_scaled, ld_scaled = np.asarray(f0_scaled, np.float64).reshape(-1), np.asarray(ld_scaled, np.float64).reshape(-1)
    if len(f0_scaled) != len(ld_scaled):
        raise ValueError(f"f0_scaled has {len(f0_scaled)} frames but ld_scaled has {len(ld_scaled)}")
    if not len(f0_scaled):
        raise ValueError("the controls have no frames")
    return np.stack([f0_scaled, ld_scaled], axis=1)


def conditional_cluster_rhos(frames: pd.DataFrame, mixture: ConditionalMixture, fixed: float | None) -> dict[int, float]:
    """ρ per joint-mixture cluster: ``fixed`` for all, or estimated from real z given c (one predict)."""
    if fixed is not None:
        return {k: fixed for k in range(mixture.n_components)}
    z = z_matrix(frames)
    c = controls(frames["f0_hz"].to_numpy(), frames["loudness_db"].to_numpy())
    with single_threaded():
        labels = mixture.gmm.predict(joint_frames(z, c))
    return {k: estimate_conditional_rho(frames, mixture, k, labels=labels).rho for k in range(mixture.n_components)}


def fit_conditional_for_k(z_path: str | Path, params, k: int, seed: int) -> tuple[ConditionalMixture, dict]:
    """fit_gmm@K's joint mixture over (z, f0_scaled, ld_scaled) of the (subsampled, as for the
    unconditional fit) train frames of a z table, with the ``gmm`` section's EM settings, and its
    held-out scores: ``heldout_conditional_loglik`` (mean log p(z | f0, loudness) per eval frame) and
    ``heldout_joint_marginal_loglik`` (mean log p(z) of the same mixture, for comparison)."""
    from pipeline.latent.ztable import read_z_table

    train = read_z_table(z_path, "train")
    if params.max_train_frames and len(train) > params.max_train_frames:
        keep = np.sort(np.random.default_rng(seed).choice(len(train), size=params.max_train_frames, replace=False))
        train = train.iloc[keep]
    heldout = read_z_table(z_path, "eval")
    c_train = controls(train["f0_hz"].to_numpy(), train["loudness_db"].to_numpy())
    mixture = fit_joint_mixture(z_matrix(train), c_train, k, params.covariance_type, seed, reg_covar=params.reg_covar,
                                max_iter=params.max_iter, n_init=params.n_init, tol=params.tol)
    metrics: dict = {"heldout_conditional_loglik": None, "heldout_joint_marginal_loglik": None}
    if len(heldout):
        z_eval = z_matrix(heldout)
        c_eval = controls(heldout["f0_hz"].to_numpy(), heldout["loudness_db"].to_numpy())
        with single_threaded():
            metrics = {"heldout_conditional_loglik": heldout_conditional_loglik(mixture, z_eval, c_eval),
                       "heldout_joint_marginal_loglik": float(marginal_loglik_frames(mixture, z_eval).mean())}
    metrics["conditional_weights"] = [float(w) for w in mixture.weights]
    return mixture, metrics
