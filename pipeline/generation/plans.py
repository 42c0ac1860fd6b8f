"""What to generate for one mixture, and the z sequence of each clip.

A clip is (method, cluster, conditioning): ``direct`` draws each frame's component from the whole
mixture (one clip per conditioning); ``inverse_transform``, ``temporal`` and ``temporal_hold`` draw
every frame from one cluster (one clip per cluster per conditioning). Each clip has its own random
stream derived from (seed, K, method, cluster, conditioning), so adding a clip changes no other clip
and the same params give bit-identical z.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.mixture import GaussianMixture

from pipeline.generation.conditioning import Conditioning
from pipeline.paths import k_name
from pipeline.prior.samplers import make_rng, sample_direct, sample_hold, sample_inverse_transform, sample_temporal
from pipeline.vocab import ALL_METHODS, TEMPORAL_HOLD


@dataclass(frozen=True)
class ClipPlan:
    k: int
    method: str
    cluster: int | None  # None for direct: every frame picks its own component
    conditioning: str

    @property
    def clip_id(self) -> str:
        cluster = "all" if self.cluster is None else f"c{self.cluster:02d}"
        return f"{k_name(self.k)}_{self.method}_{cluster}_{self.conditioning}"


def plan_clips(k: int, methods: list[str], conditionings: list[str], hold_variant: bool) -> list[ClipPlan]:
    plans = []
    for method in methods:
        variants = [method, TEMPORAL_HOLD] if method == "temporal" and hold_variant else [method]
        for variant in variants:
            clusters = [None] if variant == "direct" else list(range(k))
            plans += [ClipPlan(k, variant, c, cond) for c in clusters for cond in conditionings]
    return plans


def z_onsets(conditioning: Conditioning, n_z_frames: int) -> list[int]:
    """Note onsets moved from the decoder's frame grid to the z grid."""
    return sorted({min(n_z_frames - 1, onset * n_z_frames // conditioning.n_frames) for onset in conditioning.onsets})


def draw_z(plan: ClipPlan, gmm: GaussianMixture, n_z_frames: int, conditioning: Conditioning, seed: int,
           rho: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """z [n_z_frames, d] for one clip and the component of each frame."""
    rng = make_rng(seed, "sample", plan.k, plan.method, "all" if plan.cluster is None else plan.cluster,
                   plan.conditioning)
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
