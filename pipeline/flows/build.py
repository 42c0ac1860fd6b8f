"""The build flow: the DVC pipeline stage by stage as Prefect tasks, in DVC's order, through DVC.

Each task runs one stage with ``dvc repro --single-item`` (so ``dvc.lock`` stays true and DVC's
caching decides) and returns ``"cached"`` or ``"ran"``; the stage's output streams into the task's
log. A stage killed by a signal or blocked by DVC's lock is retried; a stage that fails on its own
is not. The flow opens one MLflow parent run and hands its id to every stage, so the runs of one
flow run nest exactly as those of one ``dvc repro``.

    python -m pipeline.flows.build              # a flow run against $PREFECT_API_URL (or a temporary server)
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed, State

from pipeline.config import PARAMS_FILE, apply_overrides, load_params
from pipeline.flows.dvc import StageFailed, run_stage, stage_environment, stage_order
from pipeline.tracking.runs import PARENT_ENV, TrackingError, end_pipeline_run, start_pipeline_run


def _transient(task, task_run, state) -> bool:
    """Retry only failures a second try can fix (see :class:`StageFailed`)."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, StageFailed) and error.transient


@task(name="dvc-stage", task_run_name="{stage}", cache_policy=NO_CACHE, retry_condition_fn=_transient)
def stage_task(project_dir: str, stage: str, parent_run_id: str | None) -> State:
    logger = get_run_logger()
    env = stage_environment({PARENT_ENV: parent_run_id} if parent_run_id else None)
    outcome = run_stage(Path(project_dir), stage, env, logger.info)
    # the outcome as the state's message, so the Prefect UI and API show "cached" or "ran" per stage
    return Completed(message=outcome, data=outcome)


@contextlib.contextmanager
def parent_run(project: Path, params, given: str | None = None) -> Iterator[str | None]:
    """The MLflow parent run of this flow run: ``given`` (the caller's), or one opened here and
    closed FINISHED or FAILED with the flow. None when tracking is off, or failed under ``warn``."""
    if given or not params.tracking.enabled:
        yield given
        return
    try:
        run_id = start_pipeline_run(project, params.tracking, source="prefect",
                                    tags={"prefect_flow_run_id": str(flow_run.id), "prefect_flow": flow_run.flow_name})
    except TrackingError as err:
        if params.tracking.on_error == "fail":
            raise
        get_run_logger().warning(f"{err}; stages run without a parent run")
        yield None
        return
    try:
        yield run_id
    except BaseException:
        end_pipeline_run(project, params.tracking, run_id, status="FAILED")
        raise
    end_pipeline_run(project, params.tracking, run_id)


@flow(name="build")
def build(project_dir: str = ".", stages: list[str] | None = None, overrides: dict[str, Any] | None = None,
          parent_run_id: str | None = None) -> dict[str, str]:
    """Bring the DVC pipeline in ``project_dir`` up to date; returns each stage's outcome.

    ``stages`` limits the run to those stages (still in DVC's order); ``overrides`` sets params
    first (``{"train.preset": "paper"}``, as ``dvc exp run -S`` would); ``parent_run_id`` nests the
    stages' MLflow runs under a parent the caller owns (otherwise the flow opens and closes one).
    """
    logger = get_run_logger()
    project = Path(project_dir).resolve()
    if overrides:
        apply_overrides(project / PARAMS_FILE, overrides)
        logger.info(f"params.yaml overrides: {overrides}")
    params = load_params(project / PARAMS_FILE)
    order = stage_order(project)
    unknown = sorted(set(stages or []) - set(order))
    if unknown:
        raise ValueError(f"stages {unknown} are not in {project / 'dvc.yaml'}; it has {order}")
    order = [name for name in order if not stages or name in stages]
    logger.info(f"{len(order)} stages in DVC's order: {', '.join(order)}")
    run_task = stage_task.with_options(retries=params.flows.stage_retries,
                                       retry_delay_seconds=params.flows.retry_delay_secs)
    outcomes: dict[str, str] = {}
    with parent_run(project, params, parent_run_id) as parent:
        for name in order:
            # the task's own final state carries the outcome (its message shows in the UI)
            outcomes[name] = run_task(str(project), name, parent, return_state=True).result()
    ran = [name for name, outcome in outcomes.items() if outcome == "ran"]
    logger.info(f"ran {len(ran)} stage(s){': ' + ', '.join(ran) if ran else ''}; "
                f"{len(outcomes) - len(ran)} cached")
    return outcomes


if __name__ == "__main__":
    build()
