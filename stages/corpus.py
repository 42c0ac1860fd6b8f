"""DVC stage ``corpus``: render the default corpus from params.yaml's ``corpus`` section.

Run as ``python -m stages.corpus``. Code: :mod:`pipeline.corpus`. Outs: ``corpus.out_dir``;
metrics: ``metrics/corpus.json``.
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.corpus.render import render_corpus
from pipeline.paths import Paths
from pipeline.publish import write_json_atomic
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    manifest = render_corpus(params.corpus, params.seed, paths.corpus_dir, base_dir=paths.root)
    metrics = {"n_files": len(manifest), "total_secs": float(manifest["seconds"].sum()),
               "n_notes": int(manifest["n_notes"].sum())}
    write_json_atomic(paths.corpus_metrics, metrics)
    print(f"corpus: {metrics['n_files']} files, {metrics['total_secs'] / 60:.1f} min of audio, "
          f"{metrics['n_notes']} notes -> {paths.corpus_dir}")
    with stage_run("corpus", paths.root, params.tracking) as run:
        run.log_params({"seed": params.seed, "corpus": params.corpus.model_dump()})
        run.log_metrics(metrics)
        run.log_table(manifest, "manifest.json")


if __name__ == "__main__":
    main()
