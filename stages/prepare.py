"""DVC stage ``prepare``: audio folder -> ddsp TFRecord shards, with a rejection report.

Run as ``python -m stages.prepare``. Code: :mod:`pipeline.prepare` (with :mod:`pipeline.audio` and
:mod:`pipeline.dataset`). Outs: ``prepare.out_dir`` (shards, spec.json, report.json) and
``reports/prepare`` (example spectrograms); metrics: ``metrics/prepare.json``.
"""
from __future__ import annotations

import sys

from pipeline.config import load_params, project_root
from pipeline.paths import PREPARE_REPORT, Paths
from pipeline.prepare.beam import PrepareFailed, describe, run_prepare
from pipeline.prepare.figures import plot_examples
from pipeline.publish import write_json_atomic
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    cfg = params.prepare
    try:
        report = run_prepare(cfg, paths.audio_dir, paths.prepared_dir, params.seed)
    except (PrepareFailed, FileNotFoundError) as err:
        sys.exit(f"prepare failed: {err}")
    stats = report["stats"]
    write_json_atomic(paths.prepare_metrics, stats)
    plots = plot_examples(paths.prepared_dir, paths.prepare_plots, cfg.n_plot_examples, cfg.sample_rate,
                          cfg.frame_rate)
    for decision in report["decisions"]:  # every file found, used or rejected, with its reason
        print(describe(decision), file=sys.stderr)
    print(f"prepare: {stats['examples_train']} train / {stats['examples_eval']} eval examples from "
          f"{stats['files_used']} files ({stats['files_rejected']} rejected) -> {paths.prepared_dir}")
    with stage_run("prepare", paths.root, params.tracking) as run:
        run.log_params({"seed": params.seed, "prepare": cfg.model_dump()})
        run.log_metrics(stats)
        run.log_artifact(paths.prepared_dir / PREPARE_REPORT)
        for plot in plots:
            run.log_artifact(plot, "spectrograms")


if __name__ == "__main__":
    main()
