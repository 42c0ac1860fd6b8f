"""DVC stage ``fit_gmm@K``: one Gaussian mixture over the train z frames, scored on eval frames.

Run as ``python -m stages.fit_gmm --k 8``. Code: :mod:`pipeline.prior.mixture` (reading the z
table: :mod:`pipeline.latent`), and beside it the joint mixture over (z, f0, loudness) of the
``conditional`` method (:mod:`pipeline.prior.conditional`). Outs: ``gmm.out_dir/k<K>`` (mixture.npz +
mixture.json, no pickle; ``conditional/`` the same for the joint mixture); metrics:
``gmm.metrics_dir/k<K>.json`` (bic, aic, train_loglik, heldout_loglik, heldout_conditional_loglik, weights).

Also DVC stage ``fit_gmm_recommended`` (``--k recommended``): the same for the K that choose_k recommends
(:func:`pipeline.prior.selection.read_recommended_k`), into ``gmm.out_dir/recommended`` and
``gmm.metrics_dir/recommended.json``. When that K is listed in ``gmm.n_components`` its fit already exists,
so the folder only says where (``rendered_as``: ``k<K>``) and nothing is fitted twice.
"""
from __future__ import annotations

import argparse
import sys

from pipeline.config import load_params, project_root
from pipeline.paths import CONDITIONAL_DIR, RENDERED_AS_FILE, Paths, k_name
from pipeline.prior.conditional import fit_conditional_for_k, save_conditional
from pipeline.prior.mixture import fit_for_k, save_mixture
from pipeline.prior.selection import read_recommended_k
from pipeline.publish import publish_pointer, staged_dir, write_json_atomic
from pipeline.tracking.runs import k_run, log_mixture
from pipeline.vocab import RECOMMENDED, RENDERED_AS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", required=True,
                        help="cluster count listed in gmm.n_components, or 'recommended' (choose_k's K)")
    args = parser.parse_args(argv)
    params = load_params()
    paths = Paths(params, project_root())
    if args.k == RECOMMENDED:
        key, k = RECOMMENDED, read_recommended_k(paths.choose_k_metrics)
        if k in params.gmm.n_components:  # fitted by fit_gmm@K already
            publish_pointer(paths.mixture_dir(key), RENDERED_AS_FILE, paths.mixture_metrics(key),
                            {"k": k, RENDERED_AS: k_name(k)})
            print(f"fit_gmm: recommended K={k} is listed in gmm.n_components: fitted by fit_gmm@{k}")
            return
    else:
        if not args.k.isdigit() or int(args.k) not in params.gmm.n_components:
            sys.exit(f"fit_gmm: --k {args.k} is neither 'recommended' nor in gmm.n_components "
                     f"{params.gmm.n_components}")
        key = k = int(args.k)
    gmm, metrics, fit_secs = fit_for_k(paths.z_table, params.gmm, k, params.seed)
    conditional, conditional_metrics = fit_conditional_for_k(paths.z_table, params.gmm, k, params.seed)
    metrics.update(conditional_metrics)
    with staged_dir(paths.mixture_dir(key)) as staging:
        save_mixture(gmm, staging)
        save_conditional(conditional, staging / CONDITIONAL_DIR)
    write_json_atomic(paths.mixture_metrics(key), metrics)
    print(f"fit_gmm: K={k}{' (recommended)' if key == RECOMMENDED else ''} bic={metrics['bic']:.1f} "
          f"heldout_loglik={metrics['heldout_loglik']:.3f} "
          f"heldout_conditional_loglik={metrics['heldout_conditional_loglik']} "
          f"({metrics['n_iter']} EM iterations, {fit_secs:.1f} s)")
    with k_run(k, paths.root, params.tracking) as run:
        log_mixture(run, params, k, metrics, paths.mixture_dir(key))
        run.log_metrics({"fit_secs": fit_secs})


if __name__ == "__main__":
    main()
