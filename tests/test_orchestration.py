"""The pipeline with its real orchestration: `dvc repro` and the Prefect flows, logging to an MLflow server.

One tiny project is built once (the ``tiny_project`` fixture in conftest) by `dvc repro`, as `make run`
does, against an `mlflow server` on 127.0.0.1; the flows then run against a `prefect server` with
its own PREFECT_HOME. Slow by nature (every stage for real, twice orchestrated): a few minutes on 2 cores.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys

import pytest
from services import TINY_KS, dvc, prefect_env, rendered_ks, run, stage_env

pytestmark = pytest.mark.slow

STAGES = ["corpus", "prepare", "train", "extract_z", "anchors", "choose_k", *(f"fit_gmm@{k}" for k in TINY_KS),
          "fit_gmm_recommended", *(f"sample@{k}" for k in TINY_KS), "sample_recommended", "evaluate", "report"]
FLOW_CALL = ("import json, sys; from pipeline.flows.{module} import {name}; "
             "state = {name}(**json.loads(sys.argv[1]), return_state=True); "
             "print('FLOW_RUN_ID', state.state_details.flow_run_id); print('RESULT', json.dumps(state.result()))")


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def runs_of(client, filter_string: str = "") -> list:
    experiment = client.get_experiment_by_name("generative-ddsp")
    return client.search_runs([experiment.experiment_id], filter_string=filter_string, max_results=1000)


def run_flow(project, prefect_api, mlflow_uri, module: str, name: str, **kwargs) -> tuple[str, object]:
    """A flow run in its own process, as a worker starts one; returns (flow run id, result)."""
    home, api_url = prefect_api
    env = stage_env(MLFLOW_TRACKING_URI=mlflow_uri, **prefect_env(home, api_url))
    out = run([sys.executable, "-c", FLOW_CALL.format(module=module, name=name), json.dumps(kwargs)], project, env)
    lines = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith(("FLOW_RUN_ID", "RESULT")))
    return lines["FLOW_RUN_ID"], json.loads(lines["RESULT"])


def task_runs(prefect_api, flow_run_id: str) -> dict[str, object]:
    """Task runs of one flow run by name, read back from the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read():
        with temporary_settings({PREFECT_API_URL: prefect_api[1]}):
            async with get_client() as client:
                return await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {task_run.name: task_run for task_run in asyncio.run(read())}


# --- dvc repro, as `make run` ---------------------------------------------------------------------

def test_dvc_repro_logs_one_parent_with_a_child_per_stage_and_per_k(tiny_project, mlflow_uri):
    client = client_for(mlflow_uri)
    parents = runs_of(client, "tags.pipeline_role = 'parent'")
    assert len(parents) == 1 and parents[0].data.tags["source"] == "dvc"
    children = runs_of(client, f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    names = sorted(run.info.run_name for run in children)
    ks = rendered_ks(tiny_project)
    assert len(ks) == len(TINY_KS) + 1, "the tiny project's recommended K is not listed: it gets its own K run"
    assert names == sorted(["corpus", "prepare", "train", "extract_z", "choose_k", "anchors",
                            *(f"K={k}" for k in ks), "evaluate", "report"])
    assert all(run.info.status == "FINISHED" for run in [*children, *parents])


def test_each_k_run_holds_its_mixture_and_sample_metrics_clips_and_manifest(tiny_project, mlflow_uri):
    client = client_for(mlflow_uri)
    for k in rendered_ks(tiny_project):  # the recommended K's run too
        (run,) = runs_of(client, f"attributes.run_name = 'K={k}'")
        metrics = run.data.metrics
        for name in ("bic", "aic", "train_loglik", "heldout_loglik", "heldout_conditional_loglik", "weight_0",
                     "seed.direct.f0_rpa", "seed.inverse_transform.hnr_db", "seed.temporal.timbre_consistency",
                     "seed.temporal_hold.frechet_clip_to_set", "seed.conditional.valid_share",
                     "stats.seed.temporal.hnr_db.mean"):
            assert name in metrics, f"K={k} lacks {name}"
        assert sum(metrics[f"weight_{i}"] for i in range(k)) == pytest.approx(1.0)
        assert run.data.params["k"] == str(k) and run.data.params["gmm.covariance_type"] == "full"
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"clips", "clips.csv", "manifest.json", "mixture"} <= top
        clips = [a.path for a in client.list_artifacts(run.info.run_id, "clips")]
        # per seed conditioning: 1 direct + K clusters x (inverse_transform, temporal, temporal_hold, conditional)
        assert sum(path.endswith(".wav") for path in clips) == 1 + 4 * k
        assert sum(path.endswith(".png") for path in clips) == 1 + 4 * k


def test_train_run_has_the_loss_curve_held_out_metrics_reconstructions_and_model(tiny_project, mlflow_uri):
    client = client_for(mlflow_uri)
    (train,) = runs_of(client, "attributes.run_name = 'train'")
    history = client.get_metric_history(train.info.run_id, "loss")
    assert [point.step for point in history] == list(range(1, 7))
    for name in ("spectral_distance", "loudness_l1_db", "untrained.spectral_distance"):
        assert name in train.data.metrics
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id, "reconstructions")}
    assert any(p.endswith(".png") for p in artifacts) and any(p.endswith("_resynthesis.wav") for p in artifacts)
    model = {a.path for a in client.list_artifacts(train.info.run_id, "model")}
    assert "model/config.json" in model and "model/weights" in model


# --- the build flow ---------------------------------------------------------------------------------

def test_build_flow_runs_what_changed_in_dvc_order_and_then_everything_is_cached(tiny_project, prefect_api,
                                                                                mlflow_uri):
    flow_run, outcomes = run_flow(tiny_project, prefect_api, mlflow_uri, "build", "build",
                                  project_dir=str(tiny_project), overrides={"report.title": "Changed title"})
    assert list(outcomes) == STAGES, "every stage, in DVC's order"
    assert outcomes == {**{stage: "cached" for stage in STAGES}, "report": "ran"}
    assert "Changed title" in (tiny_project / "reports/index.html").read_text()
    tasks = task_runs(prefect_api, flow_run)
    assert sorted(tasks) == sorted(STAGES)
    assert all(task.state.is_completed() for task in tasks.values())
    assert tasks["report"].state.message == "ran" and tasks["train"].state.message == "cached"

    flow_run, outcomes = run_flow(tiny_project, prefect_api, mlflow_uri, "build", "build",
                                  project_dir=str(tiny_project))
    assert outcomes == {stage: "cached" for stage in STAGES}
    assert {task.state.message for task in task_runs(prefect_api, flow_run).values()} == {"cached"}
    status = run(dvc("status", "--json"), tiny_project, stage_env())
    assert json.loads(status or "{}") == {}, "dvc.lock is true after the flow"


def test_flow_runs_nest_under_a_parent_of_their_own(tiny_project, prefect_api, mlflow_uri):
    client = client_for(mlflow_uri)
    parents = runs_of(client, "tags.pipeline_role = 'parent' and tags.source = 'prefect'")
    assert parents, "the build flow opened a parent run"
    changed = [p for p in parents if runs_of(client, f"tags.mlflow.parentRunId = '{p.info.run_id}'")]
    (parent,) = changed  # only the first flow run ran a stage
    (child,) = runs_of(client, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert child.info.run_name == "report" and parent.data.tags["prefect_flow"] == "build"


# --- the retrain flow, a DVC remote -----------------------------------------------------------------

def test_retrain_pushes_to_the_remote_registers_and_promotes_once(tiny_project, prefect_api, mlflow_uri, tmp_path):
    remote = tmp_path / "remote"
    run(dvc("remote", "add", "-d", "local", str(remote)), tiny_project)
    _, result = run_flow(tiny_project, prefect_api, mlflow_uri, "retrain", "retrain",
                         project_dir=str(tiny_project))
    assert set(result["stages"].values()) == {"cached"}
    registration = result["registration"]
    assert registration["version"] == "1" and registration["promoted"]
    assert "no champion yet" in registration["reason"]
    assert any(remote.rglob("*")), "the flow pushed to the remote"

    client = client_for(mlflow_uri)
    champion = client.get_model_version_by_alias("generative-ddsp-autoencoder", "champion")
    assert str(champion.version) == "1"
    files = {a.path for a in client.list_artifacts(champion.run_id, "model")}
    assert "model/config.json" in files

    _, again = run_flow(tiny_project, prefect_api, mlflow_uri, "retrain", "retrain",
                        project_dir=str(tiny_project))
    assert again["registration"]["version"] is None and again["registration"]["reason"].startswith("unchanged")


def test_outputs_come_back_from_the_local_remote(tiny_project):
    """After the retrain flow's push: outputs and cache deleted, `dvc pull` restores them exactly."""
    before = (tiny_project / "models/autoencoder/config.json").read_bytes()
    for path in ("models/autoencoder", "data/prepared", ".dvc/cache"):
        shutil.rmtree(tiny_project / path)
    run(dvc("pull"), tiny_project, stage_env())
    assert (tiny_project / "models/autoencoder/config.json").read_bytes() == before
    assert json.loads(run(dvc("status", "--json"), tiny_project, stage_env()) or "{}") == {}


def test_unknown_stage_fails_the_flow_before_any_work(tiny_project, prefect_api, mlflow_uri):
    home, api_url = prefect_api
    env = stage_env(MLFLOW_TRACKING_URI=mlflow_uri, **prefect_env(home, api_url))
    call = FLOW_CALL.format(module="build", name="build")
    result = subprocess.run([sys.executable, "-c", call, json.dumps({"project_dir": str(tiny_project),
                                                                     "stages": ["train", "nonexistent"]})],
                            cwd=tiny_project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "stages ['nonexistent'] are not in" in result.stdout + result.stderr
