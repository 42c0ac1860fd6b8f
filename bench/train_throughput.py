"""Training throughput: our loop (pipeline.model.train) against ddsp's stock ``trainers.Trainer``.

Same architecture and weights' shapes (built by pipeline.model.build from one preset), same batch
size, same prepared data. Three loops:

- ``stock``: ddsp's own recipe on the model as plain ddsp builds it (ddsp's ``Harmonic`` synth):
  ``TFRecordProvider.get_batch`` feeding ``Trainer.train_step`` with the dataset iterator, as
  ``ddsp.training.train_util.train`` does. What a ddsp user has today; the baseline.
- ``stock_our_model``: the same stock loop on our model (``FastHarmonic``, the same function
  computed faster): isolates the loop from the synth.
- ``ours``: ``Trainer.fit`` (compiled XLA step, cached input pipeline, its checkpoint at the end of
  every block) on our model, as the train stage runs it.

Other jobs may share the CPUs, so the loops are timed in one process, taking turns in blocks of
steps: load that drifts over minutes hits all alike, and the ratios hold. CPU seconds per step are
reported too. Peak memory (``ru_maxrss``) comes from a separate short process per loop, since a
process's peak cannot be split between loops.

    python -m bench.train_throughput [--preset cpu] [--batch-size 8] [--rounds 4] [--block 8] [--smoke]

The peak memory table prints once measured, the loops' table after the timed rounds.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from bench.common import machine, parse_args, run_measurement, table, write_results

LOOPS = ("stock", "stock_our_model", "ours")
N_EXAMPLES = 48
WARMUP_STEPS = 2  # tracing and XLA compilation happen here


class StockLoop:
    """ddsp's Trainer.train_step over ddsp's TFRecordProvider, as ddsp's train_util.train runs it.

    ``ddsp_model``: the model as plain ddsp builds it (ddsp's ``Harmonic``); otherwise our model
    (``FastHarmonic``), which isolates what the training loop alone is worth.
    """

    def __init__(self, train, spec, data_dir: Path, ddsp_model: bool = True):
        import tensorflow as tf

        from pipeline.compat import import_ddsp
        from pipeline.dataset.tfrecord import shard_pattern
        from pipeline.model.build import build_autoencoder

        ddsp = import_ddsp()
        self.model = build_autoencoder(train, spec, harmonic_synth=ddsp.synths.Harmonic if ddsp_model else None)
        self.trainer = ddsp.training.trainers.Trainer(
            self.model, tf.distribute.get_strategy(), learning_rate=train.learning_rate,
            lr_decay_steps=train.lr_decay_steps, lr_decay_rate=train.lr_decay_rate, grad_clip_norm=train.grad_clip_norm)
        provider = ddsp.training.data.TFRecordProvider(shard_pattern(data_dir, "train"), spec.example_secs,
                                                       spec.sample_rate, spec.frame_rate)
        self.iterator = iter(self.trainer.distribute_dataset(provider.get_batch(train.batch_size, shuffle=True)))
        self.trainer.build(next(self.iterator))

    def run(self, steps: int) -> None:
        for _ in range(steps):
            losses = self.trainer.train_step(self.iterator)
        float(losses["total_loss"])


class OurLoop:
    """pipeline.model.train.Trainer.fit over pipeline.dataset.reader.train_batches."""

    def __init__(self, train, spec, data_dir: Path):
        import tensorflow as tf

        from pipeline.dataset.reader import train_batches
        from pipeline.model.build import build_autoencoder
        from pipeline.model.store import placeholder_batch
        from pipeline.model.train import Trainer

        self.trainer = Trainer(lambda: build_autoencoder(train, spec), train, tf.distribute.get_strategy(),
                               tempfile.mkdtemp(prefix="bench-ckpt-"))
        self.trainer.build(placeholder_batch(spec, train.batch_size))
        self.model = self.trainer.model
        self.dataset = train_batches(data_dir, spec, train.batch_size, seed=0)
        self.done = 0

    def run(self, steps: int) -> None:
        self.done = self.trainer.fit(self.dataset, steps=self.done + steps)


def make_loop(name: str, preset: str, batch_size: int, data_dir: Path):
    import tensorflow as tf

    from pipeline.config import TrainParams
    from pipeline.dataset.tfrecord import DatasetSpec

    tf.keras.utils.set_random_seed(0)
    train = TrainParams(preset=preset, batch_size=batch_size).resolved()
    spec = DatasetSpec.load(data_dir)
    if name == "ours":
        return OurLoop(train, spec, data_dir)
    return StockLoop(train, spec, data_dir, ddsp_model=name == "stock")


def interleaved(args, data_dir: Path) -> dict:
    """Both loops in this process; ``rounds`` x (``block`` stock steps, ``block`` our steps)."""
    loops, timing = {}, {}
    for name in LOOPS:
        started = time.perf_counter()
        loops[name] = make_loop(name, args.preset, args.batch_size, data_dir)
        loops[name].run(WARMUP_STEPS)
        timing[name] = {"warmup_s": time.perf_counter() - started, "wall": 0.0, "cpu": 0.0, "steps": 0}
    for _ in range(args.rounds):
        for name in LOOPS:
            wall, cpu = time.perf_counter(), time.process_time()
            loops[name].run(args.block)
            timing[name]["wall"] += time.perf_counter() - wall
            timing[name]["cpu"] += time.process_time() - cpu
            timing[name]["steps"] += args.block
    return {name: {"examples_per_s": t["steps"] * args.batch_size / t["wall"], "s_per_step": t["wall"] / t["steps"],
                   "cpu_s_per_step": t["cpu"] / t["steps"], "warmup_s": t["warmup_s"], "timed_steps": t["steps"],
                   "params": int(loops[name].model.count_params())} for name, t in timing.items()}


def peak_memory(name: str, args, data_dir: Path) -> float:
    """Peak RSS (MB) of a fresh process that builds one loop and trains a few steps."""
    return run_measurement("bench.train_throughput", "--memory-of", name, "--data", str(data_dir),
                           "--preset", args.preset, "--batch-size", str(args.batch_size), what=name)["peak_rss_mb"]


def synthetic_data(folder: Path, n_train: int = N_EXAMPLES) -> Path:
    from pipeline.dataset.tfrecord import DatasetSpec
    from tests.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(folder, DatasetSpec(16000, 250, 4.0, "swift"), n_train=n_train, n_eval=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4, help="alternations of stock and our blocks")
    parser.add_argument("--block", type=int, default=8, help="steps per block")
    parser.add_argument("--data", type=Path, help="prepared data folder (default: synthetic 4 s tones)")
    parser.add_argument("--examples", type=int, default=N_EXAMPLES, help="synthetic train examples (without --data)")
    parser.add_argument("--memory-loops", nargs="*", choices=LOOPS, default=list(LOOPS),
                        help="loops whose peak memory is measured (one fresh process each)")
    parser.add_argument("--memory-of", choices=LOOPS, help=argparse.SUPPRESS)
    # smoke: one memory process (each compiles the training step afresh, the slowest part on a busy machine)
    args = parse_args(parser, {"batch_size": 2, "rounds": 1, "block": 1, "examples": 4, "memory_loops": ["ours"]})
    if args.memory_of:
        make_loop(args.memory_of, args.preset, args.batch_size, args.data).run(WARMUP_STEPS + 2)
        print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return

    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        data_dir = args.data or synthetic_data(Path(scratch) / "prepared", args.examples)
        memory = {name: peak_memory(name, args, data_dir) for name in args.memory_loops}
        print(table(["loop", "peak_rss_mb"], [[name, mb] for name, mb in memory.items()]), flush=True)
        results = interleaved(args, data_dir)
    for name in LOOPS:
        results[name]["peak_rss_mb"] = memory.get(name, "n/a")
    speedups = {}
    for baseline in ("stock", "stock_our_model"):
        speedups[baseline] = {
            "wall": results["ours"]["examples_per_s"] / results[baseline]["examples_per_s"],
            "cpu": results[baseline]["cpu_s_per_step"] / results["ours"]["cpu_s_per_step"]}
    columns = ["examples_per_s", "s_per_step", "cpu_s_per_step", "warmup_s", "peak_rss_mb", "params"]
    print(table(["loop", *columns], [[name, *(results[name][c] for c in columns)] for name in LOOPS]))
    for baseline, ratio in speedups.items():
        print(f"ours / {baseline}: {ratio['wall']:.2f}x examples/s (wall), {ratio['cpu']:.2f}x less CPU time per step")
    path = write_results(f"train_throughput_{args.preset}_b{args.batch_size}",
                         {"settings": {k: v for k, v in vars(args).items() if k not in ("memory_of", "data")},
                          "loops": results, "speedup_wall": speedups["stock"]["wall"],
                          "speedup_cpu": speedups["stock"]["cpu"], "speedups": speedups}, info, args.smoke)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
