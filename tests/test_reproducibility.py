"""kill -9 of every stage, and two builds from scratch giving the same outputs (real DVC, tiny project).

Kills: each stage's process is stopped at the worst moment, its work written into the staging
``.partial`` sibling of its out and not yet renamed into place, and killed there with SIGKILL from
this process. A ``sitecustomize`` put on the stage's PYTHONPATH (test-only; only the stage command
named in ``KILL_ENV`` is affected, not DVC) makes the stage write its pid and SIGSTOP itself just
before it renames a ``.partial`` path, so the kill lands at that point on every run instead of
racing a fast stage. Training is also killed mid-run at a random step in tests/test_model.py.
A rerun (after a params change) killed the same way leaves no new output: DVC has removed the
previous outs before the stage started, dvc.lock still names them and `dvc checkout` restores them.

Determinism: the project built through those kills and reruns and a second project built by one
plain ``dvc repro`` hold the same bytes in every DVC out, training and sampling included. Wall-clock
measurements (``pipeline.vocab.WALL_CLOCK_FIELDS``) never enter a DVC out, which the test checks too.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from services import dvc, files_under, make_tiny_project, out_files, run, stage_env

from pipeline.vocab import WALL_CLOCK_FIELDS

pytestmark = pytest.mark.slow

KILL_ENV = "GDDSP_TEST_KILL_STAGE"  # the stage command (argv after the interpreter) to stop and kill
OUTS_ENV = "GDDSP_TEST_KILL_OUTS"  # the stage's DVC outs: publishing one of them is where the kill lands
PID_FILE = "killed-stage.pid"
SECTIONS = {"tracking": {"enabled": False}}  # tracking outages are tested in test_tracking.py
STAGES = ["corpus", "prepare", "train", "extract_z", "choose_k", "anchors", "fit_gmm@2", "sample@2", "evaluate",
          "report"]
STAGE_DEADLINE_SECS = 900

SITECUSTOMIZE = f'''\
import os, signal, sys

if os.environ.get({KILL_ENV!r}, "").split() == sys.orig_argv[1:]:
    _replace, _rename = os.replace, os.rename
    _outs = [os.path.abspath(p) for p in os.environ.get({OUTS_ENV!r}, "").split(os.pathsep) if p]

    def _stop_before_publishing(src, dst):
        # only a rename that publishes one of the stage's outs (not, say, a checkpoint's bookkeeping)
        target = os.path.abspath(dst)
        if str(src).endswith(".partial") and any(target == out or target.startswith(out + os.sep) for out in _outs):
            with open({PID_FILE!r}, "w") as handle:
                handle.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGSTOP)  # the test kills us here with SIGKILL

    def replace(src, dst, *args, **kwargs):
        _stop_before_publishing(src, dst)
        return _replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        _stop_before_publishing(src, dst)
        return _rename(src, dst, *args, **kwargs)

    os.replace, os.rename = replace, rename
'''


def stage_command(stage: str) -> list[str]:
    name, _, k = stage.partition("@")
    return ["-m", f"stages.{name}"] + (["--k", k] if k else [])


def stage_outs(project: Path, stage: str) -> list[Path]:
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        (found,) = [s for s in repo.index.stages if s.name == stage]
        return [Path(out.fs_path) for out in found.outs]


def locked_stages(project: Path) -> set[str]:
    lock = project / "dvc.lock"
    if not lock.exists():
        return set()
    return set(yaml.safe_load(lock.read_text())["stages"])  # matrix stages as "fit_gmm@2"


def kill_at_publication(project: Path, stage: str, hook: Path) -> str:
    """`dvc repro <stage>` (upstream stages run normally); the stage itself is SIGKILLed before it publishes."""
    pid_file = project / PID_FILE
    pid_file.unlink(missing_ok=True)
    outs = os.pathsep.join(str(path) for path in stage_outs(project, stage))
    env = stage_env(**{KILL_ENV: " ".join(stage_command(stage)), OUTS_ENV: outs, "PYTHONPATH": str(hook)})
    log = project / f"kill-{stage}.log"
    with log.open("w") as out:
        process = subprocess.Popen(dvc("repro", stage), cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + STAGE_DEADLINE_SECS
        while not pid_file.exists() or not pid_file.read_text():
            assert process.poll() is None, f"dvc repro {stage} ended without reaching publication:\n" \
                                           f"{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{stage} did not reach publication in {STAGE_DEADLINE_SECS} s"
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        while _state(pid) != "T":  # stopped itself
            assert time.monotonic() < deadline, f"{stage} (pid {pid}) did not stop"
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        assert process.wait(timeout=120) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return log.read_text()


def _state(pid: int) -> str:
    """The process state letter from /proc (R, S, T = stopped, Z ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.fixture(scope="module")
def killed_project(tmp_path_factory) -> Path:
    """A tiny project built stage by stage, each stage killed -9 once before publishing and rerun by DVC."""
    root = tmp_path_factory.mktemp("killed")
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    project = make_tiny_project(root / "project", **SECTIONS)
    outcomes = {}
    for stage in STAGES:
        output = kill_at_publication(project, stage, hook)
        outs = stage_outs(project, stage)
        outcomes[stage] = {
            "published": [str(p.relative_to(project)) for p in outs if p.exists()],
            "staged": any(p.with_name(p.name + ".partial").exists() for p in outs),
            "locked": stage in locked_stages(project),
            "log": output[-1500:]}
        run(dvc("repro", stage), project, stage_env())
        assert stage in locked_stages(project), f"dvc repro {stage} left no dvc.lock entry"
        assert all(p.exists() for p in outs) and not any(p.with_name(p.name + ".partial").exists() for p in outs)
    return project, outcomes


def test_kill_9_of_any_stage_leaves_no_complete_looking_output_and_dvc_repro_then_completes(killed_project):
    project, outcomes = killed_project
    assert list(outcomes) == STAGES
    for stage, outcome in outcomes.items():
        assert outcome["staged"], f"{stage} was not killed mid-publication:\n{outcome['log']}"
        assert outcome["published"] == [], f"{stage} killed -9 left complete-looking outputs {outcome['published']}"
        assert not outcome["locked"], f"{stage} killed -9 has a dvc.lock entry"
    status = json.loads(run(dvc("status", "--json"), project, stage_env()) or "{}")
    assert status == {}, f"after the reruns the pipeline is not up to date: {status}"
    run(dvc("repro"), project, stage_env())  # the whole pipeline completes (nothing left to run)


def wall_clock_keys(path: Path) -> set[str]:
    """The wall-clock keys (JSON, at any depth) or columns (CSV) a file holds: none may be in a DVC out."""
    if path.suffix == ".csv":
        header = path.read_text().partition("\n")[0]  # an empty table (no header at all) holds no keys
        return set(next(csv.reader([header]), [])) & set(WALL_CLOCK_FIELDS)
    if path.suffix != ".json":
        return set()
    found, todo = set(), [json.loads(path.read_text())]
    while todo:
        value = todo.pop()
        if isinstance(value, dict):
            found |= set(value) & set(WALL_CLOCK_FIELDS)
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
    return found


def test_two_builds_from_scratch_give_identical_outputs_for_every_stage(killed_project, tiny_build):
    """The session's tiny project, built by one plain `dvc repro` in another process tree (and logging to
    an MLflow server, which must not shape any output), holds the same bytes as the killed build."""
    first, _ = killed_project
    a = out_files(first)
    digests = tiny_build[1]
    assert sorted(a) == sorted(digests)
    assert any(name.startswith("models/autoencoder/") for name in a) and any(name.endswith(".wav") for name in a)
    differing = [name for name in a if hashlib.sha256(a[name].read_bytes()).hexdigest() != digests[name]]
    assert differing == [], f"outputs that differ between two builds: {differing}"
    timed = {name: keys for name, path in a.items() if (keys := wall_clock_keys(path))}
    assert timed == {}, f"wall-clock fields in DVC outputs: {timed}"


def test_kill_9_of_a_rerun_leaves_no_new_output_and_the_previous_version_in_dvcs_cache(tmp_path):
    """A stage rerun after a params change and killed -9 before it publishes. DVC removes a stage's
    outs before it reruns it, so the previous version is not left in place; what the kill must not do
    is leave a new complete-looking output or lock entry: the outs are absent, dvc.lock still names
    the previous run, `dvc checkout` brings that version back whole from the cache, and `dvc repro`
    then publishes the new one."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    project = make_tiny_project(tmp_path / "project", **SECTIONS)
    run(dvc("repro", "corpus"), project, stage_env())
    corpus = project / "data" / "corpus"
    before = {name: path.read_bytes() for name, path in out_files_of(project, "corpus").items()
              if name.startswith("data/corpus/")}
    lock_before = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["corpus"]

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["corpus"]["n_files"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    kill_at_publication(project, "corpus", hook)
    assert (project / "data" / "corpus.partial").exists()
    assert out_files_of(project, "corpus") == {}
    assert yaml.safe_load((project / "dvc.lock").read_text())["stages"]["corpus"] == lock_before

    run(dvc("checkout", "corpus"), project, stage_env())
    assert {name: path.read_bytes() for name, path in out_files_of(project, "corpus").items()
            if name.startswith("data/corpus/")} == before
    run(dvc("repro", "corpus"), project, stage_env())
    assert len((corpus / "manifest.csv").read_text().splitlines()) == 1 + 3
    assert not (project / "data" / "corpus.partial").exists()
    assert json.loads(run(dvc("status", "--json", "corpus"), project, stage_env()) or "{}") == {}


def out_files_of(project: Path, stage: str) -> dict[str, Path]:
    return {name: file for path in stage_outs(project, stage) for name, file in files_under(project, path).items()}
