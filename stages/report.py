"""DVC stage ``report``: one static HTML page, ``reports/index.html``, over evaluate's results and every clip.

Run as ``python -m stages.report``. Reads evaluate's outs (``metrics/evaluate.json``,
``metrics/evaluate/clusters.csv``, ``reports/evaluate/``) and the clip manifests of the Ks in
``gmm.n_components``; links (does not copy) the clips' WAV and PNG files under ``sample.out_dir``.
"""
from __future__ import annotations

import json
import os
import sys

import pandas as pd

from pipeline.config import load_params, project_root
from pipeline.evaluation import (CLUSTERS_CSV, COMPARISON_CSV, METRIC_VS_K_PNG, MODEL_SELECTION_PNG,
                                 WEIGHT_VS_VALIDITY_PNG, load_clips)
from pipeline.report import Page, href, params_summary, render_page, with_hrefs
from pipeline.tracking import stage_run
from stages.evaluate import METRICS_FILE, PLOTS_DIR, REPORT_DIR

PAGE_FILE = "reports/index.html"
FIGURES = (("Model selection: information criteria and log-likelihood against K", MODEL_SELECTION_PNG),
           ("Generated-clip metrics against K, one line per sampling method", METRIC_VS_K_PNG),
           ("Cluster weight against harmonic-to-noise ratio; invalid clusters in red", WEIGHT_VS_VALIDITY_PNG))


def main() -> None:
    params = load_params()
    root = project_root()
    ks = sorted(params.gmm.n_components)
    summary = json.loads((root / METRICS_FILE).read_text())
    evaluated = sorted(int(key[1:]) for key in summary["per_k"])
    if evaluated != ks:
        sys.exit(f"report: {METRICS_FILE} covers K={evaluated} but gmm.n_components is {ks}; run evaluate first")
    page_path = root / PAGE_FILE
    samples = root / params.sample.out_dir
    page = Page(title=params.report.title, params=params_summary(params), recommended_k=summary["recommended_k"],
                per_k=summary["per_k"], weight_summary=summary["invalid_clusters"],
                comparison=pd.read_csv(root / REPORT_DIR / COMPARISON_CSV),
                clusters=pd.read_csv(root / PLOTS_DIR / CLUSTERS_CSV),
                clips=with_hrefs(load_clips(samples, ks), samples, page_path.parent),
                figures=[(caption, href(root / REPORT_DIR / name, page_path.parent)) for caption, name in FIGURES],
                expand=params.report.expand)
    partial = page_path.with_name(page_path.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_text(render_page(page), encoding="utf-8")
    os.replace(partial, page_path)  # a crash never leaves a half-written page that looks complete
    print(f"report: {len(page.clips)} clips over K={ks} -> {page_path}")
    with stage_run("report", root, params.tracking) as run:
        run.log_params({"report": params.report.model_dump(), "ks": ks})
        run.log_metrics({"recommended_k": page.recommended_k, "n_clips": len(page.clips)})
        # the page and everything it links, at the same relative places as on disk, so the page
        # opened from the artifact store shows its figures and plays its clips
        run.log_artifact(page_path, page_path.parent.relative_to(root).as_posix())
        for folder in (root / REPORT_DIR, *(samples / f"k{k}" / "clips" for k in ks)):
            run.log_artifact(folder, folder.relative_to(root).as_posix())


if __name__ == "__main__":
    main()
