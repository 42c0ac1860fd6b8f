"""DVC stage ``evaluate``: per-clip metrics of every K -> per method, cluster and K; invalid clusters.

Run as ``python -m stages.evaluate``. Code: :mod:`pipeline.evaluation`. Reads
``gmm.metrics_dir/k<K>.json`` and ``sample.out_dir/k<K>/clips.csv`` for the Ks in
``gmm.n_components`` only. Metrics: ``metrics/evaluate.json``; plots data: ``metrics/evaluate/``
(CSV); outs: ``reports/evaluate/`` (comparison.csv/.md, invalid_clusters.csv, figures).
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.evaluation.aggregate import evaluate, load_clips, load_gmm_table, write_plots_data, write_report_files
from pipeline.paths import Paths
from pipeline.publish import staged_dir, write_json_atomic
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    ks = sorted(params.gmm.n_components)
    clips = load_clips(paths.samples_root, ks)
    result = evaluate(load_gmm_table(paths.mixture_metrics_dir, ks), clips, params.evaluate.min_valid_share)
    with staged_dir(paths.evaluate_plots) as staging:
        write_plots_data(result, staging)
    with staged_dir(paths.evaluate_report) as staging:
        write_report_files(result, staging, hnr_threshold=params.sample.min_hnr_db)
    write_json_atomic(paths.evaluate_metrics, result.metrics)
    summary = result.metrics["invalid_clusters"]
    print(f"evaluate: {len(clips)} clips over K={ks}; recommended K={result.recommended_k}; "
          f"{summary['n_invalid']} of {summary['n_clusters']} clusters invalid -> {paths.evaluate_report}")
    with stage_run("evaluate", paths.root, params.tracking) as run:
        run.log_params({"seed": params.seed, "ks": ks, "evaluate": params.evaluate.model_dump(),
                        "sample.min_hnr_db": params.sample.min_hnr_db,
                        "sample.min_f0_rpa": params.sample.min_f0_rpa})
        run.log_metrics(result.metrics)
        run.log_artifact(paths.evaluate_metrics)
        run.log_artifact(paths.evaluate_report, "evaluate")
        run.log_artifact(paths.evaluate_plots, "plots_data")


if __name__ == "__main__":
    main()
