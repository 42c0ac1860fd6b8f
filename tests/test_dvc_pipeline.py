"""The DVC pipeline as declared: changing the list of K reruns no training and no extraction.

Real DVC on a copy of dvc.yaml/params.yaml and the project's sources: every out is given a stand-in
and committed to dvc.lock, then `dvc status` says which stages a params change would rerun.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

DVC = [sys.executable, "-m", "dvc"]
FILE_SUFFIXES = (".json", ".parquet", ".html", ".csv")


def run(cmd, cwd):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result.stdout


def make_stand_ins(project: Path) -> None:
    """One placeholder per DVC out, as `dvc stage list` resolves them from dvc.yaml + params.yaml."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        for stage in repo.index.stages:
            for out in stage.outs:
                path = Path(out.fs_path)
                if path.suffix in FILE_SUFFIXES:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f"{stage.addressing}\n")
                else:
                    path.mkdir(parents=True, exist_ok=True)
                    (path / "stand_in.txt").write_text(f"{stage.addressing}\n")


def stages_to_run(project: Path) -> set[str]:
    """Stages whose deps, params or outs changed: what `dvc repro` reruns (plus what lies downstream)."""
    return set(json.loads(run(DVC + ["status", "--json"], project) or "{}"))


@pytest.fixture
def project(tmp_path):
    for name in ("dvc.yaml", "params.yaml", "requirements.lock", ".dvcignore"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    for folder in ("pipeline", "stages"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    run(["git", "init", "-q"], tmp_path)
    run(DVC + ["init", "-q"], tmp_path)
    run(DVC + ["config", "core.analytics", "false"], tmp_path)
    make_stand_ins(tmp_path)
    run(DVC + ["commit", "-f", "-q"], tmp_path)
    return tmp_path


def test_changing_only_the_k_list_reruns_no_training_and_no_extraction(project):
    assert stages_to_run(project) == set(), "freshly committed pipeline should be up to date"
    params = yaml.safe_load((project / "params.yaml").read_text())
    old_ks = params["gmm"]["n_components"]
    params["gmm"]["n_components"] = [old_ks[0], old_ks[1], 5]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rerun = stages_to_run(project)
    assert {"fit_gmm@5", "sample@5", "evaluate", "report"} <= rerun
    for stage in ("corpus", "prepare", "train", "extract_z", "choose_k", "anchors", f"fit_gmm@{old_ks[0]}",
                  f"sample@{old_ks[1]}"):
        assert stage not in rerun, f"{stage} would rerun after a change to gmm.n_components only"


def test_a_change_inside_one_subpackage_reruns_only_the_stages_that_use_it(project):
    assert stages_to_run(project) == set()
    ks = yaml.safe_load((project / "params.yaml").read_text())["gmm"]["n_components"]
    reader = project / "pipeline/latent/ztable.py"
    reader.write_text(reader.read_text() + "\n# an edit to the z-table reader\n")
    # `dvc status` names the stages whose own deps changed; `dvc repro` then reruns what lies downstream
    users = {"extract_z", "choose_k", "anchors", *(f"fit_gmm@{k}" for k in ks), *(f"sample@{k}" for k in ks),
             "fit_gmm_recommended", "sample_recommended"}
    assert stages_to_run(project) == users, "the z table's users rerun, the corpus and training do not"

    for name in ("vocab.py", "paths.py", "config.py", "publish.py"):  # infrastructure: reruns nothing more
        path = project / "pipeline" / name
        path.write_text(path.read_text() + "\n# an edit to shared infrastructure\n")
    (project / "pipeline/__pycache__").mkdir(exist_ok=True)
    (project / "pipeline/prior/__pycache__").mkdir(exist_ok=True)
    (project / "pipeline/prior/__pycache__/mixture.cpython-311.pyc").write_bytes(b"bytecode is not a dep")
    assert stages_to_run(project) == users
