"""Mixture fit time vs K and vs number of frames, and ``fit_mixture`` against plain sklearn.

The frames are shaped like the z table (16 dims, float32 values, passed as float64 like
``pipeline.latent.ztable.z_frames`` returns them). They are drawn from a random mixture of 10 well-separated
Gaussians with random full covariances, and the frames are independent (no time structure). The
settings are ``GmmParams``' defaults, the same as params.yaml's gmm section: full covariance,
reg_covar 1e-4, max_iter 300, n_init 2, tol 1e-3, seed 1234.

Stock vs ours: ``pipeline.prior.mixture.fit_mixture`` runs EM with BLAS limited to 1 thread (threadpoolctl).
"stock" is plain ``sklearn.mixture.GaussianMixture(...).fit`` with the same data, params and seed
and the BLAS libraries' default thread count, as a user of plain sklearn gets it; "ours" is
``fit_mixture``. Each configuration alternates stock, ours / ours, stock (ABBA), the ratio stock / ours
is the median over rounds of the ratio within a round, and the fitted means and weights of the two
are compared (max absolute difference).

Sweeps: K in 2..16 at 20 000 frames, and 5 000..200 000 frames at K=8 (70 000 is about the real train
table, 200 000 the fit stage's ``max_train_frames`` cap), all fitted by ``fit_mixture`` as the fit
stage does. Every configuration is fitted once per round; the order is reversed every other round,
and the ratio vs the smallest configuration of its sweep (K=2 / 5 000 frames) is the median over
rounds of the ratio within a round. The data and seed are the same in every round, so each round runs
the same EM iterations and only the timing varies.

EM iterations are counted over both initialisations: sklearn's ``n_iter_`` only reports the best
one. This process wraps ``GaussianMixture._m_step``, which runs once per iteration (and records the
BLAS thread count in effect at the first one, a probe whose time is subtracted), and
``_initialize_parameters`` (k-means, timed apart).
*s/iter* is the fit time without the k-means initialisation, divided by that count. After each fit,
``GaussianMixture.score`` is timed on 20 000 held-out frames from the same distribution (median of 3
calls), with the default BLAS threads: the fit stage's ``mixture_metrics`` is not limited.

    python -m bench.gmm_fit [--ks 2 4 6 8 10 12 16] [--frames 5000 20000 70000 200000] [--rounds 5]
                            [--compare-configs 8x20000 8x70000] [--compare-rounds 4]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from bench.common import load_average, machine, median, parse_args, table, write_results

Z_DIMS = 16
TRUE_COMPONENTS = 10
HELDOUT = 20_000
FIXED_FRAMES = 20_000
FIXED_K = 8
SEED = 1234


def synthetic_z(n_frames: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """``n_frames`` [n, 16] float32 frames from 10 random, well-separated full-covariance Gaussians."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(TRUE_COMPONENTS, Z_DIMS))
    chols = []
    for _ in range(TRUE_COMPONENTS):
        rotation, _ = np.linalg.qr(rng.normal(size=(Z_DIMS, Z_DIMS)))
        scales = rng.uniform(0.3, 1.2, size=Z_DIMS)  # standard deviations along the principal axes
        chols.append(rotation * scales)
    weights = rng.dirichlet(np.full(TRUE_COMPONENTS, 3.0))
    labels = rng.choice(TRUE_COMPONENTS, size=n_frames, p=weights)
    noise = rng.standard_normal((n_frames, Z_DIMS))
    z = np.empty((n_frames, Z_DIMS))
    for c in range(TRUE_COMPONENTS):
        rows = labels == c
        z[rows] = means[c] + noise[rows] @ chols[c].T
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    separation = float(distances[np.triu_indices(TRUE_COMPONENTS, 1)].min())
    return z.astype(np.float32), {"true_components": TRUE_COMPONENTS, "weights": weights.round(4).tolist(),
                                  "min_mean_distance": separation, "max_axis_std": 1.2}


