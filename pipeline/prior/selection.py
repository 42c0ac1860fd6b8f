"""Choosing the cluster count K with an interior optimum: a cheap held-out sweep before fit_gmm@K.

The fit_gmm stage fits only the Ks listed in params; if the best of them is the largest, the
optimum may lie beyond the grid and "best K" is an artefact of the list. :func:`sweep_k` fits
mixtures over a grid of K on a seeded subsample of the training frames, scores each by the mean
held-out log-likelihood per frame, and stops once ``patience`` consecutive Ks have failed to
improve on the best by more than ``min_improvement`` (nats per frame; tiny gains from splitting a
cluster are noise, not structure). The result says whether the best K sits at the edge of what
was tried (``recommended_k_at_grid_edge``): then the grid should be extended before trusting it.

:func:`dirichlet_effective_components` is a second opinion that needs no grid: a
BayesianGaussianMixture with a Dirichlet-process prior on the weights, fitted with many components,
switches off the ones the data do not need; the count of components above a weight threshold is
the effective K.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.mixture import BayesianGaussianMixture

from pipeline.latent.ztable import subsample_rows
from pipeline.paths import RENDERED_AS_FILE, Paths
from pipeline.prior.mixture import META_FILE, as_frames, fit_mixture, single_threaded
from pipeline.vocab import RECOMMENDED, RENDERED_AS

DEFAULT_MAX_FRAMES = 20_000
DEFAULT_PATIENCE = 2
DEFAULT_MIN_IMPROVEMENT = 0.01  # nats per frame
DEFAULT_WEIGHT_THRESHOLD = 0.01


def k_grid(k_min: int = 1, k_max: int = 32, step: int = 1, ks: Sequence[int] | None = None) -> list[int]:
    """The Ks to try, ascending and unique: ``ks`` if given, else k_min, k_min + step, ..., ≤ k_max."""
    if ks is not None:
        grid = sorted({int(k) for k in ks})
        if not grid:
            raise ValueError("ks is empty")
    else:
        if step < 1:
            raise ValueError(f"step must be at least 1, got {step}")
        if k_max < k_min:
            raise ValueError(f"k_max ({k_max}) must not be below k_min ({k_min})")
        grid = list(range(k_min, k_max + 1, step))
    if grid[0] < 1:
        raise ValueError(f"every K must be at least 1, got {grid[0]}")
    return grid


@dataclass(frozen=True)
class KSweep:
    """Result of :func:`sweep_k`: the Ks fitted (in order) and their mean held-out log-likelihoods."""

    ks: list[int]
    heldout_loglik: list[float]
    grid: list[int]
    recommended_k: int
    recommended_k_at_grid_edge: bool
    stopped_early: bool
    reason: str
    n_train_frames: int
    n_heldout_frames: int
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def sweep_k(z_train: np.ndarray, z_heldout: np.ndarray, *, k_min: int = 1, k_max: int = 32, step: int = 1,
            ks: Sequence[int] | None = None, patience: int = DEFAULT_PATIENCE,
            min_improvement: float = DEFAULT_MIN_IMPROVEMENT, max_frames: int = DEFAULT_MAX_FRAMES,
            covariance_type: str = "full", seed: int = 0, **fit_kwargs) -> KSweep:
    """Fit K over the grid on ≤ ``max_frames`` training frames [n, d]; score on ≤ ``max_frames`` held-out frames.

    Ks are tried in ascending order. A K *improves* when its held-out log-likelihood beats the best
    so far by more than ``min_improvement``; after ``patience`` Ks in a row without improvement the
    sweep stops. The recommended K is the best improving one (the smallest K within
    ``min_improvement`` of everything tried after it). ``recommended_k_at_grid_edge`` is True when
    that is the largest K of the grid, i.e. the sweep ran out of Ks while still improving.
    ``fit_kwargs`` go to :func:`pipeline.prior.mixture.fit_mixture` (reg_covar, max_iter, n_init, tol).
    """
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    if min_improvement < 0:
        raise ValueError(f"min_improvement must be non-negative, got {min_improvement}")
    grid = k_grid(k_min, k_max, step, ks)
    train = subsample_rows(as_frames(z_train, "z_train"), max_frames, seed)
    heldout = subsample_rows(as_frames(z_heldout, "z_heldout"), max_frames, seed + 1)
    if heldout.shape[1] != train.shape[1]:
        raise ValueError(f"z_heldout has {heldout.shape[1]} dims but z_train has {train.shape[1]}")
    if grid[-1] > len(train):
        raise ValueError(f"the largest K ({grid[-1]}) exceeds the {len(train)} training frames")
    tried: list[int] = []
    scores: list[float] = []
    best_k, best_score, since_best = grid[0], -np.inf, 0
    stopped_early = False
    for k in grid:
        gmm = fit_mixture(train, k, covariance_type, seed, **fit_kwargs)
        with single_threaded():
            score = float(gmm.score(heldout))
        tried.append(k)
        scores.append(score)
        if score > best_score + min_improvement or not np.isfinite(best_score):
            best_k, best_score, since_best = k, score, 0
        else:
            since_best += 1
            if since_best >= patience:
                stopped_early = k != grid[-1]
                break
    at_edge = best_k == grid[-1]
    if at_edge:
        reason = (f"held-out log-likelihood still improving at K = {best_k}, the largest K of the grid: "
                  f"extend k_max")
    else:
        reason = (f"best held-out log-likelihood {best_score:.4f} at K = {best_k}; no gain above "
                  f"{min_improvement:g} nats/frame over the next {len(tried) - tried.index(best_k) - 1} K(s)")
    return KSweep(ks=tried, heldout_loglik=scores, grid=grid, recommended_k=best_k,
                  recommended_k_at_grid_edge=at_edge, stopped_early=stopped_early, reason=reason,
                  n_train_frames=len(train), n_heldout_frames=len(heldout))


def read_recommended_k(choose_k_file: str | Path) -> int:
    """The recommended K that the choose_k stage wrote (its metrics file, :meth:`KSweep.as_dict`)."""
    path = Path(choose_k_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the choose_k stage before fitting the recommended K")
    k = json.loads(path.read_text()).get("recommended_k")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"{path} holds no valid recommended_k (got {k!r})")
    return k


@dataclass(frozen=True)
class DirichletEstimate:
    """Effective component count of a Dirichlet-process mixture and its sorted weights."""

    n_effective: int
    weights: list[float]
    max_components: int
    weight_threshold: float
    converged: bool

    def as_dict(self) -> dict:
        return asdict(self)


def dirichlet_effective_components(z_train: np.ndarray, max_components: int = 32, *,
                                   weight_threshold: float = DEFAULT_WEIGHT_THRESHOLD,
                                   weight_concentration_prior: float | None = None,
                                   max_frames: int = DEFAULT_MAX_FRAMES, covariance_type: str = "full",
                                   seed: int = 0, max_iter: int = 500, reg_covar: float = 1e-6
                                   ) -> DirichletEstimate:
    """Components of a Dirichlet-process BayesianGaussianMixture (z_train [n, d]) with weight > threshold.

    ``weight_concentration_prior`` (γ) defaults to sklearn's 1 / max_components: small γ favours few
    components. Variational inference with a truncation at ``max_components``; seeded k-means init.
    """
    train = subsample_rows(as_frames(z_train, "z_train"), max_frames, seed)
    if not 1 <= max_components <= len(train):
        raise ValueError(f"max_components must be in [1, {len(train)}], got {max_components}")
    model = BayesianGaussianMixture(n_components=max_components, covariance_type=covariance_type,
                                    weight_concentration_prior_type="dirichlet_process",
                                    weight_concentration_prior=weight_concentration_prior, max_iter=max_iter,
                                    reg_covar=reg_covar, random_state=seed)
    with single_threaded():
        model.fit(train)
    weights = sorted((float(w) for w in model.weights_), reverse=True)
    return DirichletEstimate(n_effective=int(sum(w > weight_threshold for w in weights)), weights=weights,
                             max_components=max_components, weight_threshold=weight_threshold,
                             converged=bool(model.converged_))


def sweep_for_params(z_path, params, gmm_params, seed: int) -> KSweep:
    """choose_k's sweep over a z table's train/eval frames with the ``choose_k`` and ``gmm`` settings.

    The grid is capped by the training frames (a K above them cannot be fitted)."""
    from pipeline.latent.ztable import z_frames

    z_train, z_eval = z_frames(z_path, "train"), z_frames(z_path, "eval")
    if not len(z_eval):
        raise ValueError(f"{z_path}: no eval frames to score the K sweep on")
    k_max = min(params.k_max, max(params.k_min, min(len(z_train), params.max_frames) - 1))
    return sweep_k(z_train, z_eval, k_min=params.k_min, k_max=k_max, step=params.step, patience=params.patience,
                   min_improvement=params.min_improvement, max_frames=params.max_frames,
                   covariance_type=gmm_params.covariance_type, seed=seed, reg_covar=gmm_params.reg_covar,
                   max_iter=gmm_params.max_iter, n_init=params.n_init, tol=gmm_params.tol)


def k_argument(value: str) -> int | str:
    """A command's ``--k``: a K of ``gmm.n_components``, or ``recommended`` (choose_k's K)."""
    if value == RECOMMENDED:
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a K (an integer) or {RECOMMENDED!r}, got {value!r}") from None


def mixture_folder(paths: Paths, k: int | str) -> tuple[int, Path]:
    """The K and the fitted mixture's folder that ``--k`` names: ``models/gmm/k<K>``, or for ``recommended``
    choose_k's K in fit_gmm_recommended's folder (or the listed K's folder its ``rendered_as`` pointer names).
    Raises FileNotFoundError naming the folder and the stage that builds it."""
    stage = f"fit_gmm_{RECOMMENDED}" if k == RECOMMENDED else f"fit_gmm@{k}"
    folder = paths.mixture_dir(k)
    if k == RECOMMENDED:
        k = read_recommended_k(paths.choose_k_metrics)
        pointer = folder / RENDERED_AS_FILE
        if pointer.is_file():
            folder = folder.parent / json.loads(pointer.read_text())[RENDERED_AS]
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"no mixture for K={k} at {folder}: run `dvc repro {stage}` first")
    return k, folder
