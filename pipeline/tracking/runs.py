"""MLflow, in one place: where runs go, how one pipeline execution is grouped, what a stage logs.

Where: ``MLFLOW_TRACKING_URI`` when set, else ``tracking.uri`` from params, else a SQLite
``mlflow.db`` with artifacts under ``mlruns/`` at the project root, whatever directory a stage
runs in (so runs never scatter into per-folder databases).

Grouping: one *parent* run per pipeline execution; under it one child run per stage (``prepare``,
``train``, ...) and one child run per cluster count (``K=8``), which both ``fit_gmm@8`` and
``sample@8`` log into, so the K runs compare side by side in the MLflow UI with every metric of
their K. DVC starts each stage as its own process, so the stages of one execution find their
parent through an *execution key*: the Prefect flow (or any caller) names the parent run in
``GDDSP_PARENT_RUN_ID``; otherwise the key is the ``dvc`` process that launched the stage (its pid
and start time), so every stage of one ``dvc repro`` lands under the same parent and the next
``dvc repro`` starts a new one. A stage run by hand has its own parent.

A server that is down fails fast: each request is retried ``tracking.max_retries`` times with a
short backoff (MLflow's defaults wait minutes), then the stage's error names the URI.

Stages log *after* their DVC outputs are complete: a tracking failure raises a clear
:class:`TrackingError` (or, with ``tracking.on_error: warn``, prints a warning and the stage goes
on), never touches those outputs, and the outputs never depend on run ids.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pipeline.config import Params, TrackingParams

PARENT_ENV = "GDDSP_PARENT_RUN_ID"
DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlruns"
# tag keys (no dots: they appear unquoted in search filters)
ROLE_TAG, EXECUTION_TAG, STAGE_TAG, K_TAG = "pipeline_role", "pipeline_execution", "stage", "k"
PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs by


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused a write; DVC outputs are already complete."""


RETRY_BACKOFF_FACTOR = 1  # MLflow (urllib3) sleeps factor * 2**(retry - 1) s between retries: 1 s, 2 s, 4 s...


def apply_retry_policy(settings: TrackingParams) -> None:
    """Bound MLflow's HTTP retries and timeouts by ``settings`` (MLflow reads them per request from
    these environment variables; a file or SQLite store ignores them)."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(RETRY_BACKOFF_FACTOR)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.timeout_secs)


def tracking_uri(root: Path, settings: TrackingParams | None = None) -> str:
    configured = os.environ.get("MLFLOW_TRACKING_URI") or (settings.uri if settings else None)
    return configured or f"sqlite:///{(Path(root) / DEFAULT_DB).resolve()}"


def flatten(value, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: nested params and metrics as MLflow keys (as DVC shows them)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def numeric_items(metrics: dict) -> dict[str, float]:
    return {key: float(value) for key, value in flatten(metrics).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def execution_key() -> str:
    """Which pipeline execution this process belongs to: the ``dvc`` process that started it, if any."""
    import psutil

    process = psutil.Process()
    ancestor = process.parent()
    while ancestor is not None:
        with contextlib.suppress(psutil.Error):
            if any(Path(part).name == "dvc" for part in ancestor.cmdline()[:3]):
                process = ancestor
                break
        ancestor = ancestor.parent()
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.3f}"


@dataclass(frozen=True)
class Store:
    """An MLflow client on the project's store and experiment."""

    client: object
    uri: str
    experiment_id: str

    @classmethod
    def open(cls, root: Path, settings: TrackingParams) -> "Store":
        from mlflow import MlflowClient

        # a new SQLite store announces its schema migration at INFO on the console of whichever stage opens it first
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        uri = tracking_uri(root, settings)
        apply_retry_policy(settings)
        try:
            client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(settings.experiment)
            if experiment is not None:
                experiment_id = experiment.experiment_id
            else:
                # a server chooses its own artifact root; the local default keeps artifacts beside mlflow.db
                location = (Path(root) / DEFAULT_ARTIFACTS).resolve().as_uri() if uri.startswith("sqlite:") else None
                experiment_id = client.create_experiment(settings.experiment, artifact_location=location)
        except Exception as err:
            raise TrackingError(f"MLflow tracking at {uri} is not usable: {err}") from err
        return cls(client, uri, experiment_id)

    def find(self, filter_string: str):
        runs = self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    def parent_run(self, key: str, source: str) -> str:
        """The parent run of execution ``key``, created on first use."""
        found = self.find(f"tags.{EXECUTION_TAG} = '{key}' and tags.{ROLE_TAG} = 'parent'")
        if found is not None:
            return found.info.run_id
        name = f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}"
        return self.client.create_run(self.experiment_id, run_name=name, tags={
            ROLE_TAG: "parent", EXECUTION_TAG: key, "source": source}).info.run_id

    def child_run(self, parent_id: str, name: str, tags: dict[str, str], reuse: bool) -> str:
        """A child of ``parent_id``; with ``reuse``, the existing child with the same name (a K run)."""
        if reuse:
            found = self.find(f"tags.{PARENT_TAG} = '{parent_id}' and attributes.run_name = '{name}'")
            if found is not None:
                self.client.update_run(found.info.run_id, status="RUNNING")
                return found.info.run_id
        return self.client.create_run(self.experiment_id, run_name=name,
                                      tags={PARENT_TAG: parent_id, **tags}).info.run_id


