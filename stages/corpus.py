"""DVC stage ``corpus``: render the default corpus from params.yaml's ``corpus`` section.

Run as ``python -m stages.corpus``. Code: :mod:`pipeline.corpus`. Outs: ``corpus.out_dir``;
metrics: ``metrics/corpus.json``. When ``prepare.audio_dir`` is another folder (the user's own
recordings) nothing reads the corpus, so it is not rendered: the out folder holds only a note saying
why (DVC still needs the out to exist).
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.corpus.render import corpus_is_used, render_corpus, write_not_rendered
from pipeline.paths import Paths
from pipeline.publish import write_json_atomic
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    manifest = None
    if corpus_is_used(paths.audio_dir, paths.corpus_dir):
        manifest = render_corpus(params.corpus, params.seed, paths.corpus_dir, base_dir=paths.root)
        metrics = {"n_files": len(manifest), "total_secs": float(manifest["seconds"].sum()),
                   "n_notes": int(manifest["n_notes"].sum())}
        message = (f"corpus: {metrics['n_files']} files, {metrics['total_secs'] / 60:.1f} min of audio, "
                   f"{metrics['n_notes']} notes -> {paths.corpus_dir}")
    else:
        write_not_rendered(paths.corpus_dir, params.prepare.audio_dir, params.corpus.out_dir)
        metrics = {"n_files": 0, "total_secs": 0.0, "n_notes": 0}
        message = f"corpus: not rendered: prepare.audio_dir = {params.prepare.audio_dir} is your own folder"
    write_json_atomic(paths.corpus_metrics, metrics)
    print(message)
    with stage_run("corpus", paths.root, params.tracking) as run:
        run.log_params({"seed": params.seed, "corpus": params.corpus.model_dump()})
        run.log_metrics(metrics)
        if manifest is not None:
            run.log_table(manifest, "manifest.json")


if __name__ == "__main__":
    main()
