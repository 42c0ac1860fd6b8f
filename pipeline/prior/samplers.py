"""Sampling latent z sequences from a fitted mixture (ARCHITECTURE.md, "Sampling methods").

Notation: weights π_k, means μ_k, covariances Σ_k = L_k L_kᵀ (L_k lower triangular, from
:func:`pipeline.prior.mixture.cholesky_factors`), Φ the standard normal CDF.

- :func:`sample_direct`: every frame draws its own component c_t ~ Cat(π), then z_t ~ N(μ_c, Σ_c).
- :func:`sample_inverse_transform`: one cluster k for the whole clip; u_t ~ U(0,1)^d,
  x_t = Φ⁻¹(u_t) per dimension, z_t = μ_k + L_k x_t.
- :func:`sample_temporal`: the same uniforms, made temporally correlated through a Gaussian copula
  (AR(1) with coefficient ρ in the whitened space), so timbre drifts smoothly instead of jumping
  every frame; ρ = 0 reproduces :func:`sample_inverse_transform` bit for bit.
- :func:`sample_hold`: one draw per note (segment), held for the note's frames.

Every function takes a :class:`numpy.random.Generator`; :func:`make_rng` derives an independent,
reproducible stream per (seed, K, method, cluster, clip), so the same params give bit-identical z.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from scipy.special import ndtri
from sklearn.mixture import GaussianMixture

from pipeline.latent.ztable import z_matrix
from pipeline.prior.mixture import cholesky_factors

RHO_MAX = 0.999  # an estimated ρ of 1 would freeze the clip on its first draw; that is what "hold" is for
MIN_RHO_PAIRS = 10
# uniforms on a 2^-52 grid, offset by half a step: exactly representable, never 0 or 1, so Φ⁻¹ is finite
_UNIFORM_BITS = 52


def make_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator for the stream named by ``keys`` under ``seed``, e.g. ``make_rng(0, 8, "temporal", 3)``.

    Keys become the :class:`~numpy.random.SeedSequence` spawn key, so distinct key tuples give
    statistically independent streams and the same tuple always gives the same one (strings are
    hashed with SHA-256, not Python's salted ``hash``, to stay stable across processes).
    """
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    spawn_key = tuple(_key_to_int(key) for key in keys)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=spawn_key))


def _key_to_int(key: int | str) -> int:
    if isinstance(key, (bool, np.bool_)):
        raise TypeError("a stream key must be an int or a str, not a bool")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"integer stream keys must be non-negative, got {key}")
        return int(key)
    if isinstance(key, str):
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    raise TypeError(f"a stream key must be an int or a str, got {type(key).__name__}")


