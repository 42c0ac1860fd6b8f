"""DVC stage ``anchors``: resynthesis and mean-z clips on every conditioning, once (they do not depend on K).

Run as ``python -m stages.anchors``. Code: :mod:`pipeline.generation.anchors` (decoding through
:mod:`pipeline.model`, measuring through :mod:`pipeline.metrics`). Outs: ``anchors.out_dir``
(clips/*.wav + the PNGs the report shows, clips.csv in sample@K's columns with method ``resynthesis``
or ``mean_z`` and K 0, real/real_e<i>.wav: the real examples, conditionings.json: the fitted
loudness map and MIDI envelope); metrics: ``metrics/anchors.json`` (means per conditioning and anchor).
"""
from __future__ import annotations

from pipeline.config import load_params, project_root
from pipeline.paths import CLIP_DIR, CLIPS_FILE, Paths
from pipeline.publish import staged_dir, write_json_atomic
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    # deferred: TensorFlow loads only once params are valid
    from pipeline.generation.anchors import render_anchors
    from pipeline.generation.render import summarise_clips
    from pipeline.generation.synthesizer import load_synthesizer

    out_dir = paths.anchors_dir
    with staged_dir(out_dir) as staging:
        clips = render_anchors(params, paths, staging, load_synthesizer(paths.model_dir))
    summary = summarise_clips(clips)
    write_json_atomic(paths.anchors_metrics, summary)
    print(f"anchors: {len(clips)} clips over {clips['conditioning'].nunique()} conditionings -> {out_dir}")
    with stage_run("anchors", paths.root, params.tracking) as run:
        run.log_params({"seed": params.seed, "sample": params.sample.model_dump()})
        run.log_metrics(summary)
        run.log_artifact(out_dir / CLIPS_FILE)
        run.log_artifact(out_dir / CLIP_DIR, "clips")


if __name__ == "__main__":
    main()
