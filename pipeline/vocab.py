"""The project's names, in one place: sampling methods, conditionings, metrics and which way is better.

Every module, the params schema, dvc.yaml's plots (checked by tests/test_layout.py) and the report
read these instead of spelling the names again. Names here are part of the interface users' scripts
and checks rely on (DVC metrics keys, MLflow metric keys, clip manifests).
"""
from __future__ import annotations

# ---- sampling methods (ARCHITECTURE.md, "Sampling methods") ----
# z from p(z | f0_t, loudness_t) of one cluster of the joint mixture over (z, f0, loudness)
CONDITIONAL = "conditional"
# temporal sampling's hold-per-note variant, added by ``sample.temporal_hold``
TEMPORAL_HOLD = "temporal_hold"
# the values of ``sample.methods``
METHODS = ("direct", "inverse_transform", "temporal", CONDITIONAL)
# the methods that draw from the unconditional mixture alone (what `gddsp generate` and `stream` offer)
MIXTURE_METHODS = ("direct", "inverse_transform", "temporal", TEMPORAL_HOLD)
# every method a clip can carry, in the order tables and plots show them
ALL_METHODS = (*MIXTURE_METHODS, CONDITIONAL)
# methods that draw every frame of a clip from one cluster (one clip per cluster)
CLUSTER_METHODS = ("inverse_transform", "temporal", TEMPORAL_HOLD, CONDITIONAL)
# methods whose frames follow the AR(1) copula, so a clip records its ρ
TEMPORAL_METHODS = ("temporal", TEMPORAL_HOLD, CONDITIONAL)

# ---- conditionings: where a clip's f0 and loudness come from ----
CONDITIONINGS = ("seed", "seed_report_scale", "midi", "real")
# conditionings whose clips have a real example with the same contours (its audio is the reference)
REAL = "real"

# ---- mixtures ----
# the key of the mixture with choose_k's recommended K (fit_gmm_recommended, sample_recommended): its folders
# are named so, not k<K>, because DVC's matrix of listed Ks is static and the recommended K is known only later
RECOMMENDED = "recommended"
RENDERED_AS = "rendered_as"  # in the recommended mixture's metrics: the listed K's folder that already holds it

# ---- anchors: z that is not sampled, decoded on the same contours (the anchors stage) ----
RESYNTHESIS = "resynthesis"  # the encoder's z of the real example: the ceiling
MEAN_Z = "mean_z"            # the training z mean held constant: what sampling must beat
ANCHORS = (RESYNTHESIS, MEAN_Z)

# ---- metrics ----
# per generated clip (pipeline.metrics.clip), in table order
# frechet_clip_to_set: one clip's MFCC frames against the whole eval set (rewards variety within a clip);
# spectral_distance_to_real: ae.gin's SpectralLoss against the real example with the same contours
CLIP_METRICS = ("f0_rpa", "f0_median_cents", "loudness_l1_db", "hnr_db", "spectral_flatness",
                "timbre_consistency", "frechet_clip_to_set", "reencode_loglik", "spectral_distance_to_real")
SPECTRAL_DISTANCE_TO_REAL = "spectral_distance_to_real"
# the best (lowest) spectral_distance_to_real of a method's draws on one real example
BEST_OF_DRAWS = "spectral_distance_to_real_best"
# per method and conditioning, the generated clips as a set against the real examples' audio
SET_METRICS = ("kad_to_real", "frechet_to_real")
VALID_SHARE = "valid_share"
# the trained autoencoder on held-out audio (pipeline.model.heldout)
HELDOUT_METRICS = ("loudness_l1_db", "f0_l1_cents", "f0_rpa", "f0_outlier_ratio", "spectral_distance")
# per fitted mixture (pipeline.prior.mixture)
MIXTURE_METRICS = ("bic", "aic", "train_loglik", "heldout_loglik", "heldout_conditional_loglik")

HIGHER_IS_BETTER = {
    "f0_rpa": True, "f0_median_cents": False, "loudness_l1_db": False, "hnr_db": True,
    "spectral_flatness": False, "timbre_consistency": False, "frechet_clip_to_set": False, "reencode_loglik": True,
    "spectral_distance_to_real": False, BEST_OF_DRAWS: False, "kad_to_real": False, "frechet_to_real": False,
    VALID_SHARE: True, "f0_l1_cents": False, "f0_outlier_ratio": False, "spectral_distance": False,
    "bic": False, "aic": False, "train_loglik": True, "heldout_loglik": True, "heldout_conditional_loglik": True,
}

# fields that record wall-clock time: logged to MLflow only, never written into DVC-tracked outputs,
# so the same params and data give the same bytes
WALL_CLOCK_FIELDS = ("fit_secs", "frames_per_s", "steps_per_s")


def higher_is_better(metric: str) -> bool:
    try:
        return HIGHER_IS_BETTER[metric]
    except KeyError:
        raise KeyError(f"unknown metric {metric!r}: add it to pipeline.vocab.HIGHER_IS_BETTER") from None


def metric_label(metric: str) -> str:
    """The metric with its direction, e.g. ``hnr_db ↑``, so a table reads without the docs."""
    return f"{metric} {'↑' if higher_is_better(metric) else '↓'}"


def method_order(methods) -> list[str]:
    """The vocabulary's method order, then any other method alphabetically."""
    present = set(methods)
    return [m for m in ALL_METHODS if m in present] + sorted(present - set(ALL_METHODS))