def open_uniforms(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """U(0,1) draws that are never exactly 0 or 1 (``Generator.random`` can return 0, Φ⁻¹(0) = -inf)."""
    ints = rng.integers(0, 2**_UNIFORM_BITS, size=shape, dtype=np.uint64)
    return (ints + 0.5) * 2.0**-_UNIFORM_BITS


def standard_normals(rng: np.random.Generator, n_frames: int, n_features: int) -> np.ndarray:
    """x = Φ⁻¹(u) with u ~ U(0,1)^{n×d}: i.i.d. N(0, 1) by inverse transform sampling."""
    return ndtri(open_uniforms(rng, (n_frames, n_features)))


def sample_direct(gmm: GaussianMixture, n_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """z [n_frames, d] with a fresh component per frame, and those components [n_frames].

    Unlike ``GaussianMixture.sample`` (which returns draws sorted by component), frame order here is
    the i.i.d. order, so the clip hears the frame-to-frame component switches the report describes.
    """
    _check_frames(n_frames)
    weights = np.asarray(gmm.weights_, np.float64)
    components = rng.choice(len(weights), size=n_frames, p=weights / weights.sum())
    x = standard_normals(rng, n_frames, gmm.means_.shape[1])
    factors = cholesky_factors(gmm)
    z = gmm.means_[components] + np.einsum("nij,nj->ni", factors[components], x)
    return z, components


def sample_inverse_transform(gmm: GaussianMixture, k: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """z [n_frames, d], every frame from cluster k: z_t = μ_k + L_k Φ⁻¹(u_t)."""
    _check_frames(n_frames)
    mean, factor = _cluster(gmm, k)
    return _colour(standard_normals(rng, n_frames, len(mean)), mean, factor)


def sample_temporal(gmm: GaussianMixture, k: int, n_frames: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """z [n_frames, d] from cluster k with lag-1 correlation ρ in the whitened space.

    Gaussian copula: the uniforms u_t are made dependent through x_t = ρ x_{t-1} + √(1-ρ²) ε_t
    (ε_t = Φ⁻¹(u_t), x_0 = ε_0, so every x_t is exactly N(0, I): the chain starts stationary).
    The copula's correlated uniforms would be Φ(x_t), and mapping them back through Φ⁻¹ is the
    identity, so x_t is used directly. The marginal of each z_t is therefore exactly N(μ_k, Σ_k),
    the same as :func:`sample_inverse_transform`; only the frame-to-frame dependence changes.

    The random numbers are drawn exactly as in :func:`sample_inverse_transform` and then filtered;
    with ρ = 0 the filter is x_t = 0·x_{t-1} + 1·ε_t = ε_t in floating point too, so the result is
    bit-identical to the inverse transform draw from the same generator state.
    """
    _check_frames(n_frames)
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must be in (-1, 1), got {rho}")
    mean, factor = _cluster(gmm, k)
    return _colour(ar1_filter(standard_normals(rng, n_frames, len(mean)), rho), mean, factor)


def ar1_filter(eps: np.ndarray, rho: float) -> np.ndarray:
    """x_0 = ε_0, x_t = ρ x_{t-1} + √(1-ρ²) ε_t along axis 0 (unit variance preserved)."""
    innovation = np.sqrt(1.0 - rho * rho)
    x = np.empty_like(eps)
    x[0] = eps[0]
    for t in range(1, len(eps)):
        x[t] = rho * x[t - 1] + innovation * eps[t]
    return x


def sample_hold(gmm: GaussianMixture, k: int, onsets: Sequence[int], n_frames: int,
                rng: np.random.Generator) -> np.ndarray:
    """z [n_frames, d] from cluster k, one draw per note held constant until the next onset.

    ``onsets`` are the frame indices where notes start; frame 0 always starts a segment, so frames
    before the first onset share the first draw. Draws use the same uniforms → Φ⁻¹ → μ_k + L_k x
    path, so with an onset at every frame this equals :func:`sample_inverse_transform`.
    """
    _check_frames(n_frames)
    starts = segment_starts(onsets, n_frames)
    lengths = np.diff(np.append(starts, n_frames))
    mean, factor = _cluster(gmm, k)
    draws = _colour(standard_normals(rng, len(starts), len(mean)), mean, factor)
    return np.repeat(draws, lengths, axis=0)


def segment_starts(onsets: Sequence[int], n_frames: int) -> np.ndarray:
    """Sorted unique segment start frames, always including 0."""
    onsets = np.asarray(onsets, dtype=np.int64).reshape(-1)
    if ((onsets < 0) | (onsets >= n_frames)).any():
        raise ValueError(f"onsets must be frame indices in [0, {n_frames}), got {onsets.min()}..{onsets.max()}")
    return np.unique(np.append(onsets, 0))


def _colour(x: np.ndarray, mean: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """z = μ + L x for each row x."""
    return mean + x @ factor.T


def _cluster(gmm: GaussianMixture, k: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 <= k < gmm.n_components:
        raise ValueError(f"cluster k must be in [0, {gmm.n_components}), got {k}")
    return np.asarray(gmm.means_[k], np.float64), cholesky_factors(gmm)[k]


def _check_frames(n_frames: int) -> None:
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")


@dataclass(frozen=True)
class RhoEstimate:
    """ρ for one cluster, how many consecutive in-cluster frame pairs it rests on, and why."""

    rho: float
    n_pairs: int
    reason: str


def estimate_rho(frames: pd.DataFrame, gmm: GaussianMixture, k: int, *, labels: np.ndarray | None = None,
                 min_pairs: int = MIN_RHO_PAIRS) -> RhoEstimate:
    """Lag-1 autocorrelation of real z inside cluster k, in the cluster's whitened space.

    Frames are assigned to clusters by ``gmm.predict`` (or the given ``labels``, aligned with the
    rows, to avoid recomputing them for every k). Pairs are frames t, t+1 of the same example that
    are both assigned to k; each frame is whitened with x = L_k⁻¹(z - μ_k), which is the space where
    :func:`sample_temporal` applies its AR(1). ρ is the Pearson correlation of (x_t, x_{t+1}) per
    dimension, averaged over dimensions, clipped to [0, RHO_MAX]: negative estimates mean no usable
    smoothness (ρ = 0 is plain inverse transform sampling). Fewer than ``min_pairs`` pairs give
    ρ = 0 with the reason.
    """
    z = z_matrix(frames)
    if labels is None:
        labels = gmm.predict(z)
    first, second = _consecutive_pairs(frames, np.asarray(labels) == k)
    if len(first) < min_pairs:
        return RhoEstimate(0.0, len(first), f"only {len(first)} consecutive frame pairs in cluster {k} "
                                            f"(need {min_pairs}); using rho = 0")
    mean, factor = _cluster(gmm, k)
    x_first = solve_triangular(factor, (z[first] - mean).T, lower=True).T
    x_second = solve_triangular(factor, (z[second] - mean).T, lower=True).T
    per_dim = [_pearson(x_first[:, j], x_second[:, j]) for j in range(x_first.shape[1])]
    finite = [r for r in per_dim if np.isfinite(r)]
    if not finite:
        return RhoEstimate(0.0, len(first), f"cluster {k}: z is constant over its frame pairs; using rho = 0")
    raw = float(np.mean(finite))
    rho = float(np.clip(raw, 0.0, RHO_MAX))
    reason = f"lag-1 autocorrelation {raw:.4f} over {len(first)} pairs" + ("" if rho == raw else f", clipped to {rho}")
    return RhoEstimate(rho, len(first), reason)


def _consecutive_pairs(frames: pd.DataFrame, in_cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (t, t+1) of consecutive frames of one example, both in the cluster."""
    keys = pd.DataFrame({"example_id": frames["example_id"].to_numpy(), "frame": frames["frame"].to_numpy(),
                         "row": np.arange(len(frames))}).sort_values(["example_id", "frame"], kind="stable")
    rows = keys["row"].to_numpy()
    same_example = keys["example_id"].to_numpy()[1:] == keys["example_id"].to_numpy()[:-1]
    next_frame = np.diff(keys["frame"].to_numpy()) == 1
    both_in = in_cluster[rows[:-1]] & in_cluster[rows[1:]]
    keep = same_example & next_frame & both_in
    return rows[:-1][keep], rows[1:][keep]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denom) if denom > 0 else float("nan")


def cluster_rhos(frames: pd.DataFrame, gmm: GaussianMixture, fixed: float | None) -> dict[int, float]:
    """ρ per cluster: ``fixed`` for all, or estimated from the real z frames (a z table) of each."""
    if fixed is not None:
        return {k: fixed for k in range(gmm.n_components)}
    labels = gmm.predict(z_matrix(frames))
    return {k: estimate_rho(frames, gmm, k, labels=labels).rho for k in range(gmm.n_components)}
