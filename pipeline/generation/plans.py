"""What to generate for one mixture, and the z sequence of each clip.

A clip is (method, cluster, conditioning): ``direct`` draws each frame's component from the whole
mixture (one clip per conditioning); ``inverse_transform``, ``temporal`` and ``temporal_hold`` draw
every frame from one cluster (one clip per cluster per conditioning). Each clip has its own random
stream derived from (seed, K, method, cluster, conditioning), so adding a clip changes no other clip
and the same params give bit-identical z.

On the ``real`` conditioning every method instead gets ``n_draws`` clips per held-out example
(``example``, ``draw``): a draw of a cluster method first picks its cluster from the mixture's
weights (the same cluster for every unconditional cluster method at one (example, draw), so their
clips pair up), which makes each method a prior over whole clips and keeps the clip count
independent of K.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.mixture import GaussianMixture

from pipeline.generation.conditioning import Conditioning
from pipeline.paths import k_name
from pipeline.prior.conditional import controls, sample_conditional
from pipeline.prior.samplers import make_rng, sample_direct, sample_hold, sample_inverse_transform, sample_temporal
from pipeline.vocab import ALL_METHODS, REAL, TEMPORAL_HOLD

ANCHOR_K = 0  # the K of an anchor clip (resynthesis, mean_z): no mixture
CONDITIONAL = "conditional"  # pipeline.vocab's name of the method drawing z from p(z | f0, loudness)


@dataclass(frozen=True)
class ClipPlan:
    k: int
    method: str
    cluster: int | None  # None for direct: every frame picks its own component
    conditioning: str
    example: int = -1  # the real example (conditioning ``real``), -1 otherwise
    draw: int = 0      # which of the n_draws clips on that example

    @property
    def conditioning_key(self) -> str:
        """The key of the clip's contours (:attr:`pipeline.generation.conditioning.Conditioning.key`)."""
        return self.conditioning if self.example < 0 else f"{self.conditioning}_e{self.example}"

    @property
    def clip_id(self) -> str:
        if self.k == ANCHOR_K:
            return f"anchor_{self.method}_{self.conditioning_key}"
        cluster = "all" if self.cluster is None else f"c{self.cluster:02d}"
        draw = f"_d{self.draw}" if self.example >= 0 else ""
        return f"{k_name(self.k)}_{self.method}_{cluster}_{self.conditioning_key}{draw}"

    def rng_keys(self) -> tuple:
        keys = (self.k, self.method, "all" if self.cluster is None else self.cluster, self.conditioning)
        return keys if self.example < 0 else (*keys, self.example, self.draw)


def draw_cluster(weights: np.ndarray, seed: int, k: int, example: int, draw: int, stream: str = "cluster") -> int:
    """The cluster of one real-contour draw, c ~ Cat(weights), from its own seeded stream."""
    weights = np.asarray(weights, np.float64)
    return int(make_rng(seed, stream, k, example, draw).choice(len(weights), p=weights / weights.sum()))


def plan_clips(k: int, methods: list[str], conditionings: list[str], hold_variant: bool, *,
               real_examples: Sequence[int] = (), n_draws: int = 1, weights: np.ndarray | None = None,
               conditional_weights: np.ndarray | None = None, seed: int = 0) -> list[ClipPlan]:
    """Every clip of one mixture. ``conditionings`` are names; ``real`` expands over ``real_examples``
    x ``n_draws`` (clusters drawn from ``weights``, or ``conditional_weights`` for ``conditional``)."""
    plans = []
    others = [c for c in conditionings if c != REAL]
    for method in methods:
        variants = [method, TEMPORAL_HOLD] if method == "temporal" and hold_variant else [method]
        for variant in variants:
            clusters = [None] if variant == "direct" else list(range(k))
            plans += [ClipPlan(k, variant, c, cond) for c in clusters for cond in others]
            if REAL not in conditionings:
                continue
            for example in real_examples:
                for draw in range(n_draws):
                    cluster = None
                    if variant == CONDITIONAL:
                        cluster = draw_cluster(conditional_weights, seed, k, example, draw, "conditional_cluster")
                    elif variant != "direct":
                        cluster = draw_cluster(weights, seed, k, example, draw)
                    plans.append(ClipPlan(k, variant, cluster, REAL, example, draw))
    return plans


def z_onsets(conditioning: Conditioning, n_z_frames: int) -> list[int]:
    """Note onsets moved from the decoder's frame grid to the z grid."""
    return sorted({min(n_z_frames - 1, onset * n_z_frames // conditioning.n_frames) for onset in conditioning.onsets})


def draw_z(plan: ClipPlan, gmm: GaussianMixture, n_z_frames: int, conditioning: Conditioning, seed: int,
           rho: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """z [n_z_frames, d] for one clip and the component of each frame."""
    rng = make_rng(seed, "sample", *plan.rng_keys())
    if plan.method == "direct":
        return sample_direct(gmm, n_z_frames, rng)
    components = np.full(n_z_frames, plan.cluster)
    if plan.method == "inverse_transform":
        return sample_inverse_transform(gmm, plan.cluster, n_z_frames, rng), components
    if plan.method == "temporal":
        return sample_temporal(gmm, plan.cluster, n_z_frames, rho, rng), components
    if plan.method == TEMPORAL_HOLD:
        return sample_hold(gmm, plan.cluster, z_onsets(conditioning, n_z_frames), n_z_frames, rng), components
    raise ValueError(f"unknown sampling method {plan.method!r}; choose from {ALL_METHODS}")


def draw_conditional_z(plan: ClipPlan, mixture, n_z_frames: int, conditioning: Conditioning, seed: int,
                       rho: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """z [n_z_frames, d] of a ``conditional`` clip: every frame from the joint mixture's cluster given
    that frame's f0 and loudness (on the z grid), through the AR(1) copula with ``rho``."""
    rng = make_rng(seed, "sample", *plan.rng_keys())
    frames = np.minimum(np.arange(n_z_frames) * conditioning.n_frames // n_z_frames, conditioning.n_frames - 1)
    c = controls(conditioning.f0_hz[frames], conditioning.loudness_db[frames])
    z = sample_conditional(mixture, plan.cluster, c[:, 0], c[:, 1], rho, rng)
    return z, np.full(n_z_frames, plan.cluster)
