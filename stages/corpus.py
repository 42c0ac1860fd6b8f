"""DVC stage ``corpus``: render the default corpus from params.yaml's ``corpus`` section.

Run as ``python -m stages.corpus``. Outs: ``corpus.out_dir``; metrics: ``metrics/corpus.json``.
When ``prepare.audio_dir`` is another folder (the user's own recordings) nothing reads the corpus, so
it is not rendered: the out folder holds only a note saying why (DVC still needs the out to exist).
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.corpus import render_corpus
from pipeline.fsutil import staged_dir, write_json_atomic
from pipeline.tracking import stage_run

METRICS_FILE = "metrics/corpus.json"
NOT_RENDERED_NOTE = "NOT_RENDERED.txt"


def corpus_is_used(root, params) -> bool:
    """Whether prepare reads the default corpus (its audio_dir is the corpus folder)."""
    return (root / params.prepare.audio_dir).resolve() == (root / params.corpus.out_dir).resolve()


def main() -> None:
    params = load_params()
    root = project_root()
    out_dir = root / params.corpus.out_dir
    manifest = None
    if corpus_is_used(root, params):
        manifest = render_corpus(params.corpus, params.seed, out_dir, base_dir=root)
        metrics = {"n_files": len(manifest), "total_secs": float(manifest["seconds"].sum()),
                   "n_notes": int(manifest["n_notes"].sum())}
        message = (f"corpus: {metrics['n_files']} files, {metrics['total_secs'] / 60:.1f} min of audio, "
                   f"{metrics['n_notes']} notes -> {out_dir}")
    else:
        with staged_dir(out_dir) as staging:
            (staging / NOT_RENDERED_NOTE).write_text(
                f"The default corpus was not rendered: prepare.audio_dir = {params.prepare.audio_dir} "
                f"is not corpus.out_dir = {params.corpus.out_dir}.\n", encoding="utf-8")
        metrics = {"n_files": 0, "total_secs": 0.0, "n_notes": 0}
        message = f"corpus: not rendered: prepare.audio_dir = {params.prepare.audio_dir} is your own folder"
    write_json_atomic(root / METRICS_FILE, metrics)
    print(message)
    with stage_run("corpus", root, params.tracking) as run:
        run.log_params({"seed": params.seed, "corpus": params.corpus.model_dump()})
        run.log_metrics(metrics)
        if manifest is not None:
            run.log_table(manifest, "manifest.json")


if __name__ == "__main__":
    main()
