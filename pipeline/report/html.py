"""One static HTML page over the whole run: model selection, method comparison, every clip.

The page is plain HTML + CSS from the standard library (no server, no JavaScript). Audio and
spectrograms are *linked*, relative to the page (``../samples/k4/clips/...``), not copied: the
clips are sample@K's DVC outs, the report must not write inside them, and a copy would store
hundreds of WAV files twice in the DVC cache. The page therefore works when opened from the
project checkout (or any copy that keeps ``reports/`` and ``samples/`` side by side).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path
from string import Template
from urllib.parse import quote

import pandas as pd

from pipeline.config import Params
from pipeline.evaluation.aggregate import (
    CLUSTERS_CSV,
    COMPARISON_CSV,
    METRIC_VS_K_PNG,
    MODEL_SELECTION_PNG,
    PAIRED_TESTS_CSV,
    WEIGHT_VS_VALIDITY_PNG,
    comparison_cells,
    load_anchors,
    load_clips,
    rendered_mixtures,
    scope_title,
    verdict_lines,
)
from pipeline.paths import CONDITIONINGS_FILE, Paths, k_name
from pipeline.vocab import CLIP_METRICS, CONDITIONAL, REAL, TEMPORAL_HOLD, TEMPORAL_METHODS, method_order, metric_label

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
$css
</style>
</head>
<body>
$body
</body>
</html>
""")

CSS = """body { font-family: system-ui, sans-serif; color: #222; max-width: 1500px; margin: 1.5rem auto;
  padding: 0 1rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .4rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.params td, table.params th { text-align: left; }
.figures img { max-width: 100%; border: 1px solid #eee; margin: .4rem 0; }
.recommended { color: #2e7d32; font-weight: 600; }
details.k { border: 1px solid #ccc; border-radius: 6px; margin: .6rem 0; padding: .3rem .8rem; }
details.k > summary { cursor: pointer; font-size: 1.05rem; padding: .2rem 0; }
.cluster { margin: .6rem 0; padding: .4rem; border: 1px solid #eee; border-radius: 6px; }
.cluster.invalid { border: 3px solid #c62828; background: #fff5f5; }
.cluster h4 { margin: .2rem 0 .4rem; }
.reason, .bad { color: #c62828; font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; }
figure.clip { width: 340px; margin: 0; padding: .4rem; border: 1px solid #ddd; border-radius: 6px;
  background: #fafafa; }
figure.clip.invalid { border-color: #e57373; }
figure.clip img, figure.clip audio { width: 100%; }
figure.clip table { width: 100%; font-size: .78rem; }"""


FIGURES = (("Model selection: information criteria and log-likelihood against K", MODEL_SELECTION_PNG),
           ("Generated-clip metrics against K, one line per sampling method", METRIC_VS_K_PNG),
           ("Cluster weight against harmonic-to-noise ratio; invalid clusters in red", WEIGHT_VS_VALIDITY_PNG))


class ReportInputsStale(RuntimeError):
    """evaluate's results do not cover the Ks the params list."""


@dataclass(frozen=True)
class Page:
    title: str
    params: dict[str, str]           # label -> value, shown in the header
    recommended_k: int
    per_k: dict                      # metrics/evaluate.json "per_k"
    weight_summary: dict             # metrics/evaluate.json "invalid_clusters"
    comparison: pd.DataFrame         # evaluation.comparison_table
    clusters: pd.DataFrame           # evaluation.cluster_table
    clips: pd.DataFrame              # evaluation.load_clips plus wav_href / png_href
    figures: list[tuple[str, str]]   # (caption, href)
    expand: str                      # which K sections start open: recommended | all | none
    anchors: pd.DataFrame = None     # the anchors stage's clips plus hrefs
    paired: pd.DataFrame = None      # evaluate's paired tests (paired_tests.csv)
    summary: dict = None             # metrics/evaluate.json
    fitted: dict = None              # the anchors' conditionings.json (loudness map, MIDI envelope)


def href(target: Path, page_dir: Path) -> str:
    """A URL to ``target`` relative to the page's folder, so the page works straight from disk."""
    return quote(Path(os.path.relpath(Path(target).resolve(), Path(page_dir).resolve())).as_posix())


