"""The README's and params.yaml's commands, verbatim, in a fresh clone of the tiny project, from a shell
where the venv is not activated and ``python`` is another interpreter (tests/services.stage_env).

Each command is classified below; a command added to the README or params.yaml without a class fails
the first test. Commands that would train for thousands of steps are queued instead (``--queue``
appended, then the queue emptied): DVC applies the ``-S`` overrides to params.yaml exactly as a run
would, so a key missing there fails as before ("Key ... is not in struct"), but nothing trains.
"""
from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from services import REPO_ROOT, make_tiny_project, prefect_env, stage_env, stop_group

pytestmark = pytest.mark.slow

RUN = [  # in this order: each may use what the previous ones built
    ".venv/bin/dvc repro",
    ".venv/bin/dvc metrics show",
    ".venv/bin/dvc plots show",
    ".venv/bin/gddsp --help",
    ".venv/bin/dvc exp run -S prepare.f0.method=pyin",
    ".venv/bin/python -m pipeline.flows.build",
]
QUEUED = [".venv/bin/dvc exp run -S train.steps=5000",
          ".venv/bin/dvc exp run -S train.preset=paper -S train.batch_size=8",
          # a scheduler this machine does not have: queued, so DVC checks the keys but nothing connects
          ".venv/bin/dvc exp run -S prepare.beam.runner=dask -S prepare.beam.dask.address=tcp://scheduler:8786"]
SERVER = [".venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1"]
SKIPPED = {
    ".venv/bin/dvc exp run -S prepare.audio_dir=/path/to/my/cello": "placeholder path",
    ".venv/bin/gddsp generate --k 8 --cluster 3 --method temporal --midi tune.mid --out tune.wav":
        "placeholder path (tune.mid); the tiny project has no K=8",
    ".venv/bin/gddsp generate --k 8 --cluster 3 --audio my_singing.wav --out sung.wav":
        "placeholder path (my_singing.wav); the tiny project has no K=8",
    ".venv/bin/gddsp generate --k 8 --method direct --f0-hz 220 --loudness-db -30 --secs 4 --out tone.wav":
        "the tiny project has no K=8 (tests/test_generation.py and test_longform.py run generate)",
    ".venv/bin/python": "not a command (the interpreter the stages name)",
    ".venv/bin/python -m pipeline.flows.retrain": "registers and promotes models: tests/test_orchestration.py runs it",
    ".venv/bin/prefect server start --host 127.0.0.1": "a Prefect server of its own (deployment section)",
    ".venv/bin/prefect worker start --pool local-cpu": "needs `make deploy` on a Prefect server first",
    ".venv/bin/prefect deployment run build/build-local": "needs `make deploy` on a Prefect server first",
    '.venv/bin/prefect deployment schedule create build/build-local --cron "0 * * * *"':
        "needs `make deploy` on a Prefect server first (tests/test_worker.py runs a scheduled deployment)",
    ".venv/bin/pip install boto3": "installs from the package registry (the S3 recipe for a team's MLflow)",
    ".venv/bin/mlflow server --host 0.0.0.0 --port 5000 \\": "a team's server on PostgreSQL + S3 "
        "(tests/test_mlflow_postgres.py runs one on 127.0.0.1)",
}
COMMAND = re.compile(r"(?:^|`)\s*(\.venv/bin/[^`#\n]*?)\s*(?=#|`|$)")
# TensorFlow's start-up lines, Beam's import-time apitools warning, a new MLflow SQLite store's migration notes
LIBRARY_NOISE = re.compile(r"absl::InitializeLog|oneDNN custom operations|Could not find cuda drivers|failed call to cuInit"
                           r"|apitools not found|INFO mlflow\.store")


def documented_commands() -> list[str]:
    found = []
    for name in ("README.md", "params.yaml"):
        for line in (REPO_ROOT / name).read_text().splitlines():
            found += [m.group(1) for m in COMMAND.finditer(line)]
    return found


