"""DVC stage ``prepare``: audio folder -> ddsp TFRecord shards, with a rejection report.

Run as ``python -m stages.prepare``. Outs: ``prepare.out_dir`` (shards, spec.json, report.json) and
``reports/prepare`` (example spectrograms); metrics: ``metrics/prepare.json``.
"""
from __future__ import annotations

import sys

from pipeline.config import load_params, project_root
from pipeline.examples import iter_examples
from pipeline.fsutil import staged_dir, write_json_atomic
from pipeline.plots import plot_example
from pipeline.prepare import REPORT_FILE, PrepareFailed, describe, run_prepare
from pipeline.tracking import stage_run

METRICS_FILE = "metrics/prepare.json"
PLOTS_DIR = "reports/prepare"


def plot_examples(prepared_dir, plots_dir, n_examples: int, sample_rate: int, frame_rate: int) -> list:
    paths = []
    with staged_dir(plots_dir) as staging:
        for i, ex in enumerate(iter_examples(prepared_dir, "eval", limit=n_examples)):
            title = f"{ex['source']} @ {ex['offset_secs']:.1f} s (eval)"
            paths.append(plot_example(staging / f"example_{i}.png", ex["audio"], sample_rate, ex["f0_hz"],
                                      ex["f0_confidence"], ex["loudness_db"], frame_rate, title).name)
    return [plots_dir / name for name in paths]


def main() -> None:
    params = load_params()
    root = project_root()
    cfg = params.prepare
    out_dir = root / cfg.out_dir
    try:
        report = run_prepare(cfg, root / cfg.audio_dir, out_dir, params.seed)
    except (PrepareFailed, FileNotFoundError) as err:
        sys.exit(f"prepare failed: {err}")
    stats = report["stats"]
    write_json_atomic(root / METRICS_FILE, stats)
    plots = plot_examples(out_dir, root / PLOTS_DIR, cfg.n_plot_examples, cfg.sample_rate, cfg.frame_rate)
    for decision in report["decisions"]:  # every file found, used or rejected, with its reason
        print(describe(decision), file=sys.stderr)
    print(f"prepare: {stats['examples_train']} train / {stats['examples_eval']} eval examples from "
          f"{stats['files_used']} files ({stats['files_rejected']} rejected) -> {out_dir}")
    with stage_run("prepare", root, params.tracking) as run:
        run.log_params({"seed": params.seed, "prepare": cfg.model_dump()})
        run.log_metrics(stats)
        run.log_artifact(out_dir / REPORT_FILE)
        for plot in plots:
            run.log_artifact(plot, "spectrograms")


if __name__ == "__main__":
    main()
