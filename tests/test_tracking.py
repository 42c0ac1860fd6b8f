"""MLflow grouping: one parent per pipeline execution, a child per stage, one shared child per K."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import TrackingParams
from pipeline.tracking.runs import (
    PARENT_ENV,
    PARENT_TAG,
    TrackingError,
    end_pipeline_run,
    k_run,
    stage_run,
    start_pipeline_run,
)

SETTINGS = TrackingParams(experiment="tracking-test")


@pytest.fixture
def store(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    return MlflowClient(uri)


def runs_by_name(client, experiment: str) -> dict[str, list]:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    out: dict[str, list] = {}
    for run in client.search_runs([experiment_id]):
        out.setdefault(run.info.run_name, []).append(run)
    return out


def test_stages_and_k_runs_nest_under_the_callers_parent(store, tmp_path, monkeypatch):
    parent = start_pipeline_run(tmp_path, SETTINGS, source="test")
    monkeypatch.setenv(PARENT_ENV, parent)
    with stage_run("train", tmp_path, SETTINGS) as run:
        run.log_metrics({"spectral_distance": 7.5, "untrained": {"spectral_distance": 30.0}})
        run.log_history([{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}])
    with k_run(4, tmp_path, SETTINGS) as run:  # fit_gmm@4
        run.log_params({"k": 4, "gmm": {"covariance_type": "full"}})
        run.log_metrics({"bic": 100.0})
    with k_run(4, tmp_path, SETTINGS) as run:  # sample@4: same run, more metrics
        run.log_params({"k": 4})
        run.log_metrics({"direct": {"f0_rpa": 0.9, "hnr_db": None}})
    with k_run(8, tmp_path, SETTINGS) as run:
        run.log_metrics({"bic": 90.0})
    end_pipeline_run(tmp_path, SETTINGS, parent)

    runs = runs_by_name(store, SETTINGS.experiment)
    assert sorted(name for name in runs if not name.startswith("pipeline ")) == ["K=4", "K=8", "train"]
    assert len(runs["K=4"]) == 1, "fit_gmm@K and sample@K share one K run"
    k4 = runs["K=4"][0]
    assert k4.data.metrics == {"bic": 100.0, "direct.f0_rpa": 0.9}
    assert k4.data.params == {"k": "4", "gmm.covariance_type": "full"}
    for name in ("K=4", "K=8", "train"):
        assert runs[name][0].data.tags[PARENT_TAG] == parent
        assert runs[name][0].info.status == "FINISHED"
    train = runs["train"][0]
    assert train.data.metrics["untrained.spectral_distance"] == 30.0
    assert [m.value for m in store.get_metric_history(train.info.run_id, "loss")] == [3.0, 2.0]
    assert store.get_run(parent).info.status == "FINISHED"


FAKE_DVC = '''\
import subprocess, sys
for stage in sys.argv[1:]:
    subprocess.run([sys.executable, "-c", {child!r}.format(stage=stage)], check=True)
'''
CHILD = ("from pathlib import Path; from pipeline.config import TrackingParams; "
         "from pipeline.tracking.runs import stage_run; "
         "exec('with stage_run(\"{stage}\", Path(\".\"), TrackingParams(experiment=\"tracking-test\")) as r: "
         "r.log_metrics({{\"x\": 1}})')")


def test_stages_started_by_one_dvc_process_share_a_parent_and_the_next_dvc_starts_another(store, tmp_path):
    """The real process tree: stage processes find their parent run through the ``dvc`` ancestor."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dvc"  # named like DVC's entry point, as `dvc repro` appears in the process table
    fake.write_text(FAKE_DVC.format(child=CHILD))
    for stages in (["prepare", "train"], ["evaluate"]):
        subprocess.run([sys.executable, str(fake), *stages], cwd=tmp_path, check=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    runs = runs_by_name(store, SETTINGS.experiment)
    parents = {name: group for name, group in runs.items() if name.startswith("pipeline")}
    assert sum(len(group) for group in parents.values()) == 2
    by_stage = {name: runs[name][0].data.tags[PARENT_TAG] for name in ("prepare", "train", "evaluate")}
    assert by_stage["prepare"] == by_stage["train"] != by_stage["evaluate"]


def test_unreachable_store_fails_clearly_or_warns(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'missing-dir' / 'nested' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv(PARENT_ENV, raising=False)
    (tmp_path / "missing-dir").write_text("a file where the store's folder should be")
    with pytest.raises(TrackingError, match="MLflow tracking at sqlite:///.*missing-dir.*not usable"):
        with stage_run("prepare", tmp_path, SETTINGS):
            pass
    with stage_run("prepare", tmp_path, SETTINGS.model_copy(update={"on_error": "warn"})) as run:
        run.log_metrics({"x": 1.0})  # a stand-in that logs nothing
    assert "warning: MLflow tracking at" in capsys.readouterr().err


def test_disabled_tracking_touches_no_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with stage_run("prepare", tmp_path, SETTINGS.model_copy(update={"enabled": False})) as run:
        run.log_metrics({"x": 1.0})
    assert not (tmp_path / "mlflow.db").exists()


def test_default_store_is_at_the_project_root_whatever_the_working_directory(tmp_path, monkeypatch):
    from pipeline.tracking.runs import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri(Path("/srv/project"), SETTINGS) == "sqlite:////srv/project/mlflow.db"
    assert tracking_uri(Path("/srv/project"), SETTINGS.model_copy(update={"uri": "http://127.0.0.1:5000"})) == \
        "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert tracking_uri(Path("/srv/project"), SETTINGS) == "http://127.0.0.1:5001"


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_stopped_mlflow_server_fails_the_stage_after_bounded_retries_naming_the_uri(tmp_path):
    """A real ``mlflow server``, started and stopped (connection refused): the corpus stage's outputs are
    complete, it exits with an error naming the URI after ``tracking.max_retries``, or warns and goes on."""
    from services import make_tiny_project, mlflow_server, stage_env

    (tmp_path / "mlflow").mkdir()
    with mlflow_server(tmp_path / "mlflow") as uri:
        pass  # the server answered /health, and is stopped now: its port refuses connections
    project = make_tiny_project(tmp_path / "project", tracking={"max_retries": 1, "timeout_secs": 5})
    env = stage_env(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(project))
    # the deadline is far below MLflow's default retry schedule (7 retries, 2 s doubling backoff: minutes)
    failed = subprocess.run([sys.executable, "-m", "stages.corpus"], check=False, cwd=project, env=env,
                            capture_output=True, text=True, timeout=90)
    assert failed.returncode != 0
    assert f"TrackingError: MLflow tracking at {uri} is not usable" in failed.stderr, failed.stderr[-3000:]
    manifest = (project / "data" / "corpus" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 1 + 4  # header + the tiny corpus's 4 files: the outputs are complete
    assert json.loads((project / "metrics" / "corpus.json").read_text())["n_files"] == 4
    outputs = folder_bytes(project / "data" / "corpus")

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tracking"]["on_error"] = "warn"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    warned = subprocess.run([sys.executable, "-m", "stages.corpus"], check=False, cwd=project, env=env,
                            capture_output=True, text=True, timeout=90)
    assert warned.returncode == 0, warned.stderr[-3000:]
    assert f"warning: MLflow tracking at {uri}" in warned.stderr
    assert folder_bytes(project / "data" / "corpus") == outputs  # same outputs, deterministically
