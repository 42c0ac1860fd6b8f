"""DVC stage ``corpus``: render the default corpus from params.yaml's ``corpus`` section.

Run as ``python -m stages.corpus``. Outs: ``corpus.out_dir``; metrics: ``metrics/corpus.json``.
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.corpus import render_corpus
from pipeline.fsutil import write_json_atomic
from pipeline.tracking import stage_run

METRICS_FILE = "metrics/corpus.json"


def main() -> None:
    params = load_params()
    root = project_root()
    out_dir = root / params.corpus.out_dir
    manifest = render_corpus(params.corpus, params.seed, out_dir, base_dir=root)
    metrics = {"n_files": len(manifest), "total_secs": float(manifest["seconds"].sum()),
               "n_notes": int(manifest["n_notes"].sum())}
    write_json_atomic(root / METRICS_FILE, metrics)
    print(f"corpus: {metrics['n_files']} files, {metrics['total_secs'] / 60:.1f} min of audio, "
          f"{metrics['n_notes']} notes -> {out_dir}")
    with stage_run("corpus", root, params.tracking) as run:
        run.log_params({"seed": params.seed, "corpus": params.corpus.model_dump()})
        run.log_metrics(metrics)
        run.log_table(manifest, "manifest.json")


if __name__ == "__main__":
    main()
