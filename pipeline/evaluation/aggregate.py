"""Aggregate the per-clip metrics of sample@K into what a reader compares: methods, clusters, K.

Inputs are the mixture metrics (``<gmm.metrics_dir>/k<K>.json``) and the clip manifests
(``<sample.out_dir>/k<K>/clips.csv``) of exactly the Ks asked for: files of a K dropped from the
params may still lie on disk and must not count. sample@K decides validity per clip; here a
*cluster* is invalid when too few of its clips are valid, which is how the seed report's noise-only,
low-weight cluster is found without listening. Undefined values stay NaN in tables (an empty CSV
cell) and become null in JSON.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.evaluation import tables  # noqa: E402
from pipeline.paths import CLIPS_FILE, REAL_DIR, k_name  # noqa: E402
from pipeline.vocab import (  # noqa: E402
    ALL_METHODS,
    BEST_OF_DRAWS,
    CLIP_METRICS,
    CONDITIONAL,
    REAL,
    RECOMMENDED,
    SET_METRICS,
    VALID_SHARE,
    method_order,
    metric_label,
)

METRICS = CLIP_METRICS
METHOD_COLORS = dict(zip(ALL_METHODS, ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange")))
GMM_COLUMNS = ("k", "bic", "aic", "train_loglik", "heldout_loglik", "heldout_conditional_loglik")
CLIP_COLUMNS = ("clip_id", "k", "method", "cluster", "cluster_weight", "conditioning", "example", "draw", "wav", "png",
                *METRICS, "valid", "invalid_reason")
# the comparison tables' metrics: every clip metric, then the real conditioning's best-of-draws and set distances
TABLE_METRICS = (*METRICS, BEST_OF_DRAWS, *SET_METRICS)
CLUSTER_COLUMNS = ("k", "cluster", "weight", "relative_weight", "n_clips", VALID_SHARE, "invalid",
                   *METRICS, "reasons")

# file names inside the plots-data folder (DVC plots) and the report folder
MODEL_SELECTION_CSV = "model_selection.csv"
CLUSTERS_CSV = "clusters.csv"
VS_K_DIR = "vs_k"
COMPARISON_CSV = "comparison.csv"
COMPARISON_MD = "comparison.md"
PAIRED_TESTS_CSV = "paired_tests.csv"
INVALID_CLUSTERS_CSV = "invalid_clusters.csv"
METRIC_VS_K_PNG = "metric_vs_k.png"
MODEL_SELECTION_PNG = "model_selection.png"
WEIGHT_VS_VALIDITY_PNG = "weight_vs_validity.png"


# ---- inputs ----

def rendered_mixtures(metrics_dir: Path, listed: Iterable[int]) -> dict[int, str]:
    """K -> the name of its folders, for every rendered mixture: ``k<K>`` for the listed Ks, and
    ``recommended`` for choose_k's K when it is not listed (fit_gmm_recommended wrote its metrics)."""
    keys = {int(k): k_name(k) for k in listed}
    path = Path(metrics_dir) / f"{RECOMMENDED}.json"
    if path.is_file():
        k = int(json.loads(path.read_text())["k"])
        keys.setdefault(k, RECOMMENDED)
    return dict(sorted(keys.items()))


def _keys(ks: Iterable[int] | Mapping[int, str]) -> dict[int, str]:
    return dict(sorted(ks.items())) if isinstance(ks, Mapping) else {int(k): k_name(k) for k in sorted(ks)}


def _stage_of(key: str, k: int, stage: str) -> str:
    return f"{stage}_{RECOMMENDED}" if key == RECOMMENDED else f"{stage}@{k}"


def load_gmm_table(metrics_dir: Path, ks: Iterable[int] | Mapping[int, str]) -> pd.DataFrame:
    """One row per K (sorted) from fit_gmm's metrics files; ``ks`` may map each K to its folder name."""
    rows = []
    for k, key in _keys(ks).items():
        path = Path(metrics_dir) / f"{key}.json"
        if not path.is_file():
            raise FileNotFoundError(f"no mixture metrics for K={k}: {path} is missing "
                                    f"(run {_stage_of(key, k, 'fit_gmm')})")
        row = json.loads(path.read_text())
        if row.get("k") != k:
            raise ValueError(f"{path} holds K={row.get('k')}, expected {k}")
        rows.append(row)
    return pd.DataFrame(rows)