class EmCounter:
    """Counts EM iterations, times the k-means initialisation and records the BLAS threads of every fit."""

    def __init__(self):
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_info

        self.reset()
        cls = GaussianMixture
        m_step, initialize = cls._m_step, cls._initialize_parameters
        counter = self

        def counted_m_step(self, *args, **kwargs):
            if counter.blas_threads is None:  # once per fit; its ~4 ms are taken off the fit's time
                wall, cpu = time.perf_counter(), time.process_time()
                counter.blas_threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
                counter.probe_s, counter.probe_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
            counter.iterations += 1
            return m_step(self, *args, **kwargs)

        def timed_initialize(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return initialize(self, *args, **kwargs)
            finally:
                counter.init_s += time.perf_counter() - started

        cls._m_step, cls._initialize_parameters = counted_m_step, timed_initialize

    def reset(self) -> None:
        self.iterations, self.init_s, self.blas_threads, self.probe_s, self.probe_cpu_s = 0, 0.0, None, 0.0, 0.0


def fit_once(z_train: np.ndarray, z_heldout: np.ndarray, k: int, params, counter: EmCounter,
             stock: bool = False) -> tuple[dict, object]:
    """One timed fit by ``pipeline.prior.mixture.fit_mixture`` (or, ``stock``, by sklearn's own GaussianMixture)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from pipeline.prior.mixture import fit_mixture

    counter.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        wall, cpu = time.perf_counter(), time.process_time()
        if stock:
            gmm = GaussianMixture(n_components=k, covariance_type=params.covariance_type, reg_covar=params.reg_covar,
                                  max_iter=params.max_iter, n_init=params.n_init, tol=params.tol,
                                  random_state=SEED).fit(z_train)
        else:
            gmm = fit_mixture(z_train, k, params.covariance_type, SEED, reg_covar=params.reg_covar,
                              max_iter=params.max_iter, n_init=params.n_init, tol=params.tol)
        seconds = time.perf_counter() - wall - counter.probe_s
        cpu_s = time.process_time() - cpu - counter.probe_cpu_s
    score_times = []
    for _ in range(3):
        started = time.perf_counter()
        heldout_loglik = float(gmm.score(z_heldout))
        score_times.append(time.perf_counter() - started)
    iterations = max(counter.iterations, 1)
    return {"seconds": seconds, "cpu_s": cpu_s, "init_s": counter.init_s, "em_iterations": counter.iterations,
            "s_per_iter": (seconds - counter.init_s) / iterations,
            "cpu_s_per_iter": cpu_s / iterations, "blas_threads": counter.blas_threads,
            "n_iter_best": int(gmm.n_iter_), "converged": bool(gmm.converged_),
            "convergence_warnings": sum(issubclass(w.category, ConvergenceWarning) for w in caught),
            "heldout_loglik": heldout_loglik, "score_s": median(score_times)}, gmm


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [{k: info.get(k) for k in ("user_api", "internal_api", "num_threads", "version", "architecture")}
            for info in threadpool_info()]


def stock_vs_ours(configs: list[tuple[int, int]], rounds: int, z_all, z_heldout, args, counter) -> list[dict]:
    """Plain sklearn (default BLAS threads) against ``fit_mixture`` (1 BLAS thread), ABBA per configuration."""
    started = time.perf_counter()
    results = []
    for k, n in configs:
        runs = {"stock": [], "ours": []}
        max_diff = {"means": 0.0, "weights": 0.0, "heldout_loglik": 0.0}
        for round_index in range(rounds):
            fitted = {}
            for name in (("stock", "ours") if round_index % 2 == 0 else ("ours", "stock")):
                run, fitted[name] = fit_once(z_all[:n], z_heldout, k, args, counter, stock=name == "stock")
                runs[name].append(run)
            for attr in ("means", "weights"):
                diff = float(np.max(np.abs(getattr(fitted["stock"], f"{attr}_") - getattr(fitted["ours"], f"{attr}_"))))
                max_diff[attr] = max(max_diff[attr], diff)
            loglik_diff = abs(runs["stock"][-1]["heldout_loglik"] - runs["ours"][-1]["heldout_loglik"])
            max_diff["heldout_loglik"] = max(max_diff["heldout_loglik"], loglik_diff)
            print(f"[{time.perf_counter() - started:6.1f}s] K={k} frames={n} round {round_index + 1}/{rounds}: "
                  f"stock {runs['stock'][-1]['seconds']:.2f}s, ours {runs['ours'][-1]['seconds']:.2f}s "
                  f"(load {load_average()[0]})", flush=True)
        row = {"k": k, "frames": n}
        for name in ("stock", "ours"):
            for key in ("seconds", "cpu_s", "s_per_iter", "cpu_s_per_iter", "init_s"):
                row[f"{name}_{key}"] = median(r[key] for r in runs[name])
            row[f"{name}_seconds_per_round"] = [r["seconds"] for r in runs[name]]
            row[f"{name}_em_iterations"] = runs[name][0]["em_iterations"]
            row[f"{name}_blas_threads"] = runs[name][0]["blas_threads"]
        row["ratio"] = median(s["seconds"] / o["seconds"] for s, o in zip(runs["stock"], runs["ours"]))
        row["ratio_per_round"] = [s["seconds"] / o["seconds"] for s, o in zip(runs["stock"], runs["ours"])]
        row["cpu_ratio"] = median(s["cpu_s"] / o["cpu_s"] for s, o in zip(runs["stock"], runs["ours"]))
        row["s_per_iter_ratio"] = median(s["s_per_iter"] / o["s_per_iter"] for s, o in zip(runs["stock"], runs["ours"]))
        row["init_ratio"] = median(s["init_s"] / o["init_s"] for s, o in zip(runs["stock"], runs["ours"]))
        row["max_abs_diff"] = max_diff
        row["same_iterations"] = len({r["em_iterations"] for r in runs["stock"] + runs["ours"]}) == 1
        row["runs"] = runs
        results.append(row)
    return results


def main() -> None:
    from pipeline.config import GmmParams

    defaults = GmmParams()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 6, 8, 10, 12, 16])
    parser.add_argument("--frames", type=int, nargs="+", default=[5_000, 20_000, 70_000, 200_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--covariance-type", default=defaults.covariance_type)
    parser.add_argument("--reg-covar", type=float, default=defaults.reg_covar)
    parser.add_argument("--max-iter", type=int, default=defaults.max_iter)
    parser.add_argument("--n-init", type=int, default=defaults.n_init)
    parser.add_argument("--tol", type=float, default=defaults.tol)
    parser.add_argument("--compare-configs", nargs="*", default=["8x20000", "8x70000"],
                        help="KxFRAMES fitted by plain sklearn (default BLAS threads) and by fit_mixture")
    parser.add_argument("--compare-rounds", type=int, default=4)
    args = parse_args(parser, {"ks": [2, 3], "frames": [2_000, 5_000], "rounds": 1, "compare_configs": ["2x2000"],
                               "compare_rounds": 1})

    info = machine()
    configs = [(k, FIXED_FRAMES) for k in args.ks]
    configs += [(FIXED_K, n) for n in args.frames if (FIXED_K, n) not in configs]
    compare_configs = [tuple(int(v) for v in spec.lower().split("x")) for spec in args.compare_configs]
    n_pool = max(args.frames + [FIXED_FRAMES] + [n for _, n in compare_configs])
    pool, truth = synthetic_z(n_pool + HELDOUT, seed=0)
    pool = pool.astype(np.float64)  # float32 values, float64 arrays: what z_frames hands the fit stage
    z_heldout, z_all = pool[:HELDOUT], pool[HELDOUT:]
    counter = EmCounter()
    default_blas = blas_info()
    started = time.perf_counter()

    compare = stock_vs_ours(compare_configs, args.compare_rounds, z_all, z_heldout, args, counter)
    if compare:
        print("stock (plain sklearn, default BLAS threads) vs ours (fit_mixture, 1 BLAS thread); "
              "ratio = stock / ours, median of rounds:")
        c_columns = ["stock_seconds", "ours_seconds", "ratio", "stock_em_iterations", "stock_s_per_iter",
                     "ours_s_per_iter", "s_per_iter_ratio", "stock_init_s", "ours_init_s", "stock_cpu_s", "ours_cpu_s"]
        print(table(["K", "frames", *c_columns, "max |diff| means", "weights", "blas threads"],
                    [[r["k"], r["frames"], *(r[c] for c in c_columns), r["max_abs_diff"]["means"],
                      r["max_abs_diff"]["weights"], f"{r['stock_blas_threads']} / {r['ours_blas_threads']}"]
                     for r in compare]))

    runs = {config: [] for config in configs}
    for round_index in range(args.rounds):
        order = configs if round_index % 2 == 0 else list(reversed(configs))
        for k, n in order:
            runs[(k, n)].append(fit_once(z_all[:n], z_heldout, k, args, counter)[0])
        print(f"[{time.perf_counter() - started:6.1f}s] sweep round {round_index + 1}/{args.rounds} "
              f"(load {load_average()[0]})", flush=True)

    def summary(k: int, n: int, base: tuple[int, int]) -> dict:
        rounds, base_rounds = runs[(k, n)], runs[base]
        first = rounds[0]
        return {"k": k, "frames": n, "seconds": median(r["seconds"] for r in rounds),
                "cpu_s": median(r["cpu_s"] for r in rounds), "init_s": median(r["init_s"] for r in rounds),
                "em_iterations": first["em_iterations"], "n_iter_best": first["n_iter_best"],
                "blas_threads": first["blas_threads"],
                "s_per_iter": median(r["s_per_iter"] for r in rounds),
                "ratio": median(r["seconds"] / b["seconds"] for r, b in zip(rounds, base_rounds)),
                "s_per_iter_ratio": median(r["s_per_iter"] / b["s_per_iter"] for r, b in zip(rounds, base_rounds)),
                "score_s": median(r["score_s"] for r in rounds),
                "score_ratio": median(r["score_s"] / b["score_s"] for r, b in zip(rounds, base_rounds)),
                "converged": all(r["converged"] for r in rounds),
                "same_iterations_every_round": len({r["em_iterations"] for r in rounds}) == 1,
                "heldout_loglik": first["heldout_loglik"], "rounds": rounds}

    base_k, base_n = (min(args.ks), FIXED_FRAMES), (FIXED_K, min(args.frames))
    by_k = [summary(k, FIXED_FRAMES, base_k) for k in args.ks]
    by_frames = [summary(FIXED_K, n, base_n) for n in args.frames]
    columns = ["seconds", "ratio", "em_iterations", "n_iter_best", "s_per_iter", "s_per_iter_ratio", "init_s",
               "score_s", "score_ratio", "heldout_loglik"]
    print(f"K sweep at {FIXED_FRAMES} frames, fit_mixture (ratios vs K={min(args.ks)}):")
    print(table(["K", *columns], [[r["k"], *(r[c] for c in columns)] for r in by_k]))
    print(f"frames sweep at K={FIXED_K}, fit_mixture (ratios vs {min(args.frames)} frames):")
    print(table(["frames", *columns], [[r["frames"], *(r[c] for c in columns)] for r in by_frames]))
    path = write_results("gmm_fit", {
        "settings": {"ks": args.ks, "frames": args.frames, "fixed_frames": FIXED_FRAMES, "fixed_k": FIXED_K,
                     "heldout_frames": HELDOUT, "rounds": args.rounds, "z_dims": Z_DIMS, "seed": SEED,
                     "compare_configs": args.compare_configs, "compare_rounds": args.compare_rounds,
                     "gmm": {"covariance_type": args.covariance_type, "reg_covar": args.reg_covar,
                             "max_iter": args.max_iter, "n_init": args.n_init, "tol": args.tol}},
        "data": truth, "blas_default": default_blas, "stock_vs_ours": compare, "by_k": by_k,
        "by_frames": by_frames, "seconds": time.perf_counter() - started}, info, args.smoke)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
