"""Helpers shared by the benchmarks: a private corpus, timing, tables and the results file.

Another job may be using the CPUs while a benchmark runs, so absolute seconds are noise: every
figure a benchmark reports is a ratio against a baseline measured in the same run, and the load
average before and after is recorded beside the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pipeline  # noqa: F401  (legacy-Keras switch before anything imports TensorFlow)
from pipeline.config import CorpusParams
from pipeline.corpus.render import render_corpus

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SMOKE_HELP = ("the smallest setting (tiny sizes, one round): proves the benchmark runs end to end and prints "
              "every section (tests/test_bench.py); its figures mean nothing, its results file ends in _smoke")


def parse_args(parser: argparse.ArgumentParser, smoke: dict, argv=None) -> argparse.Namespace:
    """``parser``'s arguments plus ``--smoke``, which makes ``smoke`` the defaults (flags given still win)."""
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**smoke)
    return parser.parse_args(argv)


def render_bench_corpus(out_dir: Path, n_files: int, secs: float, seed: int) -> list[Path]:
    """Our own piano corpus (WAV + ground truth), so the project's data/ is never touched."""
    render_corpus(CorpusParams(n_files=n_files, file_secs=secs), seed, out_dir, progress=False)
    return sorted(out_dir.glob("*.wav"))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def median(values) -> float:
    return float(statistics.median(values))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
            "commit": commit, "load_average_start": load_average()}


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def run_measurement(module: str, *args: str, what: str, env: dict | None = None) -> dict:
    """Run ``python -m <module> <args>`` in a fresh process (its own peak memory, no shared state) and
    return the JSON object it printed last on stdout."""
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
                          cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def write_results(name: str, payload: dict, info: dict, smoke: bool = False) -> Path:
    """bench/results/<name>.json (``<name>_smoke.json`` for a smoke run, so no smoke run replaces real
    figures); $BENCH_RESULTS_DIR instead of bench/results when set."""
    folder = Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    info = {**info, "load_average_end": load_average(),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = folder / f"{name}{'_smoke' if smoke else ''}.json"
    path.write_text(json.dumps({"machine": info, **payload}, indent=2) + "\n")
    return path