def with_hrefs(clips: pd.DataFrame, samples_dir: Path, page_dir: Path) -> pd.DataFrame:
    """``clips`` plus links to each clip's WAV and spectrogram (paths relative to the clip's ``folder``,
    else samples/k<K>); a clip without a spectrogram gets an empty ``png_href``."""
    folders = (clips["folder"] if "folder" in clips else
               [str(Path(samples_dir) / k_name(k)) for k in clips["k"]])

    def link(folder: str, relative: str) -> str:
        return href(Path(folder) / relative, page_dir) if relative else ""

    return clips.assign(wav_href=[link(f, p) for f, p in zip(folders, clips["wav"])],
                        png_href=[link(f, p) for f, p in zip(folders, clips["png"])])


def params_summary(params: Params) -> dict[str, str]:
    """The params a reader needs to interpret the page."""
    sample = params.sample
    methods = [*sample.methods, *([TEMPORAL_HOLD] if sample.temporal_hold and "temporal" in sample.methods else [])]
    return {
        "seed": str(params.seed),
        "audio": params.prepare.audio_dir,
        "training preset": f"{params.train.preset} ({params.train.resolved().steps} steps)",
        "K (gmm.n_components)": ", ".join(map(str, sorted(params.gmm.n_components))),
        "covariance": params.gmm.covariance_type,
        "methods": ", ".join(methods),
        "conditionings": ", ".join(sample.conditionings),
        "real contours": f"{sample.n_real} held-out examples x {sample.n_draws} draws per method",
        "rho": "estimated per cluster" if sample.rho is None else f"{sample.rho:g}",
        "clip valid when": f"hnr_db ≥ {sample.min_hnr_db:g} dB and f0_rpa ≥ {sample.min_f0_rpa:g}",
        "cluster valid when": f"≥ {params.evaluate.min_valid_share:.0%} of its clips are valid",
    }


def render_page(page: Page) -> str:
    body = "\n".join([_header(page), _seed_experiment(page), _figures(page.figures),
                      _comparison(page.comparison, page.paired), _anchors(page),
                      _invalid_clusters(page.clusters, page.clips), _clips(page)])
    return PAGE.substitute(title=escape(page.title), css=CSS, body=body)


# ---- sections ----

def _header(page: Page) -> str:
    rows = "".join(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>" for label, value in page.params.items())
    return (f"<header>\n<h1>{escape(page.title)}</h1>\n"
            f"<p class=\"recommended\">{escape(_recommended_sentence(page))}</p>\n"
            f"<p>{escape(_weight_sentence(page.weight_summary))}</p>\n"
            f"<table class=\"params\">{rows}</table>\n"
            "<p><small>Audio and spectrograms are linked from the sample stage's folder, not copied: open this "
            "page inside the project folder, or in a copy that keeps that folder beside <code>reports/</code>."
            "</small></p>\n"
            "</header>")


def _recommended_sentence(page: Page) -> str:
    summary = page.summary or {}
    text = f"Recommended K = {page.recommended_k} ({summary.get('recommended_by', 'lowest BIC of the listed K')})"
    if summary.get("recommended_k_at_grid_edge"):
        text += "; it is at the edge of the K tried, so a larger K might do better"
    sweep = summary.get("k_sweep") or {}
    if not summary.get("recommended_k_rendered", summary.get("recommended_k_listed", True)):
        text += (f"; K = {page.recommended_k} is not among the rendered K, so it has no section below: rerun "
                 "fit_gmm_recommended and sample_recommended, or add it to gmm.n_components")
    elif not summary.get("recommended_k_listed", True):
        text += (f"; K = {page.recommended_k} is not among the listed K (gmm.n_components): its own stages "
                 "(fit_gmm_recommended, sample_recommended) rendered it")
    if sweep.get("ks"):
        text += "; sweep: " + ", ".join(f"K={k}: {v:.3f}" for k, v in zip(sweep["ks"], sweep["heldout_loglik"]))
    bic = summary.get("bic_recommended_k")
    if bic is not None and bic != page.recommended_k:
        text += f"; the lowest BIC among the listed K is at K = {bic}"
    return text + "."


def _seed_experiment(page: Page) -> str:
    """The seed report's experiment: direct vs per-cluster at constant pitch and loudness, per seed conditioning."""
    experiment = (page.summary or {}).get("seed_experiment") or {}
    if not experiment:
        return ""
    fitted = (page.fitted or {}).get("seed_report_scale") or {}
    parts = ["<section id=\"seed-experiment\">\n<h2>The seed report's experiment</h2>",
             "<p>Constant pitch (A3) and loudness; direct sampling against per-cluster sampling (inverse_transform, "
             "temporal, temporal_hold pooled over K), judged by hnr_db and spectral_flatness.</p>"]
    if fitted:
        parts.append(f"<p><code>seed</code> reads the report's loudness 0.39189076 on ddsp 3.x's 80 dB scale "
                     f"(-48.6 dB); <code>seed_report_scale</code> reads it on ddsp 1.x's 120 dB scale "
                     f"({_num(fitted.get('report_loudness_db_v1'))} dB) mapped to 3.x by a {escape(fitted['method'])} "
                     f"fit on {fitted['n_frames']} frames of this corpus: {_num(fitted.get('loudness_db_v3'))} dB.</p>")
    rows = []
    for conditioning, entry in experiment.items():
        for group in ("direct", "per_cluster"):
            cell = entry.get(group, {})
            rows.append([conditioning, group, _share(cell.get("valid_share")), _ci_text(cell.get("hnr_db")),
                         _ci_text(cell.get("spectral_flatness"))])
        rows.append([conditioning, "direct noisier?", "", _seed_verdict(entry), ""])
    parts.append(_table(["conditioning", "sampling", "valid clips", "hnr_db ↑", "spectral_flatness ↓"], rows))
    return "\n".join(parts) + "\n</section>"


def _seed_verdict(entry: dict) -> str:
    """The seed report found direct sampling noisier: lower hnr_db and flatter spectra, both."""
    lower, flatter = entry.get("direct_lower_hnr"), entry.get("direct_flatter")
    if lower and flatter:
        return "yes, as in the seed report"
    if lower:
        return "partly: direct's hnr_db is lower (intervals apart), its spectral_flatness is not higher"
    if flatter:
        return "partly: direct's spectral_flatness is higher, its hnr_db is not lower (intervals overlap)"
    return "no: these numbers disagree with the seed report"


def _share(value) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.0%}"


