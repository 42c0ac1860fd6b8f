"""DVC as the flows use it: the stage order read from dvc.yaml, and one stage run through DVC.

DVC owns the DAG and the caching; nothing here restates either. Stages run as ``dvc repro
--single-item <stage>`` subprocesses so ``dvc.lock`` stays true, and a stage counts as *cached*
when ``dvc status`` finds nothing changed for it (deps, params and outs as locked).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Failures worth another try: DVC's lock held by another process, a worker killed by a signal
# (the OOM killer, a pre-empted node). A stage that fails on its own exits with a plain error code.
TRANSIENT_OUTPUT = re.compile(r"Unable to acquire lock|is busy|Connection (refused|reset)|Temporary failure")


class StageFailed(RuntimeError):
    """``dvc repro`` of one stage failed; ``transient`` says whether a retry may help."""

    def __init__(self, stage: str, returncode: int, tail: str):
        self.stage, self.returncode = stage, returncode
        self.transient = returncode < 0 or bool(TRANSIENT_OUTPUT.search(tail))
        kind = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
        super().__init__(f"stage {stage!r} failed ({kind}):\n{tail}")


@dataclass(frozen=True)
class StageResult:
    stage: str
    outcome: str  # "cached" | "ran"
    seconds: float


def _stage_sort_key(name: str) -> tuple:
    base, _, item = name.partition("@")
    return (base, int(item) if item.isdigit() else 0, item)


def stage_order(project: Path) -> list[str]:
    """Every stage of ``dvc.yaml`` (matrix items expanded) in an order DVC would run them."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        names = {stage: stage.addressing for stage in graph.nodes}
        order = nx.lexicographical_topological_sort(graph.reverse(), key=lambda s: _stage_sort_key(names[s]))
        return [names[stage] for stage in order]


def dvc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def stage_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The stages' environment: this process's, progress bars throttled for logs, plus ``extra``.
    PATH needs no venv: dvc.yaml's commands name the project's ``.venv/bin/python`` themselves."""
    env = dict(os.environ)
    env.setdefault("TQDM_MININTERVAL", "15")
    env.update(extra or {})
    return env


def is_up_to_date(project: Path, stage: str, env: dict[str, str]) -> bool:
    result = subprocess.run(dvc_command("status", "--json", stage), cwd=project, env=env,
                            capture_output=True, text=True)
    if result.returncode:
        raise StageFailed(stage, result.returncode, (result.stdout + result.stderr)[-4000:])
    return not json.loads(result.stdout or "{}")


def run_stage(project: Path, stage: str, env: dict[str, str], log: Callable[[str], None]) -> str:
    """Bring one stage up to date through DVC; returns "cached" or "ran". Output goes to ``log``."""
    if is_up_to_date(project, stage, env):
        log(f"stage {stage}: cached (deps, params and outs match dvc.lock)")
        return "cached"
    tail: list[str] = []
    process = subprocess.Popen(dvc_command("repro", "--single-item", stage), cwd=project, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in _lines(process.stdout):
        log(line)
        tail = (tail + [line])[-40:]
    if process.wait():
        raise StageFailed(stage, process.returncode, "\n".join(tail))
    return "ran"


def _lines(stream):
    """Lines of a byte stream, splitting on carriage returns too (progress bars redraw with ``\\r``)."""
    buffer = b""
    while chunk := stream.read1(65536):
        buffer += chunk
        *complete, buffer = re.split(rb"[\r\n]", buffer)
        for line in complete:
            if line.strip():
                yield line.decode(errors="replace").rstrip()
    if buffer.strip():
        yield buffer.decode(errors="replace").rstrip()


def remotes(project: Path) -> list[str]:
    result = subprocess.run(dvc_command("remote", "list"), cwd=project, capture_output=True, text=True, check=True)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def transfer(project: Path, direction: str, env: dict[str, str], log: Callable[[str], None]) -> None:
    """``dvc pull`` or ``dvc push`` of every stage's outs (outs missing from the remote are skipped on pull)."""
    args = ["pull", "--allow-missing"] if direction == "pull" else ["push"]
    result = subprocess.run(dvc_command(*args), cwd=project, env=env, capture_output=True, text=True)
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip():
            log(line)
    if result.returncode:
        raise StageFailed(f"dvc {direction}", result.returncode, (result.stdout + result.stderr)[-4000:])
