"""DVC stage ``evaluate``: per-clip metrics of every K and the anchors -> per conditioning, method, cluster
and K, with bootstrap intervals and paired tests; invalid clusters.

Run as ``python -m stages.evaluate``. Code: :mod:`pipeline.evaluation`. Reads
``gmm.metrics_dir/k<K>.json`` and ``sample.out_dir/k<K>/clips.csv`` for the Ks in
``gmm.n_components`` and, when choose_k's K is not among them, its ``recommended`` ones;
the anchors (``anchors.out_dir``: clips.csv, real/*.wav). Metrics:
``metrics/evaluate.json``; plots data: ``metrics/evaluate/`` (CSV); outs: ``reports/evaluate/``
(comparison.csv/.md, paired_tests.csv, invalid_clusters.csv, figures). Each K's numbers also go to
that K's MLflow run (the run fit_gmm@K and sample@K log into), so the run and the report agree.
"""
from __future__ import annotations

import json

from pipeline.config import load_params, project_root
from pipeline.evaluation.aggregate import (
    EvaluateSettings,
    evaluate,
    load_anchors,
    load_clips,
    load_gmm_table,
    real_audio_dir,
    rendered_mixtures,
    write_plots_data,
    write_report_files,
)
from pipeline.evaluation.tables import real_reference_frames
from pipeline.paths import Paths, k_name
from pipeline.publish import staged_dir, write_json_atomic
from pipeline.tracking.runs import k_run, stage_run
from pipeline.vocab import REAL


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    mixtures = rendered_mixtures(paths.mixture_metrics_dir, params.gmm.n_components)
    ks = list(mixtures)
    clips = load_clips(paths.samples_root, mixtures)
    anchors = load_anchors(paths.anchors_dir)
    cfg = params.evaluate
    real_frames = (real_reference_frames(real_audio_dir(paths.anchors_dir), {})
                   if REAL in params.sample.conditionings else None)
    settings = EvaluateSettings(cfg.min_valid_share, cfg.n_resamples, cfg.alpha, cfg.kad_max_frames, params.seed)
    selection = json.loads(paths.choose_k_metrics.read_text()) if paths.choose_k_metrics.is_file() else None
    result = evaluate(load_gmm_table(paths.mixture_metrics_dir, mixtures), clips, anchors=anchors, real_frames=real_frames,
                      settings=settings, selection=selection)
    # listed: in gmm.n_components; rendered: listed, or rendered by fit_gmm_recommended + sample_recommended
    result.metrics["recommended_k_listed"] = result.recommended_k in params.gmm.n_components
    result.metrics["recommended_k_rendered"] = result.recommended_k in ks
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
    for k in ks:  # the same numbers in each K's run, as stats.<conditioning>.<method>.<metric>.<mean|ci_low|ci_high>
        with k_run(k, paths.root, params.tracking) as run:
            per_k = result.metrics["per_k"][k_name(k)]["by_conditioning"]
            run.log_metrics({"stats": {c: {m: {name: {s: v for s, v in cell.items() if s != "n"}
                                               for name, cell in entry.items()}
                                           for m, entry in methods.items()} for c, methods in per_k.items()}})


if __name__ == "__main__":
    main()
