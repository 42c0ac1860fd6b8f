"""The deployment runs: `make deploy`, a real `prefect worker` on the process pool, flow runs to Completed.

A copy of the built tiny project (the ``tiny_project`` fixture) is deployed (GDDSP_PROJECT_DIR points the
local deployment's working directory at it), so a run takes a minute, not the main job. One run is
triggered by hand with an override (the report stage reruns); one is created by the server's scheduler
from a one-shot schedule set a minute ahead. Both are picked up by the worker, reach Completed with
every stage's state in their logs, and leave ``dvc status`` clean.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from services import BIN, REPO_ROOT, TINY_KS, dvc, prefect_env, run, stage_env, stop_group

pytestmark = pytest.mark.slow

STAGES = ["corpus", "prepare", "train", "extract_z", "anchors", "choose_k", *(f"fit_gmm@{k}" for k in TINY_KS),
          "fit_gmm_recommended", *(f"sample@{k}" for k in TINY_KS), "sample_recommended", "evaluate", "report"]
RUN_DEADLINE_SECS = 900  # a flow run of the tiny copy: worker start-up, a dvc status call per stage, one stage
LOG_DEADLINE_SECS = 60  # for the last log lines of a finished flow run to reach the server
SCHEDULE_LEAD_SECS = 60  # ahead of now: the scheduler (every 5 s here) must see the schedule before it is due


@pytest.fixture(scope="module")
def deployed_copy(tiny_project, prefect_api, mlflow_uri, tmp_path_factory) -> Path:
    """A copy of the built tiny project, deployed by `make deploy` as the local deployment's working directory."""
    home, api_url = prefect_api
    copy = tmp_path_factory.mktemp("deployed") / "project"
    shutil.copytree(tiny_project, copy, symlinks=True)
    env = {**os.environ, **prefect_env(home, api_url), "GDDSP_PROJECT_DIR": str(copy),
           "MLFLOW_TRACKING_URI": mlflow_uri}
    run(["make", "--no-print-directory", "deploy"], REPO_ROOT, env)
    return copy


@contextlib.contextmanager
def prefect_worker(prefect_api, mlflow_uri: str, log: Path) -> Iterator[subprocess.Popen]:
    """``prefect worker start --pool local-cpu`` in its own process group, stopped at the end."""
    home, api_url = prefect_api
    env = stage_env(MLFLOW_TRACKING_URI=mlflow_uri, **prefect_env(home, api_url),
                    PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="0")
    with log.open("w") as out:
        process = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "local-cpu", "--name",
                                    "test-worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=log.parent)
    try:
        yield process
    finally:
        stop_group(process, 60)


async def _with_client(api_url: str, work):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            return await work(client)


def call(prefect_api, work):
    return asyncio.run(_with_client(prefect_api[1], work))


def wait_final(prefect_api, flow_run_id, worker: subprocess.Popen, log: Path):
    """The flow run once it reached a final state (the worker must stay up meanwhile)."""
    deadline = time.monotonic() + RUN_DEADLINE_SECS
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"the worker exited ({worker.returncode}):\n{log.read_text()[-3000:]}"
        flow_run = call(prefect_api, lambda client: client.read_flow_run(flow_run_id))
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        time.sleep(2)
    raise TimeoutError(f"flow run {flow_run_id} not final after {RUN_DEADLINE_SECS} s:\n{log.read_text()[-3000:]}")


