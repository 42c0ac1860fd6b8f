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
    WEIGHT_VS_VALIDITY_PNG,
    comparison_cells,
    load_clips,
    scope_title,
)
from pipeline.paths import Paths, k_name
from pipeline.vocab import CLIP_METRICS, TEMPORAL_HOLD, TEMPORAL_METHODS, method_order, metric_label

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


def href(target: Path, page_dir: Path) -> str:
    """A URL to ``target`` relative to the page's folder, so the page works straight from disk."""
    return quote(Path(os.path.relpath(Path(target).resolve(), Path(page_dir).resolve())).as_posix())


def with_hrefs(clips: pd.DataFrame, samples_dir: Path, page_dir: Path) -> pd.DataFrame:
    """``clips`` plus links to each clip's WAV and spectrogram (their paths are relative to samples/k<K>)."""
    def link(k: int, relative: str) -> str:
        return href(Path(samples_dir) / k_name(k) / relative, page_dir)

    return clips.assign(wav_href=[link(k, p) for k, p in zip(clips["k"], clips["wav"])],
                        png_href=[link(k, p) for k, p in zip(clips["k"], clips["png"])])


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
        "rho": "estimated per cluster" if sample.rho is None else f"{sample.rho:g}",
        "clip valid when": f"hnr_db ≥ {sample.min_hnr_db:g} dB and f0_rpa ≥ {sample.min_f0_rpa:g}",
        "cluster valid when": f"≥ {params.evaluate.min_valid_share:.0%} of its clips are valid",
    }


def render_page(page: Page) -> str:
    body = "\n".join([_header(page), _figures(page.figures), _comparison(page.comparison),
                      _invalid_clusters(page.clusters, page.clips), _clips(page)])
    return PAGE.substitute(title=escape(page.title), css=CSS, body=body)


# ---- sections ----

def _header(page: Page) -> str:
    rows = "".join(f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>" for label, value in page.params.items())
    return (f"<header>\n<h1>{escape(page.title)}</h1>\n"
            f"<p class=\"recommended\">Recommended K = {page.recommended_k} (lowest BIC; a tie goes to the higher "
            f"held-out log-likelihood)</p>\n<p>{escape(_weight_sentence(page.weight_summary))}</p>\n"
            f"<table class=\"params\">{rows}</table>\n"
            "<p><small>Audio and spectrograms are linked from the sample stage's folder, not copied: open this "
            "page inside the project folder, or in a copy that keeps that folder beside <code>reports/</code>."
            "</small></p>\n"
            "</header>")


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


def _comparison(table: pd.DataFrame) -> str:
    parts = ["<section id=\"comparison\">\n<h2>Sampling methods compared</h2>",
             "<p>Mean ± std over generated clips; ↑ higher is better, ↓ lower is better.</p>"]
    for scope, rows in table.groupby("scope", sort=False):
        rendered = _table(*comparison_cells(rows))
        if scope == "all":
            parts.append(f"<h3>{escape(scope_title(scope))}</h3>\n{rendered}")
        else:
            parts.append(f"<details><summary>{escape(scope_title(scope))}</summary>\n{rendered}</details>")
    return "\n".join(parts) + "\n</section>"


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
    parts += [f"BIC {_num(stats.get('bic'))}", f"held-out LL {_num(stats.get('heldout_loglik'))}"]
    n_invalid = stats.get("n_invalid_clusters", 0)
    parts.append(f"<span class=\"bad\">{n_invalid} invalid cluster(s)</span>" if n_invalid else "no invalid cluster")
    return " · ".join(parts)


def _method(k: int, method: str, clips: pd.DataFrame, clusters: pd.DataFrame) -> str:
    blocks = [_cluster_block(k, method, int(cluster), group, clusters)
              for cluster, group in clips.groupby("cluster", sort=True)]
    return f"<section class=\"method\">\n<h3>{escape(method)}</h3>\n" + "\n".join(blocks) + "\n</section>"


def _cluster_block(k: int, method: str, cluster: int, clips: pd.DataFrame, clusters: pd.DataFrame) -> str:
    cards = "\n".join(_card(clip) for clip in clips.to_dict("records"))
    if cluster < 0:
        title, invalid, note = "all clusters (each frame picks its own component)", False, ""
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
    return (f"<figure class=\"clip{'' if clip['valid'] else ' invalid'}\">\n"
            f"<img src=\"{escape(clip['png_href'])}\" alt=\"spectrogram of {escape(clip['clip_id'])}\" "
            "loading=\"lazy\">\n"
            f"<audio controls preload=\"none\" src=\"{escape(clip['wav_href'])}\"></audio>\n"
            f"<figcaption><b>{escape(str(clip['conditioning']))}</b>{rho} · {status}\n"
            f"<table>{rows}</table></figcaption>\n</figure>")


def _num(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.3g}"


def build_page(params: Params, paths: Paths) -> Page:
    """The page over evaluate's outputs and the clip manifests of the Ks in ``gmm.n_components``."""
    ks = sorted(params.gmm.n_components)
    summary = json.loads(paths.evaluate_metrics.read_text())
    evaluated = sorted(int(key[1:]) for key in summary["per_k"])
    if evaluated != ks:
        raise ReportInputsStale(f"{paths.evaluate_metrics} covers K={evaluated} but gmm.n_components is {ks}; "
                                "run evaluate first")
    page_dir = paths.report_page.parent
    return Page(title=params.report.title, params=params_summary(params), recommended_k=summary["recommended_k"],
                per_k=summary["per_k"], weight_summary=summary["invalid_clusters"],
                comparison=pd.read_csv(paths.evaluate_report / COMPARISON_CSV),
                clusters=pd.read_csv(paths.evaluate_plots / CLUSTERS_CSV),
                clips=with_hrefs(load_clips(paths.samples_root, ks), paths.samples_root, page_dir),
                figures=[(caption, href(paths.evaluate_report / name, page_dir)) for caption, name in FIGURES],
                expand=params.report.expand)
