"""A quiet console: TensorFlow's known-benign C++ start-up lines are gone from real processes (a stage
with a Beam worker process), and every other line, errors included, still shows."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from pipeline.quiet import BENIGN_PATTERNS, MARKER_ENV, NO_GPU_PATTERNS
from tests.conftest import REPO_ROOT, harmonic_tone, write_audio

BENIGN = re.compile(rb"absl::InitializeLog|oneDNN custom operations|Could not find cuda drivers|failed call to cuInit")
TF_PROCESS = ("import pipeline, os, sys, tensorflow as tf; tf.config.list_physical_devices(); print(tf.zeros(2).numpy()); "
              "os.write(2, b'E0000 00:00:1.0 1 other_op.cc:7] a genuine error from C++\\n'); "
              "print('a genuine Python warning', file=sys.stderr); raise SystemExit('a genuine failure')")


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != MARKER_ENV}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a plain shell: pipeline.compat sets it
    return {**env, **extra}


def _run(cmd, cwd, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=timeout)


def test_tensorflow_start_up_lines_are_dropped_and_genuine_errors_kept(tmp_path):
    unfiltered = _run([sys.executable, "-c", TF_PROCESS], REPO_ROOT, _env(**{MARKER_ENV: "off"}))
    filtered = _run([sys.executable, "-c", TF_PROCESS], REPO_ROOT, _env())
    # without the filter the lines are really there (so their absence below means something) ...
    assert len(BENIGN.findall(unfiltered.stderr)) >= 3, unfiltered.stderr.decode()[-2000:]
    # ... with it they are gone, and nothing else is
    assert not BENIGN.search(filtered.stderr), filtered.stderr.decode()
    for out in (unfiltered, filtered):
        assert out.returncode == 1 and out.stdout.strip() == b"[0. 0.]"
        for genuine in (b"E0000 00:00:1.0 1 other_op.cc:7] a genuine error from C++", b"a genuine Python warning",
                        b"a genuine failure"):
            assert genuine in out.stderr
    kept = [line for line in unfiltered.stderr.splitlines() if not BENIGN.search(line)]
    assert filtered.stderr.splitlines() == kept


def test_patterns_match_exactly_the_measured_lines():
    benign = re.compile(b"^(?:" + b"|".join(BENIGN_PATTERNS + NO_GPU_PATTERNS) + b")")
    measured = [  # TensorFlow 2.21 on a CPU-only machine
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 00:00:1796166428.284385    6810 port.cc:153] oneDNN custom operations are on. You may see slightly "
        b"different numerical results due to floating-point round-off errors from different computation orders.",
        b"I0000 00:00:1796166428.284684    6810 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
        b"will not be used.",
        b"E0000 00:00:1796166460.659583    7106 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        b"Failed call to cuInit: UNKNOWN ERROR (303)",
    ]
    assert all(benign.match(line) for line in measured)
    for other in (b"E0000 00:00:1796166460.659583    7106 cuda_platform.cc:52] some other CUDA error",
                  b"W0000 00:00:1796166460.659583    7106 port.cc:153] oneDNN custom operations are off",
                  b"WARNING: something else", b"Traceback (most recent call last):"):
        assert not benign.match(other)


def test_a_stage_with_a_beam_worker_process_prints_none_of_them(tmp_path):
    project = tmp_path / "project"
    for i in range(2):
        write_audio(project / "audio" / f"t{i}.wav", harmonic_tone(2.0, 16000, 200.0 + 60 * i, seed=i), 16000)
    write_audio(project / "audio" / "dc.wav", np.full(16000, 0.2, np.float32), 16000)
    params = {"seed": 1, "prepare": {"audio_dir": "audio", "example_secs": 2.0, "eval_fraction": 0.0, "num_shards": 1,
                                     "n_plot_examples": 0, "beam": {"mode": "multi_processing", "num_workers": 1}},
              "tracking": {"enabled": False}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run([sys.executable, "-m", "stages.prepare"], project, _env(PYTHONPATH=str(REPO_ROOT)))
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert not BENIGN.search(out.stderr + out.stdout), out.stderr.decode()
    stderr = out.stderr.decode()
    assert "prepare: t0.wav [0-2 s] -> 1" in stderr  # the Beam worker's own lines pass
    assert "prepare: used t0.wav: 2.00 s" in stderr
    assert "prepare: rejected dc.wav: unpitched" in stderr
    assert Path(project / "data/prepared/report.json").exists()
