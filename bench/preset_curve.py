"""Quality against training minutes: which ``cpu`` preset learns most in the ~15 minutes `make run` gives it.

Candidates are the ``cpu`` preset and variants of it (CANDIDATES: a key changed each), trained from the
same initial seed on the same prepared data (default: the main job's ``prepare.out_dir``). They train
in turns, ``--block-minutes`` of training each, in one process, so load that drifts over the run hits
all alike; after each block the candidate's held-out metrics are measured (ddsp's ae.gin
SpectralLoss as ``spectral_distance``, the train stage's own Evaluator, on the first ``eval_examples``
eval examples). Evaluation time is not counted as training time. The curve is spectral_distance
against training minutes; the summary gives each candidate's value at ``--minutes`` and the best.

    python -m bench.preset_curve [--data data/prepared] [--minutes 15] [--block-minutes 2.5] [--candidates ...]

A curve's table prints after every round; the picture goes to bench/results/preset_curve.png.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import machine, parse_args, table, write_results

# name -> train keys changed from the cpu preset (pipeline/model/presets.py); "cpu" is the preset itself
CANDIDATES: dict[str, dict] = {
    "cpu": {},
    "cpu, lr 2e-3": {"learning_rate": 2e-3},
    "cpu, batch 4": {"batch_size": 4},
    "cpu, decoder 512": {"decoder_rnn_channels": 512, "decoder_fc_channels": 256},
    "cpu, reverb 1 s": {"reverb_length": 16000},
    "cpu, reverb 0.06 s": {"reverb_length": 1000},
}
METRICS = ("spectral_distance", "loudness_l1_db", "f0_rpa")


class Candidate:
    """One configuration's trainer, batches and held-out evaluator; trains in blocks of wall time."""

    def __init__(self, name: str, overrides: dict, params, data_dir: Path, scratch: Path):
        import tensorflow as tf

        from pipeline.dataset.reader import train_batches
        from pipeline.dataset.tfrecord import DatasetSpec
        from pipeline.model.build import build_autoencoder, resolve_for_dataset
        from pipeline.model.heldout import Evaluator
        from pipeline.model.store import placeholder_batch
        from pipeline.model.train import Trainer

        spec = DatasetSpec.load(data_dir)
        train = resolve_for_dataset(params.train.model_copy(update={"preset": "cpu", **overrides}), spec)
        tf.keras.utils.set_random_seed(params.seed)  # every candidate starts from the same seed
        self.name, self.train = name, train
        self.trainer = Trainer(lambda: build_autoencoder(train, spec), train, tf.distribute.get_strategy(),
                               scratch / name.replace(" ", "_").replace(",", ""), noise_seed=params.seed)
        self.trainer.build(placeholder_batch(spec, train.batch_size))
        self.batches = train_batches(data_dir, spec, train.batch_size, seed=params.seed)
        self.evaluator = Evaluator(data_dir, spec, train.eval_examples, fmin_hz=params.prepare.f0.fmin_hz,
                                   fmax_hz=params.prepare.f0.fmax_hz, noise_seed=params.seed)
        self.train_secs, self.step = 0.0, 0
        self.curve = [self._point()]

    def run_block(self, secs: float, steps_per_check: int) -> dict:
        """Train ``secs`` more seconds of wall time (whole calls of ``steps_per_check`` steps, each ending
        in a checkpoint, as a stage's blocks do), then measure; returns the new point."""
        start = time.perf_counter()
        while time.perf_counter() - start < secs:
            self.step = self.trainer.fit(self.batches, self.step + steps_per_check, progress=False)
        self.train_secs += time.perf_counter() - start
        self.curve.append(self._point())
        return self.curve[-1]

    def _point(self) -> dict:
        metrics = self.evaluator(self.trainer.model)
        return {"minutes": round(self.train_secs / 60, 3), "step": self.step,
                **{name: metrics.get(name) for name in METRICS}}


def value_at(curve: list[dict], minutes: float, metric: str = "spectral_distance") -> float | None:
    """The metric at ``minutes`` of training, linear between the measured points (None past the last)."""
    for before, after in zip(curve, curve[1:]):
        if before["minutes"] <= minutes <= after["minutes"]:
            span = after["minutes"] - before["minutes"]
            w = (minutes - before["minutes"]) / span if span else 1.0
            return before[metric] + w * (after[metric] - before[metric])
    return None