def _ci_text(cell) -> str:
    if not cell or cell.get("mean") is None:
        return "—"
    if cell.get("ci_low") is None or cell.get("ci_high") is None:
        return _num(cell["mean"])
    return f"{_num(cell['mean'])} [{_num(cell['ci_low'])}, {_num(cell['ci_high'])}]"


def _weight_sentence(summary: dict) -> str:
    n_invalid, n_clusters = summary["n_invalid"], summary["n_clusters"]
    sentence = f"{n_invalid} of {n_clusters} clusters are invalid."
    if n_invalid and n_invalid < n_clusters:
        sentence += (f" Mean weight relative to uniform (weight × K): {_num(summary['mean_relative_weight_invalid'])}"
                     f" for invalid vs {_num(summary['mean_relative_weight_valid'])} for valid clusters")
        sentence += (f"; Spearman correlation of relative weight with valid share "
                     f"{_num(summary['spearman_relative_weight_valid_share'])}.")
    return sentence


def _figures(figures: list[tuple[str, str]]) -> str:
    items = "".join(f"<figure><img src=\"{escape(link)}\" alt=\"{escape(caption)}\">"
                    f"<figcaption>{escape(caption)}</figcaption></figure>\n" for caption, link in figures)
    return ("<section class=\"figures\" id=\"model-selection\">\n"
            f"<h2>Model selection and metrics against K</h2>\n{items}</section>")


def _table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells) + "</tr>\n" for cells in body)
    return f"<table>\n<tr>{head}</tr>\n{rows}</table>"


def _comparison(table: pd.DataFrame, paired: pd.DataFrame | None = None) -> str:
    parts = ["<section id=\"comparison\">\n<h2>Sampling methods compared, per conditioning</h2>",
             "<p>Mean [95 % bootstrap interval] over clips; ↑ higher is better, ↓ lower is better. "
             "<code>resynthesis</code> (the encoder's z of the real example) and <code>mean_z</code> (the training "
             "z mean) are the anchors, on the same contours. On <code>real</code>, "
             "spectral_distance_to_real_best is the best of a method's draws per example; kad_to_real and "
             "frechet_to_real compare a method's clips as a set with the real examples (their interval is the "
             "jackknife's, leaving out one example at a time). A verdict says "
             "\"A beats B\" only when the Holm-corrected paired Wilcoxon test says so.</p>"]
    for (scope, conditioning), rows in table.groupby(["scope", "conditioning"], sort=False):
        rendered = _table(*comparison_cells(rows))
        if conditioning == REAL:
            lines = verdict_lines(paired, scope)
            if lines:
                rendered += "\n<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"
        title = f"{scope_title(scope)} · conditioning {conditioning}"
        if scope == "all":
            parts.append(f"<h3>{escape(title)}</h3>\n{rendered}")
        else:
            parts.append(f"<details><summary>{escape(title)}</summary>\n{rendered}</details>")
    return "\n".join(parts) + "\n</section>"


