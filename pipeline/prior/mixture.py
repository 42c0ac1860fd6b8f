"""Gaussian mixtures over the latent z frames: fit, save without pickle, load, score.

A fitted mixture is stored as plain arrays (``mixture.npz``, readable with ``allow_pickle=False``)
plus a JSON description, so a DVC out never executes code when it is read back and stays readable
across scikit-learn versions. :func:`load_mixture` rebuilds a working
:class:`~sklearn.mixture.GaussianMixture` (``score_samples``, ``predict``, ``sample``) from them.

Sampling needs every component as a full covariance Σ_k and its lower Cholesky factor L_k
(Σ_k = L_k L_kᵀ) whatever ``covariance_type`` was fitted: :func:`full_covariances` and
:func:`cholesky_factors` expand ``tied``/``diag``/``spherical`` into that common form.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from pipeline.config import GmmParams
from pipeline.latent.ztable import subsample_rows, z_frames

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
ARRAYS_FILE = "mixture.npz"
META_FILE = "mixture.json"
FORMAT_VERSION = 1
_ARRAY_NAMES = ("weights", "means", "covariances", "precisions_cholesky")
_JSON_SCALARS = (bool, int, float, str, type(None))


def fit_mixture(z_train: np.ndarray, n_components: int, covariance_type: str = "full", seed: int = 0, *,
                reg_covar: float = 1e-6, max_iter: int = 200, n_init: int = 1, tol: float = 1e-3
                ) -> GaussianMixture:
    """Fit a mixture by EM on ``z_train`` [n_frames, d].

    ``seed`` fixes the k-means initialisation so the same data and params give the same mixture.
    ``reg_covar`` is added to every covariance diagonal: z dimensions can be nearly collinear and a
    singular Σ_k would make both the likelihood and the Cholesky factor used for sampling undefined.
    """
    z_train = as_frames(z_train, "z_train")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    if not 1 <= n_components <= len(z_train):
        raise ValueError(f"n_components must be in [1, {len(z_train)}] (the number of frames), got {n_components}")
    gmm = GaussianMixture(n_components=n_components, covariance_type=covariance_type, reg_covar=reg_covar,
                          max_iter=max_iter, n_init=n_init, tol=tol, random_state=seed)
    with single_threaded():
        return gmm.fit(z_train)


def single_threaded():
    """One BLAS and OpenMP thread: EM and scoring over ~10^5 x 16 frames gain little from more, and
    on busy cores the spinning threads of OpenBLAS made fits 15-90x slower (bench/gmm_fit.py)."""
    return threadpool_limits(limits=1)


def save_mixture(gmm: GaussianMixture, folder: str | Path) -> Path:
    """Write ``mixture.npz`` (parameter arrays) and ``mixture.json`` (everything else) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.asarray(getattr(gmm, f"{name}_"), np.float64) for name in _ARRAY_NAMES}
    np.savez(folder / ARRAYS_FILE, **arrays)
    meta = {
        "format_version": FORMAT_VERSION,
        "covariance_type": gmm.covariance_type,
        "n_components": int(gmm.n_components),
        "n_features": int(gmm.means_.shape[1]),
        "converged": bool(gmm.converged_),
        "n_iter": int(gmm.n_iter_),
        "lower_bound": float(gmm.lower_bound_),
        # constructor arguments, so a refit or a clone uses the same settings
        "init_params": {k: v for k, v in gmm.get_params().items() if isinstance(v, _JSON_SCALARS)},
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def load_mixture(folder: str | Path) -> GaussianMixture:
    """Rebuild the fitted :class:`GaussianMixture` written by :func:`save_mixture`.

    The stored ``precisions_cholesky`` is restored as is (not recomputed), so ``score_samples`` is
    bit-identical to the mixture that was saved.
    """
    folder = Path(folder)
    meta = json.loads((folder / META_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / META_FILE}: unsupported format_version {meta.get('format_version')!r}")
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as data:
        arrays = {name: data[name] for name in _ARRAY_NAMES}
    gmm = GaussianMixture(**meta["init_params"])
    for name, value in arrays.items():
        setattr(gmm, f"{name}_", value)
    gmm.precisions_ = _precisions(arrays["precisions_cholesky"], meta["covariance_type"])
    gmm.converged_ = meta["converged"]
    gmm.n_iter_ = meta["n_iter"]
    gmm.lower_bound_ = meta["lower_bound"]
    gmm.n_features_in_ = meta["n_features"]
    _check_shapes(gmm)
    return gmm


def _precisions(precisions_cholesky: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precision matrices from their Cholesky factors, as sklearn derives them after fitting."""
    if covariance_type == "full":
        return precisions_cholesky @ np.swapaxes(precisions_cholesky, -1, -2)
    if covariance_type == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky**2


def _check_shapes(gmm: GaussianMixture) -> None:
    n_components, n_features = gmm.n_components, gmm.means_.shape[1]
    expected_cov = {"full": (n_components, n_features, n_features), "tied": (n_features, n_features),
                    "diag": (n_components, n_features), "spherical": (n_components,)}[gmm.covariance_type]
    shapes = {"weights": (gmm.weights_.shape, (n_components,)), "means": (gmm.means_.shape, (n_components, n_features)),
              "covariances": (gmm.covariances_.shape, expected_cov),
              "precisions_cholesky": (gmm.precisions_cholesky_.shape, expected_cov)}
    for name, (got, want) in shapes.items():
        if got != want:
            raise ValueError(f"stored {name} has shape {got}, expected {want} for {gmm.covariance_type!r}")


def full_covariances(gmm: GaussianMixture) -> np.ndarray:
    """Every component's covariance as a full [K, d, d] matrix, for any ``covariance_type``."""
    n_components, n_features = gmm.means_.shape
    cov = np.asarray(gmm.covariances_, np.float64)
    if gmm.covariance_type == "full":
        return cov.copy()
    if gmm.covariance_type == "tied":
        return np.repeat(cov[None], n_components, axis=0)
    if gmm.covariance_type == "diag":
        return cov[:, :, None] * np.eye(n_features)
    return cov[:, None, None] * np.eye(n_features)


def cholesky_factors(gmm: GaussianMixture) -> np.ndarray:
    """Lower-triangular L_k with Σ_k = L_k L_kᵀ for every component, [K, d, d].

    z = μ_k + L_k x with x ~ N(0, I) is then exactly N(μ_k, Σ_k), and x = L_k⁻¹(z - μ_k) whitens.
    """
    return np.linalg.cholesky(full_covariances(gmm))


def mixture_metrics(gmm: GaussianMixture, z_train: np.ndarray, z_eval: np.ndarray | None) -> dict[str, Any]:
    """Model-selection metrics of one fitted mixture.

    ``bic``/``aic`` are on the training frames (lower is better); ``train_loglik`` and
    ``heldout_loglik`` are mean log-likelihoods per frame (higher is better). With no held-out frames
    (``z_eval`` None or empty) ``heldout_loglik`` is None, which JSON and MLflow callers can skip.
    """
    z_train = as_frames(z_train, "z_train")
    heldout = None
    with single_threaded():
        if z_eval is not None and len(z_eval):
            heldout = float(gmm.score(as_frames(z_eval, "z_eval")))
        return {
            "bic": float(gmm.bic(z_train)),
            "aic": float(gmm.aic(z_train)),
            "train_loglik": float(gmm.score(z_train)),
            "heldout_loglik": heldout,
            "weights": [float(w) for w in gmm.weights_],
        }


def fit_for_k(z_path: Path, params: GmmParams, k: int, seed: int) -> tuple[GaussianMixture, dict, float]:
    """The K-component mixture over the (subsampled) train z frames of a z table, its metrics on
    train and eval frames, and the seconds the fit took (wall clock: for logs, not for DVC)."""
    z_train = subsample_rows(z_frames(z_path, "train"), params.max_train_frames, seed)
    z_eval = z_frames(z_path, "eval")
    started = time.perf_counter()
    gmm = fit_mixture(z_train, k, params.covariance_type, seed, reg_covar=params.reg_covar,
                      max_iter=params.max_iter, n_init=params.n_init, tol=params.tol)
    fit_secs = time.perf_counter() - started
    metrics = {"k": k, **mixture_metrics(gmm, z_train, z_eval), "converged": bool(gmm.converged_),
               "n_iter": int(gmm.n_iter_), "n_train_frames": len(z_train), "n_eval_frames": len(z_eval)}
    return gmm, metrics, fit_secs


def as_frames(z: np.ndarray, name: str) -> np.ndarray:
    """``z`` as a float64 [n_frames, d] array of finite values, or a ValueError naming ``name``."""
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or not len(z):
        raise ValueError(f"{name} must be a non-empty [n_frames, d] array, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return z
