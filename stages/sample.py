"""DVC stage ``sample@K``: generate clips from the K-component mixture and measure each one.

Run as ``python -m stages.sample --k 8``. Code: :mod:`pipeline.generation` (with
:mod:`pipeline.prior`, :mod:`pipeline.model`, :mod:`pipeline.metrics`). Outs: ``sample.out_dir/k<K>``
(clips/*.wav + *.png, clips.csv: one row per clip with its K, method, cluster, weight,
conditioning, seed, rho, paths and metrics); metrics: ``metrics/samples/k<K>.json`` (means per method).

Also DVC stage ``sample_recommended`` (``--k recommended``): the same from fit_gmm_recommended's mixture,
into ``sample.out_dir/recommended`` and ``metrics/samples/recommended.json``; when the recommended K is
listed, sample@K has rendered it and the folder only says where (``rendered_as``).
"""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.config import load_params, project_root
from pipeline.paths import CLIP_DIR, CLIPS_FILE, RENDERED_AS_FILE, Paths
from pipeline.publish import publish_pointer, staged_dir, write_json_atomic
from pipeline.tracking.runs import k_run, log_mixture
from pipeline.vocab import RECOMMENDED, RENDERED_AS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", required=True,
                        help="cluster count listed in gmm.n_components, or 'recommended' (fit_gmm_recommended's K)")
    args = parser.parse_args(argv)
    params = load_params()
    paths = Paths(params, project_root())
    if args.k == RECOMMENDED:
        key = RECOMMENDED
        mixture = json.loads(paths.mixture_metrics(key).read_text())
        k = int(mixture["k"])
        if RENDERED_AS in mixture:  # a listed K: sample@K renders it
            publish_pointer(paths.samples_dir(key), RENDERED_AS_FILE, paths.sample_metrics(key), mixture)
            print(f"sample: recommended K={k} is listed in gmm.n_components: rendered by sample@{k}")
            return
    else:
        if not args.k.isdigit() or int(args.k) not in params.gmm.n_components:
            sys.exit(f"sample: --k {args.k} is neither 'recommended' nor in gmm.n_components "
                     f"{params.gmm.n_components}")
        key = k = int(args.k)
    # deferred: TensorFlow loads only once params are valid
    from pipeline.generation.render import sample_mixture, summarise_clips
    from pipeline.generation.synthesizer import load_synthesizer

    out_dir = paths.samples_dir(key)
    with staged_dir(out_dir) as staging:
        clips = sample_mixture(params, paths, key, staging, load_synthesizer(paths.model_dir))
    summary = summarise_clips(clips)
    write_json_atomic(paths.sample_metrics(key), summary)
    print(f"sample: K={k}{' (recommended)' if key == RECOMMENDED else ''}: {len(clips)} clips, "
          f"{int((~clips['valid']).sum())} invalid -> {out_dir}")
    with k_run(k, paths.root, params.tracking) as run:
        log_mixture(run, params, k, json.loads(paths.mixture_metrics(key).read_text()), paths.mixture_dir(key))
        run.log_params({"sample": params.sample.model_dump()})
        run.log_metrics(summary)  # <method>.<metric>, the keys `dvc metrics show` prints
        run.log_table(clips, "manifest.json")
        run.log_artifact(out_dir / CLIPS_FILE)
        run.log_artifact(out_dir / CLIP_DIR, "clips")


if __name__ == "__main__":
    main()