def read_manifest(path: Path) -> pd.DataFrame:
    """A clips.csv as written, after checking it has every column evaluation reads."""
    clips = pd.read_csv(path)
    missing = [column for column in CLIP_COLUMNS if column not in clips.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    return clips


def load_clips(samples_dir: Path, ks: Iterable[int] | Mapping[int, str]) -> pd.DataFrame:
    """Every clip manifest of the given Ks in one table, with ``valid`` as bool and reasons as text;
    ``ks`` may map each K to its folder name (:func:`rendered_mixtures`)."""
    frames = []
    for k, key in _keys(ks).items():
        path = Path(samples_dir) / key / CLIPS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no clips for K={k}: {path} is missing (run {_stage_of(key, k, 'sample')})")
        clips = read_manifest(path)
        if (clips["k"] != k).any():
            raise ValueError(f"{path} holds clips of K={sorted(set(clips['k']) - {k})}, expected only {k}")
        frames.append(clips.assign(folder=str(path.parent)))
    return _typed(pd.concat(frames, ignore_index=True))


def load_anchors(anchors_dir: Path) -> pd.DataFrame:
    """The anchors stage's manifest (K 0, methods resynthesis and mean_z), typed like :func:`load_clips`."""
    path = Path(anchors_dir) / CLIPS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no anchor clips: {path} is missing (run the anchors stage)")
    return _typed(read_manifest(path).assign(folder=str(path.parent)))


def real_audio_dir(anchors_dir: Path) -> Path:
    return Path(anchors_dir) / REAL_DIR


def _typed(clips: pd.DataFrame) -> pd.DataFrame:
    # CSV round trips turn a column of booleans with gaps into text, and empty reasons into NaN
    clips["valid"] = clips["valid"].astype(str).str.lower().isin(("true", "1", "1.0"))
    for column in ("invalid_reason", "png"):
        # an all-empty column reads back as float NaN, which pandas will not fill with text
        clips[column] = clips[column].astype("string").fillna("").astype(str)
    for column in ("cluster", "example", "draw"):
        clips[column] = clips[column].astype(int)
    for column in (*METRICS, "cluster_weight"):
        clips[column] = pd.to_numeric(clips[column], errors="coerce")
    return clips


# ---- aggregates ----

def recommend_k(table: pd.DataFrame | Iterable[Mapping[str, Any]]) -> int:
    """The cluster count with the lowest BIC.

    BIC trades the training likelihood against the parameter count, the usual choice for mixtures.
    Ties (equal BIC to within 1e-9 relative) go to the higher ``heldout_loglik`` (if the column is
    there), then to the smaller K: with no evidence either way, fewer clusters are simpler to audit.
    Rows with a non-finite BIC (failed fits) are ignored.
    """
    frame = pd.DataFrame(table if isinstance(table, pd.DataFrame) else list(table))
    if not {"k", "bic"} <= set(frame.columns):
        raise ValueError(f"table needs columns 'k' and 'bic', got {list(frame.columns)}")
    frame = frame[np.isfinite(frame["bic"].astype(float))]
    if frame.empty:
        raise ValueError("no row with a finite BIC")
    best_bic = frame["bic"].min()
    tied = frame[np.isclose(frame["bic"], best_bic, rtol=1e-9, atol=0.0)]
    heldout = tied["heldout_loglik"].astype(float).fillna(-math.inf) if "heldout_loglik" in tied else 0.0
    ranked = tied.assign(_heldout=heldout).sort_values(["_heldout", "k"], ascending=[False, True])
    return int(ranked["k"].iloc[0])


def summarise_methods(clips: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per method (per ``by`` group): n_clips, valid_share, mean and std of every metric.

    Means pool the clips: a cluster method has K clips per conditioning at each K, direct has one.
    """
    keys = [*by, "method"]
    grouped = clips.groupby(keys, sort=True)
    stats = grouped[list(METRICS)].agg(["mean", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    table = pd.concat([grouped.size().rename("n_clips"), grouped["valid"].mean().rename(VALID_SHARE), stats],
                      axis=1).reset_index()
    rank = {method: i for i, method in enumerate(method_order(table["method"]))}
    return (table.assign(_rank=table["method"].map(rank)).sort_values([*by, "_rank"])
            .drop(columns="_rank").reset_index(drop=True))


def summarise_reasons(reasons: Iterable[str], n_clips: int) -> str:
    """Per failed check, how many clips failed it: 'hnr_db -3 < 5 in 3/3 clips'.

    sample@K writes one reason per clip ('hnr_db -3.1 < 3; f0_rpa 0 < 0.5'); values differ from
    clip to clip, so checks are grouped by the metric each part names, with one example shown.
    """
    by_check: dict[str, list[str]] = {}
    for reason in reasons:
        for part in [p.strip() for p in reason.split(";") if p.strip()] or ["no reason given"]:
            by_check.setdefault(part.split()[0], []).append(part)
    summaries = []
    for check, parts in sorted(by_check.items(), key=lambda item: (-len(item[1]), item[0])):
        count = f"{len(parts)}/{n_clips} clips"
        summaries.append(f"{parts[0]} in {count}" if len(set(parts)) == 1
                         else f"{check} failed in {count} (e.g. {parts[0]})")
    return "; ".join(summaries)


def cluster_table(clips: pd.DataFrame, min_valid_share: float) -> pd.DataFrame:
    """One row per (K, cluster) over the per-cluster methods' clips; ``invalid`` below ``min_valid_share``.

    ``conditional`` clips are left out: their clusters are the joint mixture's, not these.

    ``relative_weight`` is weight x K (1 = a uniform share), so clusters of different K compare.
    """
    rows = []
    unconditional = clips[(clips["cluster"] >= 0) & (clips["method"] != CONDITIONAL)]
    for (k, cluster), group in unconditional.groupby(["k", "cluster"], sort=True):
        weight = float(group["cluster_weight"].iloc[0])
        valid_share = float(group["valid"].mean())
        rows.append({"k": int(k), "cluster": int(cluster), "weight": weight, "relative_weight": weight * k,
                     "n_clips": len(group), VALID_SHARE: valid_share, "invalid": valid_share < min_valid_share,
                     **group[list(METRICS)].mean().to_dict(),
                     "reasons": summarise_reasons(group.loc[~group["valid"], "invalid_reason"], len(group))})
    return pd.DataFrame(rows, columns=list(CLUSTER_COLUMNS))


def weight_vs_validity(clusters: pd.DataFrame) -> dict:
    """Do invalid clusters have low weight? Means of both groups and a rank correlation, pooled over K."""
    invalid = clusters["invalid"].astype(bool)
    relative = clusters["relative_weight"]
    spearman = relative.corr(clusters[VALID_SHARE], method="spearman") if len(clusters) > 2 else math.nan
    return {
        "n_clusters": len(clusters),
        "n_invalid": int(invalid.sum()),
        "mean_weight_invalid": clusters.loc[invalid, "weight"].mean(),
        "mean_weight_valid": clusters.loc[~invalid, "weight"].mean(),
        "mean_relative_weight_invalid": relative[invalid].mean(),
        "mean_relative_weight_valid": relative[~invalid].mean(),
        "share_invalid_below_uniform_weight": (relative[invalid] < 1.0).mean() if invalid.any() else math.nan,
        # positive: heavier clusters are valid more often
        "spearman_relative_weight_valid_share": spearman,
    }


def comparison_table(metrics: dict) -> pd.DataFrame:
    """The evaluate.json numbers as one long table: scope ('all' pooled over K, or 'k<K>'), conditioning,
    method, then ``<metric>_mean`` / ``_ci_low`` / ``_ci_high`` of every :data:`TABLE_METRICS`."""
    rows = []
    scopes = [("all", metrics["by_conditioning"])]
    scopes += [(name, entry["by_conditioning"]) for name, entry in metrics["per_k"].items()]
    for scope, by_cond in scopes:
        for conditioning, methods in by_cond.items():
            for method, entry in methods.items():
                row = {"scope": scope, "conditioning": conditioning, "method": method,
                       "n_clips": (entry.get(VALID_SHARE) or {}).get("n"),
                       VALID_SHARE: (entry.get(VALID_SHARE) or {}).get("mean")}
                for metric in TABLE_METRICS:
                    cell = entry.get(metric) or {}
                    for stat in ("mean", "ci_low", "ci_high"):
                        row[f"{metric}_{stat}"] = cell.get(stat)
                rows.append(row)
    return pd.DataFrame(rows).astype({f"{m}_{s}": float for m in TABLE_METRICS for s in ("mean", "ci_low", "ci_high")})


def vs_k_conditioning(clips: pd.DataFrame) -> str:
    """The conditioning the per-K plots show: ``real`` when sampled (the one with a reference), else the first."""
    present = tables.conditioning_order(clips["conditioning"])
    return REAL if REAL in present else present[0]


def metric_vs_k(clips: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per metric (and valid_share) a wide table: k, then the mean of each method on one conditioning
    (:func:`vs_k_conditioning`: means are never pooled over conditionings).

    Every method of ALL_METHODS gets a column, empty when it was not sampled: a DVC plot names its y
    columns in dvc.yaml and fails on a missing one.
    """
    per_k = summarise_methods(clips[clips["conditioning"] == vs_k_conditioning(clips)], ("k",))
    columns = method_order([*ALL_METHODS, *per_k["method"]])
    tables_out = {}
    for name in (*METRICS, VALID_SHARE):
        value = name if name == VALID_SHARE else f"{name}_mean"
        wide = per_k.pivot(index="k", columns="method", values=value).reindex(columns=columns).reset_index()
        wide.columns.name = None
        tables_out[name] = wide
    return tables_out


@dataclass(frozen=True)
class Evaluation:
    gmm: pd.DataFrame
    clips: pd.DataFrame
    clusters: pd.DataFrame
    comparison: pd.DataFrame
    recommended_k: int
    metrics: dict  # the DVC metrics document, JSON-safe
    paired: pd.DataFrame = None  # every paired test, with its scope


@dataclass(frozen=True)
class EvaluateSettings:
    min_valid_share: float = 0.5
    n_resamples: int = 2000
    alpha: float = 0.05
    kad_max_frames: int = 2000
    seed: int = 0


def evaluate(gmm: pd.DataFrame, clips: pd.DataFrame, min_valid_share: float | None = None, *,
             anchors: pd.DataFrame | None = None, real_frames: Mapping[int, np.ndarray] | None = None,
             settings: EvaluateSettings | None = None, selection: dict | None = None) -> Evaluation:
    """Every aggregate of one run. ``metrics``: ``by_conditioning`` (pooled over K, anchors beside the
    methods), ``per_k.<K>`` (mixture metrics and ``by_conditioning`` of that K), ``comparisons`` (paired
    tests on real contours), ``seed_experiment``, clusters and invalid clusters, and the recommended K
    (the choose_k sweep's when ``selection`` is given, else the lowest BIC)."""
    settings = settings or EvaluateSettings()
    if min_valid_share is not None:
        settings = EvaluateSettings(min_valid_share, settings.n_resamples, settings.alpha, settings.kad_max_frames,
                                    settings.seed)
    anchors = anchors if anchors is not None else clips.iloc[:0]
    boot = dict(n_resamples=settings.n_resamples, seed=settings.seed)
    clusters = cluster_table(clips, settings.min_valid_share)
    bic_k = recommend_k(gmm)
    cache: dict = {}

    def set_metrics(scope_clips: pd.DataFrame) -> dict:
        if real_frames is None or "folder" not in scope_clips:
            return {}
        return tables.set_distances(scope_clips, real_frames, max_frames=settings.kad_max_frames,
                                    seed=settings.seed, cache=cache)

    everything = pd.concat([clips, anchors], ignore_index=True)
    ks = sorted(int(k) for k in gmm["k"])
    paired = []

    def compare(scope: str, scope_clips: pd.DataFrame, scope_ks: list[int]) -> list[dict]:
        table = tables.paired_comparisons(tables.paired_units(scope_clips, anchors, scope_ks), settings.alpha)
        if not table.empty:
            paired.append(table.assign(scope=scope))
        return tables.comparison_records(table)

    per_k = {}
    for row in gmm.to_dict("records"):
        k = int(row["k"])
        mine = pd.concat([clips[clips["k"] == k], anchors], ignore_index=True)
        per_k[k_name(k)] = {**_k_metrics(row, clusters),
                            "by_conditioning": tables.by_conditioning(mine, set_metrics=set_metrics(mine), **boot),
                            "comparisons": {REAL: compare(k_name(k), clips[clips["k"] == k], [k])}}
    recommended = int(selection["recommended_k"]) if selection else bic_k
    metrics = {
        "recommended_k": recommended,
        "recommended_k_at_grid_edge": bool(selection["recommended_k_at_grid_edge"]) if selection else bic_k == max(ks),
        "recommended_by": "choose_k (held-out log-likelihood sweep)" if selection else "lowest BIC of the listed K",
        "bic_recommended_k": bic_k,
        "n_clips": len(clips),
        "by_conditioning": tables.by_conditioning(everything, set_metrics=set_metrics(everything), **boot),
        "comparisons": {REAL: compare("all", clips, ks)},
        "seed_experiment": tables.seed_experiment(clips, **boot),
        "per_k": per_k,
        "clusters": {k_name(k): {f"c{row['cluster']}": _cluster_metrics(row) for row in group.to_dict("records")}
                     for k, group in clusters.groupby("k", sort=True)},
        "invalid_clusters": weight_vs_validity(clusters),
    }
    metrics["recommended_k_listed"] = recommended in ks
    if selection:
        metrics["k_sweep"] = selection
    metrics = json_safe(metrics)
    return Evaluation(gmm, clips, clusters, comparison_table(metrics), recommended, metrics,
                      pd.concat(paired, ignore_index=True) if paired else pd.DataFrame())


def _k_metrics(gmm_row: dict, clusters: pd.DataFrame) -> dict:
    k = gmm_row["k"]
    mine = clusters[clusters["k"] == k]
    invalid = mine["invalid"].astype(bool)
    return {**{name: gmm_row.get(name, math.nan) for name in GMM_COLUMNS if name != "k"},
            "n_clusters": k, "n_invalid_clusters": int(invalid.sum()),
            "invalid_weight": float(mine.loc[invalid, "weight"].sum())}


def _cluster_metrics(row: dict) -> dict:
    return {"weight": row["weight"], VALID_SHARE: row[VALID_SHARE], "invalid": int(row["invalid"]),
            "hnr_db": row["hnr_db"], "f0_rpa": row["f0_rpa"], "timbre_consistency": row["timbre_consistency"]}


def json_safe(value):
    """Plain Python numbers with NaN/inf as None: valid JSON that ``dvc metrics show`` reads."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# ---- tables for people ----

def format_mean_ci(mean: float, low: float, high: float) -> str:
    if mean is None or not np.isfinite(mean):
        return "—"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:.3g}"
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def comparison_cells(rows: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(header, rows of text) for one (scope, conditioning) of :func:`comparison_table`, shared by
    Markdown and HTML; columns with no value in any row are left out."""
    shown = [m for m in TABLE_METRICS if rows[f"{m}_mean"].notna().any()]
    header = ["method", "clips", metric_label(VALID_SHARE), *map(metric_label, shown)]
    body = [[row["method"], "—" if pd.isna(row["n_clips"]) else str(int(row["n_clips"])),
             "—" if pd.isna(row[VALID_SHARE]) else f"{row[VALID_SHARE]:.0%}",
             *[format_mean_ci(row[f"{m}_mean"], row[f"{m}_ci_low"], row[f"{m}_ci_high"]) for m in shown]]
            for row in rows.to_dict("records")]
    return header, body


def scope_title(scope: str) -> str:
    return "All K (pooled over K)" if scope == "all" else f"K = {scope[1:]}"


def verdict_lines(paired: pd.DataFrame, scope: str = "all") -> list[str]:
    """The paired tests of one scope as sentences: 'temporal beats mean_z (median diff -0.4, p_holm 0.003)'."""
    if paired is None or paired.empty:
        return []
    rows = paired[paired["scope"] == scope]
    return [f"{r.verdict} on {r.metric} (median difference {r.median_diff:.3g} over {r.n} pairs, "
            f"Holm p = {r.p_holm:.2g})" for r in rows.itertuples()]


def comparison_markdown(table: pd.DataFrame, paired: pd.DataFrame | None = None) -> str:
    lines = ["# Sampling methods compared, per conditioning", "",
             "Mean [95 % bootstrap interval] over clips; ↑ higher is better, ↓ lower is better. `valid` is the "
             "share of clips passing sample@K's thresholds on hnr_db and f0_rpa. `resynthesis` (the encoder's z) "
             "and `mean_z` (the training z mean) are the anchors, decoded on the same contours.", ""]
    for (scope, conditioning), rows in table.groupby(["scope", "conditioning"], sort=False):
        header, body = comparison_cells(rows)
        lines += [f"## {scope_title(scope)} · conditioning `{conditioning}`", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
                  *["| " + " | ".join(cells) + " |" for cells in body], ""]
        if conditioning == REAL:
            lines += [f"- {line}" for line in verdict_lines(paired, scope)] + [""]
    return "\n".join(lines)


# ---- pictures ----

def _method_lines(ax, per_k: pd.DataFrame, column: str) -> None:
    for method in method_order(per_k["method"]):
        rows = per_k[per_k["method"] == method]
        ax.plot(rows["k"], rows[column], marker="o", lw=1.5, label=method, color=METHOD_COLORS.get(method))


def plot_metric_vs_k(clips: pd.DataFrame, path: Path) -> Path:
    """Small multiples: each metric's mean against K on one conditioning, one line per method."""
    conditioning = vs_k_conditioning(clips)
    per_k = summarise_methods(clips[clips["conditioning"] == conditioning], ("k",))
    names = (*METRICS, VALID_SHARE)
    fig, axes = plt.subplots(4, 3, figsize=(14, 13), sharex=True)
    for ax, name in zip(axes.flat, names):
        _method_lines(ax, per_k, name if name == VALID_SHARE else f"{name}_mean")
        ax.set_title(metric_label(name), fontsize=10)
        ax.set_xticks(sorted(per_k["k"].unique()))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) - 3:len(names)]:
        ax.set_xlabel("K (mixture components)")
    axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Generated-clip metrics against K (mean over clips, conditioning {conditioning})")
    return _save(fig, path)


