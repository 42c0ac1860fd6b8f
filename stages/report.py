"""DVC stage ``report``: one static HTML page, ``reports/index.html``, over evaluate's results and every clip.

Run as ``python -m stages.report``. Code: :mod:`pipeline.report`. Reads evaluate's outs
(``metrics/evaluate.json``, ``metrics/evaluate/clusters.csv``, ``reports/evaluate/``) and the clip
manifests of the rendered Ks (``gmm.n_components`` and the recommended K); links (does not copy) the clips' WAV and PNG files
under ``sample.out_dir``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pipeline.config import load_params, project_root
from pipeline.paths import CLIP_DIR, Paths
from pipeline.publish import write_text_atomic
from pipeline.report.html import ReportInputsStale, build_page, render_page
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    try:
        page = build_page(params, paths)
    except ReportInputsStale as err:
        sys.exit(f"report: {err}")
    write_text_atomic(paths.report_page, render_page(page))
    ks = sorted({int(k) for k in page.clips["k"]})
    print(f"report: {len(page.clips)} clips over K={ks} -> {paths.report_page}")
    with stage_run("report", paths.root, params.tracking) as run:
        run.log_params({"report": params.report.model_dump(), "ks": ks})
        run.log_metrics({"recommended_k": page.recommended_k, "n_clips": len(page.clips)})
        # the page and everything it links, at the same relative places as on disk, so the page
        # opened from the artifact store shows its figures and plays its clips
        run.log_artifact(paths.report_page, paths.report_page.parent.relative_to(paths.root).as_posix())
        for folder in (paths.evaluate_report, paths.anchors_dir / CLIP_DIR,
                       *sorted({Path(folder) / CLIP_DIR for folder in page.clips["folder"]})):
            run.log_artifact(folder, folder.relative_to(paths.root).as_posix())


if __name__ == "__main__":
    main()