def shell(command: str, cwd: Path, env: dict[str, str], timeout: float = 1800) -> str:
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`{command}` failed ({result.returncode}):\n{output[-5000:]}"
    assert not LIBRARY_NOISE.search(output), f"`{command}` printed library noise:\n{output[-3000:]}"
    return output


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The tiny project as a fresh clone: committed to git, its .venv beside it, a plain shell."""
    root = make_tiny_project(tmp_path_factory.mktemp("clone") / "project")
    env = stage_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@localhost", GIT_COMMITTER_NAME="t",
                    GIT_COMMITTER_EMAIL="t@localhost", **prefect_env(tmp_path_factory.mktemp("prefect") / "home"))
    env.pop("MLFLOW_TRACKING_URI", None)  # the README's default: sqlite:///mlflow.db in the project
    env.pop("PREFECT_API_URL", None)      # the flows start a temporary Prefect server
    env.pop("GDDSP_STDERR_FILTER", None)
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "tiny project"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True, timeout=60)
    assert subprocess.run(["bash", "-c", "python -c 'import pipeline'"], cwd=REPO_ROOT, env=env,
                          capture_output=True, timeout=60).returncode != 0, "the shell's python is the venv's"
    return root, env


def test_every_documented_command_is_classified():
    unclassified = set(documented_commands()) - set(RUN) - set(QUEUED) - set(SERVER) - set(SKIPPED)
    assert not unclassified, f"README/params.yaml commands the test neither runs nor skips: {unclassified}"


def test_documented_commands_work_verbatim(clone):
    root, env = clone
    outputs = {command: shell(command, root, env) for command in RUN}
    assert "prepare: used" in outputs[".venv/bin/dvc repro"]
    assert "Ran experiment" in outputs[".venv/bin/dvc exp run -S prepare.f0.method=pyin"]
    assert yaml.safe_load((root / "params.yaml").read_text())["prepare"]["f0"]["method"] == "pyin"
    assert '"f0_method": "pyin"' in (root / "data/prepared/spec.json").read_text()
    assert all(command in outputs[".venv/bin/gddsp --help"] for command in ("generate", "export", "stream"))
    assert "cached" in outputs[".venv/bin/python -m pipeline.flows.build"]


def test_every_override_key_and_the_training_examples_are_accepted(clone):
    """-S on every key params.yaml has (each set to its own value, null included), then the documented
    training overrides: DVC accepts each (``--queue``: nothing trains)."""
    root, env = clone
    params = yaml.safe_load((root / "params.yaml").read_text())

    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    def flow(value) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).replace("\n...\n", "").strip()

    overrides = " ".join(f"-S {shlex.quote(f'{key}={flow(value)}')}" for key, value in leaves(params))
    assert "-S train.steps=6" in overrides and "-S train.keep_checkpoints=3" in overrides
    try:
        for command in [f".venv/bin/dvc exp run {overrides}", *QUEUED]:
            output = shell(f"{command} --queue", root, env, timeout=600)
            assert "Queued experiment" in output and "is not in struct" not in output, output
    finally:
        shell(".venv/bin/dvc queue remove --queued", root, env, timeout=300)


def test_mlflow_ui_serves_the_runs(clone):
    root, env = clone
    has_runs = (root / "mlflow.db").exists()  # after the verbatim commands ran
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 5000)) == 0:
            pytest.skip("port 5000 (mlflow ui's default) is taken on this machine")
    process = subprocess.Popen(["bash", "-c", f"exec {SERVER[0]}"], cwd=root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            with contextlib.suppress(OSError):
                with urllib.request.urlopen("http://127.0.0.1:5000/health", timeout=5) as response:
                    if response.status == 200:
                        break
            time.sleep(0.5)
        else:
            pytest.fail("mlflow ui did not answer within 180 s")
        request = urllib.request.Request("http://127.0.0.1:5000/api/2.0/mlflow/experiments/search",
                                         data=b'{"max_results": 10}', headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            assert b"experiments" in body and (b"generative-ddsp" in body or not has_runs)
    finally:
        stop_group(process)
        shutil.rmtree(root / "mlruns" / ".trash", ignore_errors=True)
