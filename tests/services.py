"""Real services for the orchestration tests: an MLflow server, a Prefect server, a tiny DVC project.

Servers bind to 127.0.0.1 on a free port, keep their state in a temporary folder, and are stopped
(with their worker processes) when the fixture ends.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STARTUP_SECS = 240  # a first start migrates a new database: ~25 s idle, far more on 2 busy cores

# A pipeline that runs every stage for real in a few minutes on 2 cores: 4 x 5 s of rendered piano,
# 1 s examples, a tiny model trained 6 steps, two mixtures, every sampling method on one conditioning,
# a K sweep over 1..4 and bootstrap intervals from few resamples.
TINY_TRAIN = dict(decoder_frame_rate=50, z_dims=4, z_time_steps=32, encoder_rnn_channels=16, decoder_rnn_channels=32,
                  decoder_fc_channels=32, decoder_layers=1, n_harmonics=16, n_noise_bands=8, reverb=True,
                  reverb_length=800, fft_sizes=[512, 128], batch_size=4, learning_rate=3e-3, steps=6,
                  checkpoint_every=3, eval_examples=2, n_reconstructions=1, jit_compile=False)
TINY_PARAMS = {
    "seed": 7,
    "corpus": {"n_files": 4, "file_secs": 5.0},
    "prepare": {"example_secs": 1.0, "hop_secs": 1.0, "chunk_secs": 10.0, "eval_fraction": 0.25, "num_shards": 1,
                "n_plot_examples": 1},
    "train": TINY_TRAIN,
    "gmm": {"n_components": [2, 3], "n_init": 1, "max_iter": 100},
    "choose_k": {"k_min": 1, "k_max": 4, "step": 1, "max_frames": 2000},
    "sample": {"conditionings": ["seed"], "batch_size": 8, "n_real": 1, "n_draws": 1, "report_scale_examples": 2},
    "evaluate": {"n_resamples": 100, "kad_max_frames": 200},
    "flows": {"stage_retries": 0},
}
TINY_KS = TINY_PARAMS["gmm"]["n_components"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {STARTUP_SECS} s:\n{log.read_text()[-3000:]}")


@contextmanager
def server(cmd: list[str], health_url: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("w") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(health_url, process, log)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """``mlflow server`` with a SQLite backend and served artifacts; yields its tracking URI."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    with server(cmd, f"http://127.0.0.1:{port}/health", env, folder / "mlflow-server.log"):
        yield f"http://127.0.0.1:{port}"


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    """Prefect's settings for a client or server of the test session's own (to merge into an environment)."""
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_SECS)}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """``prefect server start`` with its own PREFECT_HOME; yields its API URL."""
    port = free_port()
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui",
           "--analytics-off"]
    env = {**os.environ, **prefect_env(home)}
    with server(cmd, f"http://127.0.0.1:{port}/api/health", env, home.parent / "prefect-server.log"):
        yield f"http://127.0.0.1:{port}/api"


def make_tiny_project(root: Path, **sections) -> Path:
    """A git + DVC project with this repo's dvc.yaml and code and the tiny params (plus ``sections``)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("dvc.yaml", "requirements.lock", ".dvcignore"):
        shutil.copy(REPO_ROOT / name, root / name)
    for folder in ("pipeline", "stages"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())  # every key dvc.yaml interpolates
    for overrides in (TINY_PARAMS, sections):
        for name, value in overrides.items():
            params[name] = {**params[name], **value} if isinstance(value, dict) else value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], dvc("init", "-q"), dvc("config", "core.analytics", "false")):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    return root


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def stage_env(**extra: str) -> dict[str, str]:
    """The environment `make run` gives `dvc repro`: this venv's python first on PATH; ``extra`` wins
    over this process's environment (where earlier tests may have left an MLFLOW_TRACKING_URI)."""
    return {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]), **extra}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout
