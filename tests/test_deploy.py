"""prefect.yaml deploys: both work pools and both deployments, read back through Prefect's client."""
from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from services import REPO_ROOT, prefect_env, run

K8S_TEMPLATE = REPO_ROOT / "deploy/k8s-gpu-job-template.json"


async def read_back(api_url: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            deployments = {d.name: d for d in await client.read_deployments()}
            pools = {name: await client.read_work_pool(name) for name in ("gpu-k8s", "local-cpu")}
            flows = {d.name: (await client.read_flow(d.flow_id)).name for d in deployments.values()}
            return deployments, pools, flows


def render_k8s_job(api_url: str, base_job_template: dict, job_variables: dict) -> dict:
    """The Job manifest a Kubernetes worker would submit: Prefect's own templating of the pool's base job
    template with a deployment's job variables (variable defaults first), as every Prefect worker builds
    its job configuration (``BaseJobConfiguration.from_template_and_values``, which asks the server at
    ``api_url`` to resolve block and variable references); no cluster needed."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.base import BaseJobConfiguration

    class KubernetesJob(BaseJobConfiguration):  # the fields prefect-kubernetes' job configuration adds
        job_manifest: dict[str, Any]
        namespace: str

    with temporary_settings({PREFECT_API_URL: api_url}):
        config = asyncio.run(KubernetesJob.from_template_and_values(base_job_template, job_variables))
    return config.job_manifest


def gpu_container(manifest: dict) -> dict:
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.slow
def test_k8s_job_template_renders_a_gpu_request_and_limit_from_its_variable(prefect_api):
    api_url = prefect_api[1]
    template = json.loads(K8S_TEMPLATE.read_text())
    manifest = render_k8s_job(api_url, template, {"image": "registry.example/generative-ddsp:1", "gpu_count": 2,
                                                  "env": {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}})
    container = gpu_container(manifest)
    assert manifest["kind"] == "Job" and container["image"] == "registry.example/generative-ddsp:1"
    # an extended resource: Kubernetes schedules on requests, which must equal the limit
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 2
    assert "cpu" not in resources["requests"], "unset variables leave no empty field"
    assert container["env"] == {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000"}
    # without a value the variable's default, one GPU
    defaults = gpu_container(render_k8s_job(api_url, template, {"image": "x"}))["resources"]
    assert defaults["limits"]["nvidia.com/gpu"] == defaults["requests"]["nvidia.com/gpu"] == 1


@pytest.mark.slow
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
    # what the cluster would be asked for: the server's pool template with the deployment's variables
    rendered = gpu_container(render_k8s_job(api_url, gpu.base_job_template, nightly.job_variables))
    assert rendered["resources"]["limits"]["nvidia.com/gpu"] == rendered["resources"]["requests"]["nvidia.com/gpu"] \
        == 1
    assert rendered["image"] == "registry.example/generative-ddsp:test"

    local = deployments["build-local"]
    assert flows["build-local"] == "build" and local.work_pool_name == "local-cpu"
    assert pools["local-cpu"].type == "process"
    assert not local.schedules
    assert json.loads(json.dumps(local.parameters)) == {"project_dir": "."}
    # the worker runs the flow in the checkout `make deploy` ran in (GDDSP_PROJECT_DIR unset)
    assert local.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}]