class NullRun:
    """Stands in for :class:`Run` when tracking is off or failed under ``on_error: warn``: logs nothing."""

    run_id = None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Run:
    """What a stage may log into its run: params, numeric metrics (nested dicts flattened), files, tables."""

    def __init__(self, store: Store, run_id: str):
        self.store = store
        self.run_id = run_id

    @property
    def client(self):
        return self.store.client

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in flat.items()])

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in numeric_items(metrics).items()]
        for start in range(0, len(items), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=items[start:start + 1000])

    def log_history(self, rows: list[dict], step_key: str = "step") -> None:
        """One metric point per row and numeric column, at the row's step (a training curve)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, int(row[step_key])) for row in rows
                 for k, v in numeric_items(row).items() if k != step_key]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start:start + 1000])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

    def log_table(self, table, artifact_file: str) -> None:
        """A pandas table the MLflow UI shows as a table (its artifact view and evaluation tab)."""
        self.client.log_table(self.run_id, data=table, artifact_file=artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))


def start_pipeline_run(root: Path, settings: TrackingParams, source: str, tags: dict | None = None) -> str:
    """Create a parent run for an execution driven from outside DVC (a Prefect flow); returns its id.

    Put the id in the stages' environment as ``GDDSP_PARENT_RUN_ID`` so their runs nest under it.
    """
    store = Store.open(root, settings)
    key = f"{source}:{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"
    run_id = store.parent_run(key, source)
    if tags:
        Run(store, run_id).set_tags(tags)
    return run_id


def end_pipeline_run(root: Path, settings: TrackingParams, run_id: str, status: str = "FINISHED") -> None:
    Store.open(root, settings).client.set_terminated(run_id, status=status)


@contextlib.contextmanager
def _child(root: Path, settings: TrackingParams, name: str, tags: dict[str, str], reuse: bool
           ) -> Iterator[Run | NullRun]:
    if not settings.enabled:
        yield NullRun()
        return
    uri = tracking_uri(root, settings)
    try:
        store = Store.open(root, settings)
        parent_id = os.environ.get(PARENT_ENV) or store.parent_run(execution_key(), source="dvc")
        store.client.update_run(parent_id, status="RUNNING")
        run_id = store.child_run(parent_id, name, {**tags, EXECUTION_TAG: parent_id}, reuse)
    except Exception as err:
        _fail(settings, f"MLflow tracking at {uri} failed to start the run for {name!r}: {err}", err)
        yield NullRun()
        return
    run = Run(store, run_id)
    try:
        yield run
    except Exception as err:
        store.client.set_terminated(run_id, status="FAILED")
        _fail(settings, f"MLflow logging to {uri} failed in {name!r} (the stage's DVC outputs are complete): "
                        f"{err}", err)
        return
    store.client.set_terminated(run_id, status="FINISHED")
    # the parent reads FINISHED between stages and after the last one, RUNNING while one logs
    store.client.set_terminated(parent_id, status="FINISHED")


def _fail(settings: TrackingParams, message: str, err: Exception) -> None:
    if settings.on_error == "warn":
        print(f"warning: {message}", file=sys.stderr, flush=True)
        return
    raise TrackingError(message) from err


@contextlib.contextmanager
def stage_run(stage: str, root: Path, settings: TrackingParams) -> Iterator[Run | NullRun]:
    """The child run of one stage execution under this execution's parent.

    Yields a :class:`NullRun` when tracking is disabled, or could not start under ``on_error: warn``.
    """
    with _child(root, settings, stage, {STAGE_TAG: stage, ROLE_TAG: "stage"}, reuse=False) as run:
        yield run


@contextlib.contextmanager
def k_run(k: int, root: Path, settings: TrackingParams) -> Iterator[Run | NullRun]:
    """The child run ``K=<k>`` of this execution, shared by ``fit_gmm@k`` and ``sample@k``."""
    with _child(root, settings, f"K={k}", {ROLE_TAG: "k", K_TAG: str(k)}, reuse=True) as run:
        yield run


def log_mixture(run: Run | NullRun, params: Params, k: int, metrics: dict, folder: Path) -> None:
    """The K run's mixture part: fit params, ``bic`` ... ``weight_<i>``, and the saved mixture.

    fit_gmm@K logs it, and sample@K again (identical values), so the K run is complete when
    fit_gmm@K was cached."""
    run.log_params({"seed": params.seed, "k": k, "gmm": params.gmm.model_dump(exclude={"n_components"})})
    run.log_metrics({key: value for key, value in metrics.items() if key not in ("weights", "conditional_weights")})
    run.log_metrics({f"weight_{i}": w for i, w in enumerate(metrics["weights"])})
    run.log_artifact(folder, "mixture")
