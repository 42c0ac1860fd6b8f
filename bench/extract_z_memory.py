"""extract_z at two corpus sizes: frames/s and peak memory, to show memory does not grow with the corpus.

Each size runs in its own process (peak RSS is per process) on synthetic 4 s examples with an
untrained model of the chosen preset (extraction cost does not depend on the weights). Also
reports Arrow's own peak allocation, which would grow if rows were collected before writing.

    python -m bench.extract_z_memory [--sizes 64 256] [--preset cpu] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
from pathlib import Path

from bench.common import machine, parse_args, run_measurement, table, write_results

N_EVAL = 8


def measure(data_dir: Path, preset: str, batch_size: int) -> dict:
    import pyarrow as pa

    from pipeline.config import TrainParams
    from pipeline.dataset.tfrecord import DatasetSpec
    from pipeline.model.build import build_autoencoder
    from pipeline.model.extract import extract_z
    from pipeline.model.store import placeholder_batch

    spec = DatasetSpec.load(data_dir)
    model = build_autoencoder(TrainParams(preset=preset), spec)
    model(placeholder_batch(spec), training=False)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = data_dir.parent / "z_frames.parquet"
    summary = extract_z(model, data_dir, spec, out, batch_size)
    return {"examples": sum(summary.examples.values()), "rows": sum(summary.rows.values()),
            "frames_per_s": summary.frames_per_s, "seconds": summary.seconds,
            "rss_before_mb": baseline_mb, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "arrow_peak_mb": pa.default_memory_pool().max_memory() / 2**20, "parquet_mb": out.stat().st_size / 2**20}


def run_size(n_train: int, args, scratch: Path) -> dict:
    from pipeline.dataset.tfrecord import DatasetSpec
    from tests.synthetic import write_synthetic_dataset

    data_dir = write_synthetic_dataset(scratch / f"n{n_train}" / "prepared", DatasetSpec(16000, 250, 4.0, "swift"),
                                       n_train=n_train, n_eval=N_EVAL, n_shards=4)
    return run_measurement("bench.extract_z_memory", "--measure", str(data_dir), "--preset", args.preset,
                           "--batch-size", str(args.batch_size), what=f"size {n_train}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[64, 256], help="train examples (4 s each)")
    parser.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parse_args(parser, {"sizes": [4, 8], "batch_size": 4})
    if args.measure:
        print(json.dumps(measure(args.measure, args.preset, args.batch_size)))
        return

    info = machine()
    columns = ["examples", "rows", "frames_per_s", "seconds", "rss_before_mb", "peak_rss_mb", "arrow_peak_mb",
               "parquet_mb"]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as scratch:
        for n in args.sizes:  # each size's row as soon as it is measured
            results.append(run_size(n, args, Path(scratch)))
            print(table(columns, [[r[c] for c in columns] for r in results]), flush=True)
    small, large = results
    growth = (large["peak_rss_mb"] - small["peak_rss_mb"]) / small["peak_rss_mb"]
    print(f"{large['examples'] / small['examples']:.1f}x the examples: peak RSS {growth:+.1%}, "
          f"arrow peak {small['arrow_peak_mb']:.1f} -> {large['arrow_peak_mb']:.1f} MB")
    path = write_results(f"extract_z_memory_{args.preset}", {"settings": vars(args) | {"measure": None},
                                                            "runs": results, "peak_rss_growth": growth}, info,
                         args.smoke)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