def _anchors(page: Page) -> str:
    if page.anchors is None or page.anchors.empty:
        return ""
    shown = page.anchors[page.anchors["png_href"] != ""]
    cards = "\n".join(_card(clip) for clip in shown.to_dict("records"))
    return ("<section id=\"anchors\">\n<h2>Anchors (the same contours, z not sampled)</h2>\n"
            f"<div class=\"cards\">\n{cards}\n</div>\n</section>")


def _anchor(k: int, method: str, cluster: int) -> str:
    return escape(f"k{k}-{method}" if cluster < 0 else f"k{k}-{method}-c{cluster}")


def _invalid_clusters(clusters: pd.DataFrame, clips: pd.DataFrame) -> str:
    invalid = clusters[clusters["invalid"].astype(bool)]
    if invalid.empty:
        return "<section id=\"invalid\">\n<h2>Invalid clusters</h2>\n<p>None.</p>\n</section>"
    # link to the cluster's block under the first method that sampled it
    first_method = {(k, c): method_order(group["method"])[0]
                    for (k, c), group in clips[clips["cluster"] >= 0].groupby(["k", "cluster"])}
    rows = "".join(
        f"<tr><td><a href=\"#{_anchor(row['k'], first_method[row['k'], row['cluster']], row['cluster'])}\">"
        f"K={row['k']} cluster {row['cluster']}</a></td>"
        f"<td>{_num(row['weight'])}</td><td>{_num(row['relative_weight'])}</td><td>{row['valid_share']:.0%}</td>"
        f"<td class=\"reason\">{escape(str(row['reasons']))}</td></tr>\n" for row in invalid.to_dict("records"))
    return ("<section id=\"invalid\">\n<h2>Invalid clusters</h2>\n<table>\n<tr><th>cluster</th><th>weight</th>"
            f"<th>weight × K</th><th>valid clips</th><th>reasons</th></tr>\n{rows}</table>\n</section>")


def _clips(page: Page) -> str:
    sections = []
    for k, clips in page.clips.groupby("k", sort=True):
        is_open = page.expand == "all" or (page.expand == "recommended" and k == page.recommended_k)
        clusters = page.clusters[page.clusters["k"] == k].set_index("cluster")
        methods = "\n".join(_method(k, method, clips[clips["method"] == method], clusters)
                            for method in method_order(clips["method"]))
        sections.append(f"<details class=\"k\" id=\"k{k}\"{' open' if is_open else ''}>\n"
                        f"<summary>{_k_summary(k, page)}</summary>\n{methods}\n</details>")
    return "<section id=\"clips\">\n<h2>Clips per K, method and cluster</h2>\n" + "\n".join(sections) + "\n</section>"


def _k_summary(k: int, page: Page) -> str:
    stats = page.per_k.get(k_name(k), {})
    parts = [f"<b>K = {k}</b>"]
    if k == page.recommended_k:
        parts.append("<span class=\"recommended\">★ recommended</span>")
    parts += [f"BIC {_num(stats.get('bic'))}", f"held-out LL {_num(stats.get('heldout_loglik'))}",
              f"held-out LL given f0 and loudness {_num(stats.get('heldout_conditional_loglik'))}"]
    n_invalid = stats.get("n_invalid_clusters", 0)
    parts.append(f"<span class=\"bad\">{n_invalid} invalid cluster(s)</span>" if n_invalid else "no invalid cluster")
    return " · ".join(parts)


def _method(k: int, method: str, clips: pd.DataFrame, clusters: pd.DataFrame) -> str:
    blocks = [_cluster_block(k, method, int(cluster), group, clusters)
              for cluster, group in clips.groupby("cluster", sort=True)]
    return f"<section class=\"method\">\n<h3>{escape(method)}</h3>\n" + "\n".join(blocks) + "\n</section>"


