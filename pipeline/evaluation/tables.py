"""The evaluation's numbers: per conditioning (never pooled over conditionings), with intervals and paired tests.

- :func:`by_conditioning`: ``<conditioning>.<method>.<metric>`` -> ``{mean, ci_low, ci_high, n}`` over the
  clips of one scope (pooled over K, or one K); the anchors (``resynthesis``, ``mean_z``) sit beside
  the sampling methods on the same contours. On ``real`` also ``spectral_distance_to_real_best``
  (the best of a method's draws per example, its interval over examples) and the set-level
  ``kad_to_real`` / ``frechet_to_real`` (one number per set, its interval the delete-one-example
  jackknife's: the example left out of both the generated and the real set).
- :func:`paired_comparisons`: on ``real``, every sampling method against both anchors and
  ``conditional`` against every unconditional method, by ``spectral_distance_to_real`` paired over the
  same (example, draw) (an anchor, one clip per example, pairs with every draw of that example),
  Wilcoxon signed-rank, Holm over the scope's family (:mod:`pipeline.evaluation.stats`).
- :func:`seed_experiment`: the seed report's comparison (direct vs per-cluster sampling at constant
  pitch and loudness, by ``hnr_db`` and ``spectral_flatness``) on ``seed`` and ``seed_report_scale``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import soundfile as sf

from pipeline.evaluation.stats import bootstrap_mean_ci, compare_methods, jackknife_ci
from pipeline.metrics.clip import mfcc_frames
from pipeline.metrics.distances import frechet_to_real, kad_to_real
from pipeline.vocab import (
    ANCHORS,
    BEST_OF_DRAWS,
    CLIP_METRICS,
    CLUSTER_METHODS,
    CONDITIONAL,
    CONDITIONINGS,
    MEAN_Z,
    REAL,
    RESYNTHESIS,
    SET_METRICS,
    SPECTRAL_DISTANCE_TO_REAL,
    VALID_SHARE,
    higher_is_better,
    method_order,
)

SEED_CONDITIONINGS = ("seed", "seed_report_scale")
PER_CLUSTER = "per_cluster"  # the unconditional per-cluster methods pooled, as the seed report compared them


def conditioning_order(names: Iterable[str]) -> list[str]:
    present = set(names)
    return [c for c in CONDITIONINGS if c in present] + sorted(present - set(CONDITIONINGS))


def all_method_order(names: Iterable[str]) -> list[str]:
    """Sampling methods in the vocabulary's order, then the anchors."""
    present = set(names)
    return method_order(present - set(ANCHORS)) + [a for a in ANCHORS if a in present]


def _ci(values, n_resamples: int, seed: int) -> dict:
    return bootstrap_mean_ci(np.asarray(values, np.float64), n_resamples=n_resamples, seed=seed).as_dict()


def best_of_draws(clips: pd.DataFrame) -> pd.Series:
    """Per (k, method, example) of real clips, the lowest spectral_distance_to_real over the draws."""
    real = clips[(clips["conditioning"] == REAL) & (clips["example"] >= 0)]
    return real.groupby(["k", "method", "example"])[SPECTRAL_DISTANCE_TO_REAL].min()


def by_conditioning(clips: pd.DataFrame, *, n_resamples: int, seed: int,
                    set_metrics: Mapping[str, Mapping[str, Mapping]] | None = None) -> dict:
    """``{conditioning: {method: {metric: {mean, ci_low, ci_high, n}}}}`` over ``clips`` (one scope).

    ``set_metrics`` maps method -> {kad_to_real, frechet_to_real} -> {mean, ci_low, ci_high} for the
    ``real`` conditioning (:func:`set_distances`).
    """
    out: dict = {}
    for conditioning in conditioning_order(clips["conditioning"]):
        mine = clips[clips["conditioning"] == conditioning]
        table: dict = {}
        for method in all_method_order(mine["method"]):
            group = mine[mine["method"] == method]
            entry = {metric: _ci(group[metric], n_resamples, seed) for metric in CLIP_METRICS
                     if group[metric].notna().any()}
            entry[VALID_SHARE] = _ci(group["valid"].astype(float), n_resamples, seed)
            if conditioning == REAL:
                best = best_of_draws(group)
                if len(best) and best.notna().any():
                    entry[BEST_OF_DRAWS] = _ci(best.to_numpy(), n_resamples, seed)
                for name, value in (set_metrics or {}).get(method, {}).items():
                    entry[name] = {**value, "n": int(len(group))}
            table[method] = entry
        out[conditioning] = table
    return out


