"""Real services for the orchestration tests: an MLflow server, a Prefect server, a tiny DVC project.

Servers bind to 127.0.0.1 on a free port, keep their state in a temporary folder, and are stopped
(with their worker processes) when the fixture ends.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
RECOMMENDED_STAGES = ["fit_gmm_recommended", "sample_recommended"]


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


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM a process started with ``start_new_session`` and its children; SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def server(cmd: list[str], health_url: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("w") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(health_url, process, log)
        yield process
    finally:
        stop_group(process)


@contextmanager
def mlflow_server(folder: Path, backend_uri: str | None = None) -> Iterator[str]:
    """``mlflow server`` on ``backend_uri`` (default: SQLite in ``folder``) with proxied artifacts
    (``--artifacts-destination``: clients up- and download through the server); yields its tracking URI."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    backend_uri = backend_uri or f"sqlite:///{folder / 'mlflow.db'}"
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend_uri,
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
    # the scheduler looks for due schedules every few seconds (default 60), so a schedule set a minute
    # ahead gets its run in time (tests/test_worker.py)
    env = {**os.environ, **prefect_env(home), "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}
    with server(cmd, f"http://127.0.0.1:{port}/api/health", env, home.parent / "prefect-server.log"):
        yield f"http://127.0.0.1:{port}/api"


def make_tiny_project(root: Path, **sections) -> Path:
    """A git + DVC project with this repo's dvc.yaml and code and the tiny params (plus ``sections``).

    Its ``.venv`` links to the venv running the tests, as a checkout's own .venv: dvc.yaml's stage
    commands run ``.venv/bin/python``, whatever is on PATH.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    (root / ".gitignore").write_text(".venv\n")
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


def foreign_python_dir() -> Path:
    """A folder whose ``python`` is not this venv's (the system interpreter, without the project's
    packages): first on PATH, it stands for a shell where the venv is not activated."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"gddsp-foreign-python-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    shim = folder / "python"
    if not shim.exists():  # written whole, then renamed: a parallel test worker never runs half a shim
        system = shutil.which("python3", path=os.defpath) or "/usr/bin/python3"
        partial = folder / f"python.{os.getpid()}"
        partial.write_text(f"#!/bin/sh\nexec {system} -I \"$@\"\n")
        partial.chmod(0o755)
        os.replace(partial, shim)
    return folder


def stage_env(**extra: str) -> dict[str, str]:
    """A shell where the venv is NOT activated: its bin folder is off PATH and ``python`` is another
    interpreter, so commands work only if they name the venv themselves (as the README's and
    dvc.yaml's do). ``extra`` wins over this process's environment (where earlier tests may have left
    an MLFLOW_TRACKING_URI)."""
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != BIN.resolve()]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    return {**env, "PATH": os.pathsep.join([str(foreign_python_dir()), *path]), **extra}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


# --- PostgreSQL (Debian's packages; .ci/run installs them) ----------------------------------------

PG_USER = "nobody"  # initdb and postgres refuse to run as root: as root, the tests run them as this account


def postgres_bin() -> Path | None:
    """The folder of Debian's ``initdb`` and ``postgres`` (the newest major version installed), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _as_server_user() -> dict:
    """Popen arguments that drop root to PG_USER (nothing when the tests are not root)."""
    if os.geteuid() != 0:
        return {}
    import pwd

    account = pwd.getpwnam(PG_USER)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def wait_postgres(dsn: str, process: subprocess.Popen, log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + STARTUP_SECS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with psycopg.connect(dsn, connect_timeout=5):
                return
        except psycopg.OperationalError:
            time.sleep(0.3)
    raise TimeoutError(f"postgres not accepting connections after {STARTUP_SECS} s:\n{log.read_text()[-3000:]}")


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1 (no Unix socket), data in a temporary folder that the
    server's account owns; yields the SQLAlchemy URI of its database ``mlflow``. Stopped (fast shutdown)
    and removed at the end."""
    import psycopg

    # not under pytest's tmp_path: as root that folder is closed to the unprivileged server account
    root = Path(tempfile.mkdtemp(prefix="gddsp-postgres-"))
    drop = _as_server_user()
    if drop:
        os.chown(root, drop["user"], drop["group"])
    data, log = root / "data", root / "postgres.log"
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, timeout=STARTUP_SECS, cwd=root, **drop)
        port = free_port()
        with log.open("w") as out:
            if drop:
                os.chown(log, drop["user"], drop["group"])
            process = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                                        "-k", "", "-c", "fsync=off"], stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=root, **drop)
        try:
            admin = f"postgresql://mlflow@127.0.0.1:{port}/postgres"
            wait_postgres(admin, process, log)
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute("CREATE DATABASE mlflow")
            yield f"postgresql+psycopg://mlflow@127.0.0.1:{port}/mlflow"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)  # fast shutdown: SIGTERM would wait for clients
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def out_files(project: Path) -> dict[str, Path]:
    """Every file of every DVC out of ``project``, by its path in the project."""
    from dvc.repo import Repo

    files = {}
    with Repo(str(project)) as repo:
        for stage in repo.index.stages:
            for out in stage.outs:
                files.update(files_under(project, Path(out.fs_path)))
    return files


def files_under(project: Path, path: Path) -> dict[str, Path]:
    """The file ``path`` or the files in folder ``path``, by their path in ``project``."""
    found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {file.relative_to(project).as_posix(): file for file in found}


def out_digests(project: Path) -> dict[str, str]:
    """The sha256 of every file of ``project``'s DVC outs."""
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in out_files(project).items()}


def rendered_ks(project: Path) -> list[int]:
    """The Ks a built project rendered: the listed ones plus choose_k's K when it is not listed."""
    from pipeline.evaluation.aggregate import rendered_mixtures

    listed = yaml.safe_load((project / "params.yaml").read_text())["gmm"]["n_components"]
    return list(rendered_mixtures(project / "metrics" / "gmm", listed))


def samples_folder(project: Path, k: int) -> Path:
    """Where a built project's clips of K are: samples/k<K>, or samples/recommended for an unlisted recommended K."""
    from pipeline.evaluation.aggregate import rendered_mixtures

    listed = yaml.safe_load((project / "params.yaml").read_text())["gmm"]["n_components"]
    return project / "samples" / rendered_mixtures(project / "metrics" / "gmm", listed)[k]
