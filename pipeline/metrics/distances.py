"""Set-level distances of generated audio to real audio, on MFCC frames.

Both distances compare two sets of feature frames (e.g. :func:`pipeline.metrics.clip.mfcc_frames` of
every clip of one method against those of the held-out real audio), after standardising *both*
sets with the real set's per-dimension mean and standard deviation. That makes them invariant to
the features' units (a global scale or an offset of any coefficient changes nothing) and gives
every coefficient the same weight, so high-variance low-order MFCCs do not dominate.

- :func:`kad_to_real`: kernel audio distance, the unbiased estimate of the squared maximum mean
  discrepancy with a Gaussian kernel k(a, b) = exp(-|a - b|² / (2 σ²)):

      MMD²_u = 1/(m(m-1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n-1)) Σ_{i≠j} k(y_i, y_j) - 2/(mn) Σ_{i,j} k(x_i, y_j)

  σ is the median heuristic: the median pairwise distance of the (standardised) *real* frames,
  so every method is measured with the same kernel. Unbiased means E[MMD²_u] = MMD², which is 0
  for equal distributions: an estimate can be slightly negative. No assumption on the shape of the
  distributions.
- :func:`frechet_to_real`: the Fréchet distance between Gaussians fitted to the two sets
  (:func:`pipeline.metrics.clip.frechet_distance`, d² = |μ_g - μ_r|² + Tr(Σ_g + Σ_r - 2 (Σ_g Σ_r)^{1/2})).
  It sees only means and covariances.

Large sets are subsampled (seeded, without replacement) to at most ``max_frames`` per side: the
kernel sums cost O(n²) time and memory.
"""
from __future__ import annotations

import numpy as np

from pipeline.metrics.clip import frechet_distance, mfcc_stats

DEFAULT_MAX_FRAMES = 2000
MIN_STD = 1e-12  # a coefficient constant over the real set is centred but not scaled


def standardise_to_real(gen_frames: np.ndarray, real_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gen, real) [n, d] each, centred and scaled by the real frames' per-dimension mean and std."""
    gen, real = _frames(gen_frames, "gen_frames"), _frames(real_frames, "real_frames")
    if gen.shape[1] != real.shape[1]:
        raise ValueError(f"gen_frames have {gen.shape[1]} dims but real_frames have {real.shape[1]}")
    mean = real.mean(axis=0)
    std = real.std(axis=0)
    std = np.where(std > MIN_STD, std, 1.0)
    return (gen - mean) / std, (real - mean) / std


def subsample_frames(frames: np.ndarray, max_frames: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_frames`` rows [≤max_frames, d], drawn without replacement, in their original order."""
    if max_frames is None or max_frames <= 0 or len(frames) <= max_frames:
        return frames
    return frames[np.sort(rng.choice(len(frames), size=max_frames, replace=False))]


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a_i - b_j|² [n_a, n_b], clipped at 0 against rounding."""
    d2 = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d2, 0.0)


def median_bandwidth(frames: np.ndarray) -> float:
    """σ of the median heuristic: the median distance over distinct pairs of ``frames`` [n, d]."""
    if len(frames) < 2:
        raise ValueError("the median heuristic needs at least 2 frames")
    d2 = squared_distances(frames, frames)
    upper = d2[np.triu_indices(len(frames), k=1)]
    sigma = float(np.sqrt(np.median(upper)))
    if not sigma > 0:
        raise ValueError("the real frames are (nearly) all identical: no bandwidth from the median heuristic")
    return sigma


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD² between samples x [m, d] and y [n, d] with a Gaussian kernel of width ``bandwidth``."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"unbiased MMD² needs at least 2 frames per set, got {m} and {n}")
    scale = -1.0 / (2.0 * bandwidth * bandwidth)
    k_xx = np.exp(squared_distances(x, x) * scale)
    k_yy = np.exp(squared_distances(y, y) * scale)
    k_xy = np.exp(squared_distances(x, y) * scale)
    # the diagonals are k(a, a) = 1 exactly, removed from the within-set sums
    term_xx = (k_xx.sum() - m) / (m * (m - 1))
    term_yy = (k_yy.sum() - n) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


def kad_to_real(gen_frames: np.ndarray, real_frames: np.ndarray, *, max_frames: int | None = DEFAULT_MAX_FRAMES,
                seed: int = 0, bandwidth: float | None = None) -> float:
    """``kad_to_real``: unbiased MMD² (Gaussian kernel, median heuristic on real) of generated vs real frames.

    gen_frames [m, d] and real_frames [n, d] are standardised by the real set, subsampled to
    ``max_frames`` each with a generator seeded by ``seed``; ``bandwidth`` overrides the median
    heuristic (in standardised units). Lower is better; ~0 means indistinguishable.
    """
    gen, real = standardise_to_real(gen_frames, real_frames)
    rng = np.random.default_rng(seed)
    real = subsample_frames(real, max_frames, rng)
    gen = subsample_frames(gen, max_frames, rng)
    sigma = median_bandwidth(real) if bandwidth is None else float(bandwidth)
    if not sigma > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    return mmd2_unbiased(gen, real, sigma)


def frechet_to_real(gen_frames: np.ndarray, real_frames: np.ndarray, *, max_frames: int | None = None,
                    seed: int = 0) -> float:
    """``frechet_to_real``: Fréchet distance d² of generated vs real frames, standardised by the real set.

    Means and covariances are cheap (O(n d²)), so by default every frame is used; ``max_frames``
    subsamples as in :func:`kad_to_real`. Lower is better.
    """
    gen, real = standardise_to_real(gen_frames, real_frames)
    rng = np.random.default_rng(seed)
    real = subsample_frames(real, max_frames, rng)
    gen = subsample_frames(gen, max_frames, rng)
    if len(gen) < 2 or len(real) < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 frames per set, got {len(gen)} and {len(real)}")
    return frechet_distance(mfcc_stats(gen), mfcc_stats(real))


def _frames(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or not len(values):
        raise ValueError(f"{name} must be a non-empty [n_frames, dims] array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return values
