"""DVC stage ``fit_gmm@K``: one Gaussian mixture over the train z frames, scored on eval frames.

Run as ``python -m stages.fit_gmm --k 8``. Code: :mod:`pipeline.prior.mixture` (reading the z
table: :mod:`pipeline.latent`), and beside it the joint mixture over (z, f0, loudness) of the
``conditional`` method (:mod:`pipeline.prior.conditional`). Outs: ``gmm.out_dir/k<K>`` (mixture.npz +
mixture.json, no pickle; ``conditional/`` the same for the joint mixture); metrics:
``gmm.metrics_dir/k<K>.json`` (bic, aic, train_loglik, heldout_loglik, heldout_conditional_loglik, weights).
"""
from __future__ import annotations

import argparse
import sys

from pipeline.config import load_params, project_root
from pipeline.paths import CONDITIONAL_DIR, Paths
from pipeline.prior.conditional import fit_conditional_for_k, save_conditional
from pipeline.prior.mixture import fit_for_k, save_mixture
from pipeline.publish import staged_dir, write_json_atomic
from pipeline.tracking.runs import k_run, log_mixture


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, required=True, help="cluster count; must be listed in gmm.n_components")
    args = parser.parse_args(argv)
    params = load_params()
    paths = Paths(params, project_root())
    if args.k not in params.gmm.n_components:
        sys.exit(f"fit_gmm: K={args.k} is not in gmm.n_components {params.gmm.n_components}")
    gmm, metrics, fit_secs = fit_for_k(paths.z_table, params.gmm, args.k, params.seed)
    conditional, conditional_metrics = fit_conditional_for_k(paths.z_table, params.gmm, args.k, params.seed)
    metrics.update(conditional_metrics)
    with staged_dir(paths.mixture_dir(args.k)) as staging:
        save_mixture(gmm, staging)
        save_conditional(conditional, staging / CONDITIONAL_DIR)
    write_json_atomic(paths.mixture_metrics(args.k), metrics)
    print(f"fit_gmm: K={args.k} bic={metrics['bic']:.1f} heldout_loglik={metrics['heldout_loglik']:.3f} "
          f"heldout_conditional_loglik={metrics['heldout_conditional_loglik']} "
          f"({metrics['n_iter']} EM iterations, {fit_secs:.1f} s)")
    with k_run(args.k, paths.root, params.tracking) as run:
        log_mixture(run, params, args.k, metrics, paths.mixture_dir(args.k))
        run.log_metrics({"fit_secs": fit_secs})


if __name__ == "__main__":
    main()
