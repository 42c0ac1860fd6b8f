"""prefect.yaml deploys: both work pools and both deployments, read back through Prefect's client."""
from __future__ import annotations

import asyncio
import json
import os

import pytest
from services import REPO_ROOT, prefect_env, run

pytestmark = pytest.mark.slow


async def read_back(api_url: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            deployments = {d.name: d for d in await client.read_deployments()}
            pools = {name: await client.read_work_pool(name) for name in ("gpu-k8s", "local-cpu")}
            flows = {d.name: (await client.read_flow(d.flow_id)).name for d in deployments.values()}
            return deployments, pools, flows


def test_make_deploy_creates_the_gpu_pool_and_the_nightly_and_local_deployments(prefect_api):
    home, api_url = prefect_api
    env = {**os.environ, **prefect_env(home, api_url), "GDDSP_IMAGE": "registry.example/generative-ddsp:test",
           "MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
    run(["make", "--no-print-directory", "deploy"], REPO_ROOT, env)
    deployments, pools, flows = asyncio.run(read_back(api_url))

    nightly = deployments["retrain-nightly-gpu"]
    assert flows["retrain-nightly-gpu"] == "retrain"
    (schedule,) = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == ("0 2 * * *", "UTC", True)
    assert nightly.work_pool_name == "gpu-k8s"
    assert nightly.job_variables["image"] == "registry.example/generative-ddsp:test"
    assert nightly.job_variables["gpu_count"] == 1
    assert nightly.job_variables["env"] == {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
    assert nightly.parameters["overrides"] == {"train.preset": "paper"}

    gpu = pools["gpu-k8s"]
    assert gpu.type == "kubernetes"
    container = gpu.base_job_template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"][
        "containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert gpu.base_job_template["variables"]["properties"]["gpu_count"]["default"] == 1

    local = deployments["build-local"]
    assert flows["build-local"] == "build" and local.work_pool_name == "local-cpu"
    assert pools["local-cpu"].type == "process"
    assert not local.schedules
    assert json.loads(json.dumps(local.parameters)) == {"project_dir": "."}