def wait_scheduled_run(prefect_api, deployment_id, expected: datetime):
    """The run the server's scheduler created for ``expected`` (None if it has not yet)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + SCHEDULE_LEAD_SECS + 60
    while time.monotonic() < deadline:
        runs = call(prefect_api, lambda client: client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))))
        scheduled = [r for r in runs if r.auto_scheduled and r.expected_start_time == expected]
        if scheduled:
            return scheduled[0]
        time.sleep(2)
    raise TimeoutError(f"the scheduler created no run for {expected.isoformat()}")


def logs_of(prefect_api, flow_run_id) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read(client):
        logs, offset = [], 0
        while batch := await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                                              limit=200, offset=offset):
            logs += batch
            offset += len(batch)
        return [log.message for log in logs]
    return call(prefect_api, read)


def task_states(prefect_api, flow_run_id) -> dict[str, object]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = call(prefect_api, lambda client: client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))))
    return {task_run.name: task_run.state for task_run in runs}


def assert_completed_with_stage_states(prefect_api, flow_run, expected: dict[str, str], project: Path) -> None:
    assert flow_run.state.is_completed(), f"{flow_run.name}: {flow_run.state}"
    states = task_states(prefect_api, flow_run.id)
    assert {name: (state.type.value, state.message) for name, state in states.items()} == {
        name: ("COMPLETED", outcome) for name, outcome in expected.items()}
    ran = [stage for stage, outcome in expected.items() if outcome == "ran"]
    summary = f"ran {len(ran)} stage(s){': ' + ', '.join(ran) if ran else ''}"
    # the worker's log handler ships records in batches, so the flow's last lines may reach the server
    # a moment after its final state does
    deadline = time.monotonic() + LOG_DEADLINE_SECS
    while summary not in (logs := "\n".join(logs_of(prefect_api, flow_run.id))) and time.monotonic() < deadline:
        time.sleep(1)
    for stage, outcome in expected.items():
        if outcome == "cached":
            assert f"stage {stage}: cached" in logs, f"no cached line for {stage} in the flow run's logs"
    assert summary in logs, f"no summary line {summary!r} in the flow run's logs"
    assert json.loads(run(dvc("status", "--json"), project, stage_env()) or "{}") == {}, "dvc status is clean"


def test_worker_runs_a_triggered_and_a_scheduled_build_local_to_completed(deployed_copy, prefect_api, mlflow_uri,
                                                                         tmp_path):
    from prefect.client.schemas.schedules import RRuleSchedule

    deployment = call(prefect_api, lambda client: client.read_deployment_by_name("build/build-local"))
    (pull,) = deployment.pull_steps
    assert pull["prefect.deployments.steps.set_working_directory"]["directory"] == str(deployed_copy)
    log = tmp_path / "worker.log"
    with prefect_worker(prefect_api, mlflow_uri, log) as worker:
        # by hand, with an override: the report stage reruns on the copy, the rest is cached
        triggered = call(prefect_api, lambda client: client.create_flow_run_from_deployment(
            deployment.id, parameters={"overrides": {"report.title": "Run by the worker"}}))
        triggered = wait_final(prefect_api, triggered.id, worker, log)
        assert_completed_with_stage_states(prefect_api, triggered,
                                           {**{stage: "cached" for stage in STAGES}, "report": "ran"}, deployed_copy)
        assert "Run by the worker" in (deployed_copy / "reports/index.html").read_text()
        assert "Run by the worker" not in (REPO_ROOT / "params.yaml").read_text(), "ran in the copy, not here"

        # by the server's scheduler: a one-shot schedule a minute ahead
        due = (datetime.now(timezone.utc) + timedelta(seconds=SCHEDULE_LEAD_SECS)).replace(microsecond=0)
        rrule = f"DTSTART:{due:%Y%m%dT%H%M%S}\nRRULE:FREQ=MINUTELY;COUNT=1"
        call(prefect_api, lambda client: client.create_deployment_schedules(
            deployment.id, [(RRuleSchedule(rrule=rrule, timezone="UTC"), True)]))
        scheduled = wait_scheduled_run(prefect_api, deployment.id, due)
        scheduled = wait_final(prefect_api, scheduled.id, worker, log)
        assert_completed_with_stage_states(prefect_api, scheduled, {stage: "cached" for stage in STAGES},
                                           deployed_copy)
        assert scheduled.start_time >= due, "the worker started the scheduled run when it was due, not before"
