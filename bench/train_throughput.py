"""Training throughput: our loop (pipeline.model.train) against ddsp's stock ``trainers.Trainer``.

Same model (built by pipeline.model.build from one preset), same batch size, same prepared data.
The stock side is ddsp's own recipe: ``TFRecordProvider.get_batch`` feeding ``Trainer.train_step``
with the dataset iterator, as ``ddsp.training.train_util.train`` does. Each variant runs in its
own process, so peak RSS (``ru_maxrss``) is per variant. Other jobs may share the CPUs, so besides
wall-clock examples/s this reports CPU seconds per step (less sensitive to contention) and the
ratio of both, measured in the same run.

    python -m bench.train_throughput [--preset cpu] [--batch-size 8] [--steps 8] [--rounds 1]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, table, write_results

VARIANTS = ("stock", "ours")
N_EXAMPLES = 48


def measure(variant: str, data_dir: Path, preset: str, batch_size: int, steps: int, warmup: int) -> dict:
    """Build the model, train ``warmup`` steps (tracing, compiling), then time ``steps`` steps."""
    import tensorflow as tf

    from pipeline.compat import import_ddsp
    from pipeline.config import TrainParams
    from pipeline.model.build import build_autoencoder
    from pipeline.model.data import train_batches
    from pipeline.model.store import placeholder_batch
    from pipeline.model.train import Trainer
    from pipeline.tfrecord import DatasetSpec, shard_pattern

    tf.keras.utils.set_random_seed(0)
    spec = DatasetSpec.load(data_dir)
    train = TrainParams(preset=preset, batch_size=batch_size).resolved()
    strategy = tf.distribute.get_strategy()
    if variant == "stock":
        ddsp = import_ddsp()
        model = build_autoencoder(train, spec)
        trainer = ddsp.training.trainers.Trainer(model, strategy, learning_rate=train.learning_rate,
                                                 lr_decay_steps=train.lr_decay_steps,
                                                 lr_decay_rate=train.lr_decay_rate, grad_clip_norm=train.grad_clip_norm)
        provider = ddsp.training.data.TFRecordProvider(shard_pattern(data_dir, "train"), spec.example_secs,
                                                       spec.sample_rate, spec.frame_rate)
        iterator = iter(trainer.distribute_dataset(provider.get_batch(batch_size, shuffle=True)))
        trainer.build(next(iterator))

        def run(n):
            for _ in range(n):
                losses = trainer.train_step(iterator)
            float(losses["total_loss"])
    else:
        trainer = Trainer(lambda: build_autoencoder(train, spec), train, strategy, tempfile.mkdtemp(prefix="bench-ckpt-"))
        trainer.build(placeholder_batch(spec, batch_size))
        dataset = train_batches(data_dir, spec, batch_size, seed=0)
        done = [0]

        def run(n):
            done[0] = trainer.fit(dataset, steps=done[0] + n)
        model = trainer.model

    started = time.perf_counter()
    run(warmup)
    compile_s = time.perf_counter() - started
    wall, cpu = time.perf_counter(), time.process_time()
    run(steps)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"variant": variant, "examples_per_s": steps * batch_size / wall, "s_per_step": wall / steps,
            "cpu_s_per_step": cpu / steps, "warmup_s": compile_s, "params": int(model.count_params()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_variant(variant: str, args, data_dir: Path) -> dict:
    command = [sys.executable, "-m", "bench.train_throughput", "--variant", variant, "--data", str(data_dir),
               "--preset", args.preset, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def synthetic_data(folder: Path) -> Path:
    from pipeline.model.synthetic import write_synthetic_dataset
    from pipeline.tfrecord import DatasetSpec

    return write_synthetic_dataset(folder, DatasetSpec(16000, 250, 4.0, "swift"), n_train=N_EXAMPLES, n_eval=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing, XLA compile)")
    parser.add_argument("--rounds", type=int, default=1, help="stock/ours pairs, alternated")
    parser.add_argument("--data", type=Path, help="prepared data folder (default: synthetic 4 s tones)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.data, args.preset, args.batch_size, args.steps, args.warmup)))
        return

    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        data_dir = args.data or synthetic_data(Path(scratch) / "prepared")
        results = [run_variant(variant, args, data_dir) for _ in range(args.rounds) for variant in VARIANTS]
    best = {v: max((r for r in results if r["variant"] == v), key=lambda r: r["examples_per_s"]) for v in VARIANTS}
    ratio = best["ours"]["examples_per_s"] / best["stock"]["examples_per_s"]
    cpu_ratio = best["stock"]["cpu_s_per_step"] / best["ours"]["cpu_s_per_step"]
    columns = ["variant", "examples_per_s", "s_per_step", "cpu_s_per_step", "warmup_s", "peak_rss_mb", "params"]
    print(table(columns, [[r[c] for c in columns] for r in results]))
    print(f"ours / stock: {ratio:.2f}x examples/s (wall), {cpu_ratio:.2f}x (CPU time per step)")
    path = write_results(f"train_throughput_{args.preset}_b{args.batch_size}",
                         {"settings": {k: v for k, v in vars(args).items() if k not in ("variant", "data")},
                          "runs": results, "speedup_wall": ratio, "speedup_cpu": cpu_ratio}, info)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