def plot(curves: dict[str, list[dict]], budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, curve in curves.items():
        ax.plot([p["minutes"] for p in curve], [p["spectral_distance"] for p in curve], marker="o", label=name)
    ax.axvline(budget, color="grey", linestyle=":", label=f"{budget:g} min budget")
    ax.set_xlabel("training minutes (2 cores, evaluation excluded)")
    ax.set_ylabel("held-out spectral_distance (ae.gin SpectralLoss)")
    ax.set_title("cpu preset candidates: quality vs training time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    from pipeline.config import load_params, project_root
    from pipeline.paths import Paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="prepared data folder (default: the main job's prepare.out_dir)")
    parser.add_argument("--minutes", type=float, default=15.0, help="training minutes per candidate")
    parser.add_argument("--block-minutes", type=float, default=2.5, help="training minutes per turn")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--eval-examples", type=int, help="held-out examples scored (default: the preset's)")
    parser.add_argument("--steps-per-check", type=int, default=25, help="steps between looks at the clock")
    parser.add_argument("--synthetic", action="store_true", help="train on synthetic tones (no prepared data needed)")
    parser.add_argument("--results", default="preset_curve", help="results name: bench/results/<name>.json and .png")
    args = parse_args(parser, {"minutes": 0.02, "block_minutes": 0.01, "candidates": ["cpu", "cpu, lr 2e-3"],
                               "eval_examples": 2, "synthetic": True, "steps_per_check": 1}, argv)
    params = load_params(project_root() / "params.yaml")
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-preset-") as scratch:
        scratch = Path(scratch)
        if args.synthetic:
            from bench.train_throughput import synthetic_data
            data_dir = synthetic_data(scratch / "prepared", 8)
        else:
            data_dir = args.data or Paths(params, project_root()).prepared_dir
            if not (data_dir / "spec.json").exists():
                raise SystemExit(f"{data_dir} holds no prepared data: run `.venv/bin/dvc repro prepare` first, "
                                 "or pass --data FOLDER")
        eval_override = {"eval_examples": args.eval_examples} if args.eval_examples else {}
        candidates = [Candidate(name, {**CANDIDATES[name], **eval_override}, params, data_dir, scratch)
                      for name in args.candidates]
        print(f"=== preset curve: {len(candidates)} candidates, {args.minutes:g} training minutes each in "
              f"turns of {args.block_minutes:g}, data {data_dir} (load average {info['load_average_start']}) ===",
              flush=True)
        rounds = 0
        while min(c.train_secs for c in candidates) < args.minutes * 60:
            rounds += 1
            for c in candidates:
                c.run_block(min(args.block_minutes * 60, args.minutes * 60 - c.train_secs), args.steps_per_check)
            rows = [[c.name, p["minutes"], p["step"], *(p[m] for m in METRICS)] for c in candidates for p in c.curve[-1:]]
            print(f"\nround {rounds}:", flush=True)
            print(table(["candidate", "train min", "step", *METRICS], rows), flush=True)
    curves = {c.name: c.curve for c in candidates}
    at_budget = {name: value_at(curve, args.minutes) for name, curve in curves.items()}
    best = min(at_budget, key=lambda name: at_budget[name] if at_budget[name] is not None else float("inf"))
    print(f"\nspectral_distance at {args.minutes:g} training minutes:")
    print(table(["candidate", "spectral_distance", "steps", "ratio vs cpu"],
                [[name, value, curves[name][-1]["step"],
                  value / at_budget["cpu"] if "cpu" in at_budget and value and at_budget["cpu"] else "n/a"]
                 for name, value in at_budget.items()]))
    print(f"best at the budget: {best}")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    path = write_results(args.results, {"settings": settings, "candidates": {n: CANDIDATES[n] for n in curves},
                                          "curves": curves, "at_budget": at_budget, "best": best}, info, args.smoke)
    if not args.smoke:
        plot(curves, args.minutes, path.with_suffix(".png"))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
