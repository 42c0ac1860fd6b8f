"""DVC stage ``evaluate``: per-clip metrics of every K -> per method, cluster and K; invalid clusters.

Run as ``python -m stages.evaluate``. Reads ``gmm.metrics_dir/k<K>.json`` and
``sample.out_dir/k<K>/clips.csv`` for the Ks in ``gmm.n_components`` only. Metrics:
``metrics/evaluate.json``; plots data: ``metrics/evaluate/`` (CSV); outs: ``reports/evaluate/``
(comparison.csv/.md, invalid_clusters.csv, figures).
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.evaluation import evaluate, load_clips, load_gmm_table, write_plots_data, write_report_files
from pipeline.fsutil import staged_dir, write_json_atomic
from pipeline.tracking import stage_run

METRICS_FILE = "metrics/evaluate.json"
PLOTS_DIR = "metrics/evaluate"
REPORT_DIR = "reports/evaluate"


def main() -> None:
    params = load_params()
    root = project_root()
    ks = sorted(params.gmm.n_components)
    gmm = load_gmm_table(root / params.gmm.metrics_dir, ks)
    clips = load_clips(root / params.sample.out_dir, ks)
    result = evaluate(gmm, clips, params.evaluate.min_valid_share)
    with staged_dir(root / PLOTS_DIR) as staging:
        write_plots_data(result, staging)
    with staged_dir(root / REPORT_DIR) as staging:
        write_report_files(result, staging, hnr_threshold=params.sample.min_hnr_db)
    write_json_atomic(root / METRICS_FILE, result.metrics)
    summary = result.metrics["invalid_clusters"]
    print(f"evaluate: {len(clips)} clips over K={ks}; recommended K={result.recommended_k}; "
          f"{summary['n_invalid']} of {summary['n_clusters']} clusters invalid -> {root / REPORT_DIR}")
    with stage_run("evaluate", root, params.tracking) as run:
        run.log_params({"seed": params.seed, "ks": ks, "evaluate": params.evaluate.model_dump(),
                        "sample.min_hnr_db": params.sample.min_hnr_db,
                        "sample.min_f0_rpa": params.sample.min_f0_rpa})
        run.log_metrics(result.metrics)
        run.log_artifact(root / METRICS_FILE)
        run.log_artifact(root / REPORT_DIR, "evaluate")
        run.log_artifact(root / PLOTS_DIR, "plots_data")


if __name__ == "__main__":
    main()