def plot_model_selection(gmm: pd.DataFrame, recommended: int, path: Path) -> Path:
    """Information criteria and log-likelihoods against K, the recommended K marked."""
    gmm = gmm.sort_values("k")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, columns in ((left, ("bic", "aic")), (right, ("heldout_loglik", "train_loglik",
                                                         "heldout_conditional_loglik"))):
        for column in columns:
            if column in gmm:
                ax.plot(gmm["k"], gmm[column], marker="o", label=column)
        ax.axvline(recommended, color="0.4", ls="--", lw=1, label=f"recommended K = {recommended}")
        ax.set_xticks(list(gmm["k"]))
        ax.set_xlabel("K (mixture components)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_title("information criteria (lower is better)", fontsize=10)
    right.set_title("mean log-likelihood per frame (higher is better)", fontsize=10)
    return _save(fig, path)


def plot_weight_vs_validity(clusters: pd.DataFrame, path: Path, hnr_threshold: float | None = None) -> Path:
    """Per K: each cluster's weight against its mean hnr_db, invalid clusters as labelled red crosses."""
    ks = sorted(clusters["k"].unique())
    cols = min(4, max(1, len(ks)))
    rows = max(1, math.ceil(len(ks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    for ax, k in zip(axes.flat, ks):
        mine = clusters[clusters["k"] == k]
        bad = mine["invalid"].astype(bool)
        ax.scatter(mine.loc[~bad, "weight"], mine.loc[~bad, "hnr_db"], color="tab:green", label="valid")
        ax.scatter(mine.loc[bad, "weight"], mine.loc[bad, "hnr_db"], color="tab:red", marker="x", s=60,
                   label="invalid")
        for row in mine[bad].to_dict("records"):
            ax.annotate(f"c{row['cluster']}", (row["weight"], row["hnr_db"]), fontsize=8, color="tab:red",
                        xytext=(4, 4), textcoords="offset points")
        ax.axvline(1.0 / k, color="0.5", ls=":", lw=1, label="uniform 1/K")
        if hnr_threshold is not None:
            ax.axhline(hnr_threshold, color="tab:red", ls="--", lw=0.8, label="hnr_db threshold")
        ax.set_title(f"K = {k}", fontsize=10)
        ax.set_xlabel("cluster weight")
        ax.set_ylabel("mean hnr_db")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(ks):]:
        ax.axis("off")
    if ks:
        axes.flat[0].legend(fontsize=7)
    else:
        axes.flat[0].text(0.5, 0.5, "no per-cluster clips were sampled", ha="center", va="center")
    fig.suptitle("Cluster weight against harmonic-to-noise ratio")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---- writing ----

def write_plots_data(evaluation: Evaluation, folder: Path) -> list[Path]:
    """CSV files for ``dvc plots``: model selection, per-cluster table, one wide file per metric."""
    folder = Path(folder)
    written = [folder / MODEL_SELECTION_CSV, folder / CLUSTERS_CSV]
    columns = [c for c in GMM_COLUMNS if c in evaluation.gmm]
    evaluation.gmm[columns].sort_values("k").to_csv(written[0], index=False)
    evaluation.clusters.to_csv(written[1], index=False)
    (folder / VS_K_DIR).mkdir(parents=True, exist_ok=True)
    for name, table in metric_vs_k(evaluation.clips).items():
        written.append(folder / VS_K_DIR / f"{name}.csv")
        table.to_csv(written[-1], index=False)
    return written


def write_report_files(evaluation: Evaluation, folder: Path, hnr_threshold: float | None = None) -> list[Path]:
    """Comparison (CSV + Markdown), invalid clusters with reasons, and the three figures."""
    folder = Path(folder)
    evaluation.comparison.to_csv(folder / COMPARISON_CSV, index=False)
    paired = evaluation.paired if evaluation.paired is not None else pd.DataFrame()
    paired.to_csv(folder / PAIRED_TESTS_CSV, index=False)
    (folder / COMPARISON_MD).write_text(comparison_markdown(evaluation.comparison, paired))
    invalid = evaluation.clusters[evaluation.clusters["invalid"].astype(bool)]
    invalid[["k", "cluster", "weight", "relative_weight", VALID_SHARE, "n_clips", "reasons"]].to_csv(
        folder / INVALID_CLUSTERS_CSV, index=False)
    return [folder / COMPARISON_CSV, folder / PAIRED_TESTS_CSV, folder / COMPARISON_MD, folder / INVALID_CLUSTERS_CSV,
            plot_metric_vs_k(evaluation.clips, folder / METRIC_VS_K_PNG),
            plot_model_selection(evaluation.gmm, evaluation.recommended_k, folder / MODEL_SELECTION_PNG),
            plot_weight_vs_validity(evaluation.clusters, folder / WEIGHT_VS_VALIDITY_PNG, hnr_threshold)]
