"""The retrain flow: pull -> build -> evaluate -> register (promote only if better) -> push.

With a DVC remote configured, data and models are pulled first (outs the remote lacks are
skipped) and everything is pushed at the end, so a GPU worker starting from a bare checkout
shares its results. The build flow rebuilds what changed; the new model is registered in MLflow
and the ``champion`` alias moves to it only when it beats the current champion on
``flows.promote_metric`` (see :mod:`pipeline.tracking.registry`); the flow's result and log say which
and why.

    python -m pipeline.flows.retrain
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.config import PARAMS_FILE, Params, apply_overrides, load_params
from pipeline.flows.build import build, parent_run
from pipeline.flows.dvc import remotes, stage_environment, transfer
from pipeline.tracking.registry import folder_digest, register_candidate

TRAIN_METRICS = "metrics/train.json"


@task(name="dvc-transfer", task_run_name="dvc {direction}", cache_policy=NO_CACHE, retries=2,
      retry_delay_seconds=30)
def transfer_task(project_dir: str, direction: str) -> None:
    transfer(Path(project_dir), direction, stage_environment(), get_run_logger().info)


@task(name="held-out-metrics", cache_policy=NO_CACHE)
def heldout_metrics(project_dir: str) -> dict:
    """The trained model's held-out metrics, as the train stage measured them."""
    metrics = json.loads((Path(project_dir) / TRAIN_METRICS).read_text())["trained"]
    get_run_logger().info(f"candidate held-out metrics: {metrics}")
    return metrics


def rescore(project: Path, params: Params):
    """Scores a model folder on the project's current held-out data (same settings as the train stage)."""
    def score(model_dir: Path) -> dict:
        from pipeline.dataset.tfrecord import DatasetSpec
        from pipeline.model.heldout import Evaluator  # TensorFlow loads only when a rescore is needed
        from pipeline.model.store import load_model

        data_dir = project / params.prepare.out_dir
        spec = DatasetSpec.load(data_dir)
        evaluator = Evaluator(data_dir, spec, params.train.resolved().eval_examples,
                              fmin_hz=params.prepare.f0.fmin_hz, fmax_hz=params.prepare.f0.fmax_hz,
                              noise_seed=params.seed)
        return evaluator(load_model(model_dir))
    return score


@task(name="register-model", cache_policy=NO_CACHE)
def register_task(project_dir: str, metrics: dict, parent_run_id: str | None) -> dict:
    logger = get_run_logger()
    project = Path(project_dir)
    params = load_params(project / PARAMS_FILE)
    registration = register_candidate(
        project, params.tracking, params.flows.promote_metric, project / params.train.model_dir, metrics,
        folder_digest(project / params.prepare.out_dir, "eval.tfrecord-*"), parent_run_id,
        rescore(project, params))
    logger.info(f"{params.tracking.registered_model}: {registration.reason}")
    return registration.as_dict()


@flow(name="retrain")
def retrain(project_dir: str = ".", overrides: dict[str, Any] | None = None) -> dict:
    """Pull, rebuild, register the model and promote it if it beats the champion, push.

    ``overrides`` sets params before building (the GPU deployment sets ``train.preset: paper``).
    """
    logger = get_run_logger()
    project = Path(project_dir).resolve()
    params = apply_overrides(project / PARAMS_FILE, overrides) if overrides else load_params(project / PARAMS_FILE)
    has_remote = bool(remotes(project))
    if has_remote:
        transfer_task(str(project), "pull")
    else:
        logger.info("no DVC remote configured: nothing to pull or push")
    with parent_run(project, params) as parent:
        outcomes = build(str(project), parent_run_id=parent)
        registration = register_task(str(project), heldout_metrics(str(project)), parent)
    if has_remote:
        transfer_task(str(project), "push")
    return {"stages": outcomes, "registration": registration}


if __name__ == "__main__":
    retrain()
