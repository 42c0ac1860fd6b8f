"""Multi-worker training against one worker: step time of the train stage with ``train.strategy: multi_worker``
(2 local worker processes on 127.0.0.1, each reading its own shards and computing half of every global
batch) and with the default strategy (one process), the same global batch and data.

Each run is ``python -m stages.train`` in a scratch project, as ``dvc repro`` runs it; the step time is
the median of the loss log's per-step rate after the warm-up steps (tracing, the first collective).
Runs alternate (single, multi, single, multi, ...) so load that drifts hits both alike; the ratio is
multi-worker step time over single-worker step time measured in the same run. On one machine the
workers share its cores, so this measures what the collectives cost, not a cluster's speed-up.

    python -m bench.multi_worker [--preset cpu] [--batch-size 8] [--steps 30] [--rounds 2] [--smoke]
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import machine, median, parse_args, table, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
MODES = {"single": "default", "multi_worker": "multi_worker"}
WARMUP_STEPS = 3
RUN_DEADLINE_SECS = 1800
# the smoke setting's model: tests/test_model.py's tiny autoencoder on 1 s tones
TINY = dict(decoder_frame_rate=50, z_dims=4, z_time_steps=32, encoder_rnn_channels=16, decoder_rnn_channels=32,
            decoder_fc_channels=32, decoder_layers=1, n_harmonics=16, n_noise_bands=8, reverb=True,
            reverb_length=800, fft_sizes=[512, 128], learning_rate=3e-3)


def prepared_data(folder: Path, example_secs: float, n_train: int):
    from pipeline.dataset.tfrecord import DatasetSpec
    from tests.synthetic import write_synthetic_dataset

    spec = DatasetSpec(16000, 250, example_secs, "swift")
    return write_synthetic_dataset(folder, spec, n_train=n_train, n_eval=4, n_shards=2), spec


def run_training(project: Path, data_dir: Path, example_secs: float, args, strategy: str) -> dict:
    """One train stage run; the step time from its loss log (median after warm-up) and its wall time."""
    train = {"preset": args.preset, "batch_size": args.batch_size, "steps": args.steps,
             "checkpoint_every": args.steps, "eval_examples": 2, "n_reconstructions": 1,
             "strategy": strategy, "workers": 2, **(TINY if args.tiny else {})}
    params = {"seed": 0, "prepare": {"out_dir": str(data_dir), "example_secs": example_secs},
              "train": train, "tracking": {"enabled": False}}
    project.mkdir(parents=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stages.train"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=RUN_DEADLINE_SECS)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"train ({strategy}) failed:\n{done.stderr[-3000:]}")
    with (project / "models" / "checkpoints" / "loss.csv").open() as handle:
        rates = [float(row["steps_per_s"]) for row in csv.DictReader(handle)][WARMUP_STEPS:]
    return {"s_per_step": 1.0 / median(rates), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--batch-size", type=int, default=8, help="the global batch (each worker computes half)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of single and multi-worker runs")
    parser.add_argument("--examples", type=int, default=32, help="synthetic train examples (4 s; 1 s with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny model on 1 s tones")
    args = parse_args(parser, {"batch_size": 4, "steps": WARMUP_STEPS + 3, "rounds": 1, "examples": 8,
                               "tiny": True})
    info = machine()
    example_secs = 1.0 if args.tiny else 4.0
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-multi-worker-") as scratch:
        data_dir, _ = prepared_data(Path(scratch) / "prepared", example_secs, args.examples)
        for round_index in range(args.rounds):
            for mode, strategy in MODES.items():
                run = run_training(Path(scratch) / f"{mode}-{round_index}", data_dir, example_secs, args, strategy)
                runs[mode].append(run)
                print(f"round {round_index + 1}/{args.rounds} {mode}: {run['s_per_step']:.4f} s/step", flush=True)
    results = {mode: {"s_per_step": median([r["s_per_step"] for r in rs]),
                      "examples_per_s": args.batch_size / median([r["s_per_step"] for r in rs]),
                      "wall_s": median([r["wall_s"] for r in rs])} for mode, rs in runs.items()}
    ratio = results["multi_worker"]["s_per_step"] / results["single"]["s_per_step"]
    columns = ["s_per_step", "examples_per_s", "wall_s"]
    print(table(["mode", *columns], [[mode, *(results[mode][c] for c in columns)] for mode in MODES]))
    print(f"multi_worker (2 workers) / single step time: {ratio:.2f}x (same global batch of {args.batch_size})")
    path = write_results(f"multi_worker_{'tiny' if args.tiny else args.preset}_b{args.batch_size}",
                         {"settings": vars(args), "modes": results, "runs": runs, "step_time_ratio": ratio},
                         info, args.smoke)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
