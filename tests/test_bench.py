"""Every benchmark runs end to end at its smallest setting (``--smoke``), so none can rot unnoticed.

Each module runs as `make bench` runs it (``python -m bench.<name>``), in a fresh process with a
deadline, writing its results file to a temporary folder. The test checks the figures of every
section were printed, in order (a section prints as it finishes, so a later failure cannot hide an
earlier section), and that the results file holds them. The figures themselves mean nothing here.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from services import REPO_ROOT

pytestmark = pytest.mark.slow

SMOKE_DEADLINE_SECS = 900
# module -> (lines its sections print, in order; results file; keys the results file holds)
BENCHMARKS = {
    "prepare_throughput": (["import cost of a fresh worker process", "ours vs ddsp prepare_tfrecord",
                            "scaling, ours:", "ours, scaling; ratios against multi_processing x1",
                            "ours, runners; ratios against local in_memory x1"],
                           "prepare_throughput_swift_4files_smoke.json", ["import_secs", "compare", "scaling", "runners"]),
    "f0_accuracy": (["=== f0 accuracy"], "f0_accuracy_smoke.json", ["methods"]),
    "train_throughput": (["peak_rss_mb", "examples_per_s", "ours / stock:"], "train_throughput_cpu_b2_smoke.json",
                         ["loops", "speedups"]),
    "preset_curve": (["round 1:", "spectral_distance at 0.02 training minutes", "best at the budget"],
                     "preset_curve_smoke.json", ["curves", "at_budget", "best"]),
    "multi_worker": (["round 1/1 single:", "round 1/1 multi_worker:", "multi_worker (2 workers) / single step time"],
                     "multi_worker_tiny_b4_smoke.json", ["modes", "step_time_ratio"]),
    "extract_z_memory": (["frames_per_s", "x the examples: peak RSS"], "extract_z_memory_cpu_smoke.json",
                         ["runs", "peak_rss_growth"]),
    "generation_speed": (["cpu preset:", "oscillator_bank vs float64", "seconds per call of each stage",
                          "target >= 100x real time"], "generation_speed_smoke.json", ["presets", "target"]),
    "gmm_fit": (["stock (plain sklearn", "K sweep at", "frames sweep at"], "gmm_fit_smoke.json",
                ["stock_vs_ours", "by_k", "by_frames"]),
    "stream_latency": (["offline decode (TF, one thread)", "LiteRT median ms"], "stream_latency_smoke.json",
                       ["offline_rtf", "streaming"]),
}


def test_make_bench_runs_every_benchmark_module():
    modules = {path.stem for path in (REPO_ROOT / "bench").glob("*.py")} - {"__init__", "common"}
    makefile = (REPO_ROOT / "Makefile").read_text()
    bench_target = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"-m bench\.(\w+)", bench_target)) == modules == set(BENCHMARKS)


@pytest.mark.parametrize("module", sorted(BENCHMARKS))
def test_benchmark_smoke_prints_every_section(module, tmp_path):
    sections, results_file, keys = BENCHMARKS[module]
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", f"bench.{module}", "--smoke"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=SMOKE_DEADLINE_SECS)
    assert done.returncode == 0, f"bench.{module} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = done.stdout
    positions = []
    for line in sections:
        assert line in out, f"bench.{module} printed no {line!r}:\n{out[-3000:]}"
        positions.append(out.index(line))
    assert positions == sorted(positions), f"bench.{module}'s sections out of order"
    results = json.loads((tmp_path / results_file).read_text())
    assert results["settings"].get("smoke", True) and all(key in results for key in keys)
    assert not (REPO_ROOT / "bench/results" / results_file).exists(), "a smoke run wrote into bench/results"
