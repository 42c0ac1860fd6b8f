"""DVC stage ``sample@K``: generate clips from the K-component mixture and measure each one.

Run as ``python -m stages.sample --k 8``. Code: :mod:`pipeline.generation` (with
:mod:`pipeline.prior`, :mod:`pipeline.model`, :mod:`pipeline.metrics`). Outs: ``sample.out_dir/k<K>``
(clips/*.wav + *.png, clips.csv: one row per clip with its K, method, cluster, weight,
conditioning, seed, rho, paths and metrics); metrics: ``metrics/samples/k<K>.json`` (means per method).
"""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.config import load_params, project_root
from pipeline.paths import CLIP_DIR, CLIPS_FILE, Paths
from pipeline.publish import staged_dir, write_json_atomic
from pipeline.tracking.runs import k_run, log_mixture


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, required=True, help="cluster count; must be listed in gmm.n_components")
    args = parser.parse_args(argv)
    params = load_params()
    paths = Paths(params, project_root())
    if args.k not in params.gmm.n_components:
        sys.exit(f"sample: K={args.k} is not in gmm.n_components {params.gmm.n_components}")
    # deferred: TensorFlow loads only once params are valid
    from pipeline.generation.render import sample_mixture, summarise_clips
    from pipeline.generation.synthesizer import load_synthesizer

    out_dir = paths.samples_dir(args.k)
    with staged_dir(out_dir) as staging:
        clips = sample_mixture(params, paths, args.k, staging, load_synthesizer(paths.model_dir))
    summary = summarise_clips(clips)
    write_json_atomic(paths.sample_metrics(args.k), summary)
    print(f"sample: K={args.k}: {len(clips)} clips, {int((~clips['valid']).sum())} invalid -> {out_dir}")
    with k_run(args.k, paths.root, params.tracking) as run:
        log_mixture(run, params, args.k, json.loads(paths.mixture_metrics(args.k).read_text()),
                    paths.mixture_dir(args.k))
        run.log_params({"sample": params.sample.model_dump()})
        run.log_metrics(summary)  # <method>.<metric>, the keys `dvc metrics show` prints
        run.log_table(clips, "manifest.json")
        run.log_artifact(out_dir / CLIPS_FILE)
        run.log_artifact(out_dir / CLIP_DIR, "clips")


if __name__ == "__main__":
    main()