# ---- set-level distances ----

def clip_mfcc(path: Path, cache: dict) -> np.ndarray:
    """MFCC frames of one WAV (pipeline.metrics.clip.mfcc_frames), read once per evaluation."""
    key = str(path)
    if key not in cache:
        audio, rate = sf.read(path, dtype="float32")
        cache[key] = mfcc_frames(audio, rate)
    return cache[key]


def set_distances(clips: pd.DataFrame, real_frames: Mapping[int, np.ndarray], *, max_frames: int, seed: int,
                  cache: dict) -> dict[str, dict[str, dict]]:
    """Per method, the ``real``-conditioned clips (``folder``, ``wav``, ``example`` columns) as one set of
    MFCC frames against the real examples' frames (``real_frames``: example -> frames [n, d]):
    ``kad_to_real`` and ``frechet_to_real``, each ``{mean, ci_low, ci_high}``. The value uses every
    example; the interval is the delete-one-example jackknife's (:func:`jackknife_ci`), so it spans
    the spread between examples, not only between frames."""
    out = {}
    real = clips[clips["conditioning"] == REAL]
    reference = list(real_frames.items())
    for method, group in real.groupby("method", sort=True):
        rows = [(int(example), clip_mfcc(Path(folder) / wav, cache))
                for folder, wav, example in zip(group["folder"], group["wav"], group["example"])]

        def distances(left_out: int | None) -> dict[str, float]:
            gen = [f for example, f in rows if example != left_out and len(f)]
            ref = [f for example, f in reference if example != left_out]
            if not gen or not ref or sum(map(len, gen)) < 2:
                return {name: math.nan for name in SET_METRICS}
            gen, ref = np.concatenate(gen), np.concatenate(ref)
            return {"kad_to_real": kad_to_real(gen, ref, max_frames=max_frames, seed=seed),
                    "frechet_to_real": frechet_to_real(gen, ref, seed=seed)}

        full = distances(None)
        leave_one_out = [distances(example) for example, _ in reference]
        out[method] = {name: _jackknife_entry(value, [loo[name] for loo in leave_one_out])
                       for name, value in full.items()}
    return out


def _jackknife_entry(full: float, leave_one_out: list[float]) -> dict:
    """{mean, ci_low, ci_high}; an interval that cannot be had (under 3 examples) is null, as in JSON."""
    ci = jackknife_ci(full, leave_one_out)
    return {"mean": ci.mean, "ci_low": ci.ci_low if math.isfinite(ci.ci_low) else None,
            "ci_high": ci.ci_high if math.isfinite(ci.ci_high) else None}


# the anchors stage names each copy by its conditioning key (ClipPlan.conditioning_key): real_e<example>
REAL_AUDIO_NAME = re.compile(rf"{REAL}_e(\d+)\.wav")


def real_reference_frames(folder: Path, cache: dict) -> dict[int, np.ndarray]:
    """MFCC frames of every real example the anchors stage kept (``real/real_e<i>.wav``), by example i."""
    paths = sorted(Path(folder).glob("*.wav"))
    if not paths:
        raise FileNotFoundError(f"no real example audio in {folder}: run the anchors stage with conditioning real")
    frames = {}
    for path in paths:
        match = REAL_AUDIO_NAME.fullmatch(path.name)
        if match is None:
            raise ValueError(f"{path}: a real example's audio is named real_e<example>.wav")
        frames[int(match.group(1))] = clip_mfcc(path, cache)
    return frames


