"""DVC stage ``fit_gmm@K``: one Gaussian mixture over the train z frames, scored on eval frames.

Run as ``python -m stages.fit_gmm --k 8``. Outs: ``gmm.out_dir/k<K>`` (mixture.npz + mixture.json,
no pickle); metrics: ``gmm.metrics_dir/k<K>.json`` (bic, aic, train_loglik, heldout_loglik, weights).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.config import GmmParams, Params, load_params, project_root
from pipeline.fsutil import staged_dir, write_json_atomic
from pipeline.gmm import fit_mixture, mixture_metrics, save_mixture
from pipeline.tracking import k_run
from pipeline.ztable import subsample_rows, z_frames


def mixture_dir(root: Path, params: GmmParams, k: int) -> Path:
    return root / params.out_dir / f"k{k}"


def metrics_path(root: Path, params: GmmParams, k: int) -> Path:
    return root / params.metrics_dir / f"k{k}.json"


def fit_for_k(z_path: Path, params: GmmParams, k: int, seed: int, out_dir: Path) -> dict:
    z_train = subsample_rows(z_frames(z_path, "train"), params.max_train_frames, seed)
    z_eval = z_frames(z_path, "eval")
    started = time.perf_counter()
    gmm = fit_mixture(z_train, k, params.covariance_type, seed, reg_covar=params.reg_covar,
                      max_iter=params.max_iter, n_init=params.n_init, tol=params.tol)
    fit_secs = time.perf_counter() - started
    with staged_dir(out_dir) as staging:
        save_mixture(gmm, staging)
    return {"k": k, **mixture_metrics(gmm, z_train, z_eval), "converged": bool(gmm.converged_),
            "n_iter": int(gmm.n_iter_), "n_train_frames": len(z_train), "n_eval_frames": len(z_eval),
            "fit_secs": round(fit_secs, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, required=True, help="cluster count; must be listed in gmm.n_components")
    args = parser.parse_args(argv)
    params = load_params()
    root = project_root()
    cfg = params.gmm
    if args.k not in cfg.n_components:
        sys.exit(f"fit_gmm: K={args.k} is not in gmm.n_components {cfg.n_components}")
    z_path = root / params.extract_z.out_path
    metrics = fit_for_k(z_path, cfg, args.k, params.seed, mixture_dir(root, cfg, args.k))
    write_json_atomic(metrics_path(root, cfg, args.k), metrics)
    print(f"fit_gmm: K={args.k} bic={metrics['bic']:.1f} heldout_loglik={metrics['heldout_loglik']:.3f} "
          f"({metrics['n_iter']} EM iterations, {metrics['fit_secs']:.1f} s)")
    with k_run(args.k, root, params.tracking) as run:
        log_mixture(run, params, args.k, metrics, mixture_dir(root, cfg, args.k))


def log_mixture(run, params: Params, k: int, metrics: dict, folder: Path) -> None:
    """The K run's mixture part: fit params, ``bic`` ... ``weight_<i>``, and the saved mixture."""
    run.log_params({"seed": params.seed, "k": k, "gmm": params.gmm.model_dump(exclude={"n_components"})})
    run.log_metrics({key: value for key, value in metrics.items() if key != "weights"})
    run.log_metrics({f"weight_{i}": w for i, w in enumerate(metrics["weights"])})
    run.log_artifact(folder, "mixture")


if __name__ == "__main__":
    main()