def _cluster_block(k: int, method: str, cluster: int, clips: pd.DataFrame, clusters: pd.DataFrame) -> str:
    # cards for the clips with a spectrogram: every non-real clip, real ones of the first examples
    cards = "\n".join(_card(clip) for clip in clips.to_dict("records") if clip["png_href"])
    if cluster < 0:
        title, invalid, note = "all clusters (each frame picks its own component)", False, ""
    elif method == CONDITIONAL or cluster not in clusters.index:
        title, invalid, note = f"cluster {cluster} of the joint mixture over (z, f0, loudness)", False, ""
    else:
        row = clusters.loc[cluster]
        invalid = bool(row["invalid"])
        title = (f"cluster {cluster} · weight {_num(row['weight'])} ({_num(row['relative_weight'])} × uniform) · "
                 f"{row['valid_share']:.0%} of its clips valid")
        note = f"<p class=\"reason\">Invalid cluster: {escape(str(row['reasons']))}</p>\n" if invalid else ""
    return (f"<div class=\"cluster{' invalid' if invalid else ''}\" id=\"{_anchor(k, method, cluster)}\">\n"
            f"<h4>{escape(title)}{' — INVALID' if invalid else ''}</h4>\n{note}"
            f"<div class=\"cards\">\n{cards}\n</div>\n</div>")


def _card(clip: dict) -> str:
    rows = "".join(f"<tr><th>{escape(metric_label(m))}</th><td>{_num(clip[m])}</td></tr>" for m in CLIP_METRICS)
    status = ("<span>valid</span>" if clip["valid"]
              else f"<span class=\"bad\">invalid: {escape(clip['invalid_reason'] or 'no reason given')}</span>")
    rho = f" · ρ = {_num(clip.get('rho'))}" if clip["method"] in TEMPORAL_METHODS else ""
    image = (f"<img src=\"{escape(clip['png_href'])}\" alt=\"spectrogram of {escape(clip['clip_id'])}\" "
             "loading=\"lazy\">\n") if clip["png_href"] else ""
    label = clip["conditioning"] if clip.get("example", -1) < 0 else f"{clip['conditioning']} e{clip['example']}"
    return (f"<figure class=\"clip{'' if clip['valid'] else ' invalid'}\">\n{image}"
            f"<audio controls preload=\"none\" src=\"{escape(clip['wav_href'])}\"></audio>\n"
            f"<figcaption><b>{escape(str(label))}</b> {escape(str(clip['method']))}{rho} · {status}\n"
            f"<table>{rows}</table></figcaption>\n</figure>")


def _num(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.3g}"


def build_page(params: Params, paths: Paths) -> Page:
    """The page over evaluate's outputs and the clip manifests of the rendered Ks (``gmm.n_components`` and
    the recommended K)."""
    mixtures = rendered_mixtures(paths.mixture_metrics_dir, params.gmm.n_components)
    ks = list(mixtures)
    summary = json.loads(paths.evaluate_metrics.read_text())
    evaluated = sorted(int(key[1:]) for key in summary["per_k"])
    if evaluated != ks:
        raise ReportInputsStale(f"{paths.evaluate_metrics} covers K={evaluated} but the rendered K are {ks} "
                                f"(gmm.n_components {sorted(params.gmm.n_components)} and the recommended K); "
                                "run evaluate first")
    page_dir = paths.report_page.parent
    paired_path = paths.evaluate_report / PAIRED_TESTS_CSV
    paired = pd.read_csv(paired_path) if paired_path.is_file() and paired_path.stat().st_size > 1 else pd.DataFrame()
    fitted_path = paths.anchors_dir / CONDITIONINGS_FILE
    return Page(title=params.report.title, params=params_summary(params), recommended_k=summary["recommended_k"],
                per_k=summary["per_k"], weight_summary=summary["invalid_clusters"],
                comparison=pd.read_csv(paths.evaluate_report / COMPARISON_CSV),
                clusters=pd.read_csv(paths.evaluate_plots / CLUSTERS_CSV),
                clips=with_hrefs(load_clips(paths.samples_root, mixtures), paths.samples_root, page_dir),
                figures=[(caption, href(paths.evaluate_report / name, page_dir)) for caption, name in FIGURES],
                expand=params.report.expand,
                anchors=with_hrefs(load_anchors(paths.anchors_dir), paths.samples_root, page_dir),
                paired=paired, summary=summary,
                fitted=json.loads(fitted_path.read_text()) if fitted_path.is_file() else {})