# ---- paired tests ----

def comparison_pairs(methods: Iterable[str]) -> list[tuple[str, str]]:
    """Each sampling method vs mean_z and vs resynthesis; conditional vs every other sampling method."""
    present = set(methods)
    sampling = [m for m in method_order(present - set(ANCHORS))]
    pairs = [(m, anchor) for anchor in (MEAN_Z, RESYNTHESIS) if anchor in present for m in sampling]
    if CONDITIONAL in present:
        pairs += [(CONDITIONAL, m) for m in sampling if m != CONDITIONAL]
    return pairs


def paired_units(clips: pd.DataFrame, anchors: pd.DataFrame, ks: Iterable[int]) -> pd.DataFrame:
    """Real-contour clips keyed by (k, example, draw); each anchor clip repeated for every (k, draw)."""
    real = clips[(clips["conditioning"] == REAL) & (clips["example"] >= 0)]
    cols = ["method", "k", "example", "draw", SPECTRAL_DISTANCE_TO_REAL]
    parts = [real[cols]]
    draws = sorted(real["draw"].unique()) if len(real) else [0]
    base = anchors[(anchors["conditioning"] == REAL) & (anchors["example"] >= 0)]
    for k in ks:
        for draw in draws:
            parts.append(base.assign(k=k, draw=draw)[cols])
    return pd.concat(parts, ignore_index=True)


def paired_comparisons(units: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """:func:`pipeline.evaluation.stats.compare_methods` over one scope's units (empty if nothing pairs)."""
    pairs = comparison_pairs(units["method"].unique())
    if not pairs or units.empty:
        return pd.DataFrame()
    return compare_methods(units, {SPECTRAL_DISTANCE_TO_REAL: higher_is_better(SPECTRAL_DISTANCE_TO_REAL)}, pairs,
                           pair_on=("k", "example", "draw"), alpha=alpha)


def comparison_records(table: pd.DataFrame) -> list[dict]:
    if table.empty:
        return []
    return table.to_dict("records")


# ---- the seed report's experiment ----

def seed_experiment(clips: pd.DataFrame, *, n_resamples: int, seed: int) -> dict:
    """Per seed conditioning: valid share, and direct vs per-cluster (inverse_transform, temporal,
    temporal_hold pooled over K) by hnr_db and spectral_flatness, with intervals. ``direct_lower_hnr``:
    direct's hnr_db interval lies below per-cluster's; ``direct_flatter``: its mean flatness is above;
    ``direct_noisier``: both, the seed report's finding."""
    out = {}
    for conditioning in SEED_CONDITIONINGS:
        mine = clips[clips["conditioning"] == conditioning]
        if mine.empty:
            continue
        groups = {"direct": mine[mine["method"] == "direct"],
                  PER_CLUSTER: mine[mine["method"].isin([m for m in CLUSTER_METHODS if m != CONDITIONAL])]}
        entry: dict = {VALID_SHARE: float(mine["valid"].mean()), "n_clips": int(len(mine))}
        for name, group in groups.items():
            entry[name] = {metric: _ci(group[metric], n_resamples, seed) for metric in ("hnr_db", "spectral_flatness")}
            entry[name][VALID_SHARE] = float(group["valid"].mean()) if len(group) else None
        d, c = entry["direct"], entry[PER_CLUSTER]
        entry["direct_lower_hnr"] = bool(_finite(d["hnr_db"]["ci_high"], c["hnr_db"]["ci_low"])
                                         and d["hnr_db"]["ci_high"] < c["hnr_db"]["ci_low"])
        entry["direct_flatter"] = bool(_finite(d["spectral_flatness"]["mean"], c["spectral_flatness"]["mean"])
                                       and d["spectral_flatness"]["mean"] > c["spectral_flatness"]["mean"])
        entry["direct_noisier"] = entry["direct_lower_hnr"] and entry["direct_flatter"]
        out[conditioning] = entry
    return out


def _finite(*values) -> bool:
    return all(v is not None and np.isfinite(v) for v in values)
