"""MLflow, in one place: where runs go and how a stage logs to them.

The store is explicit so stages run from any directory land in one place: ``MLFLOW_TRACKING_URI``
when set (a tracking server, say), else a SQLite ``mlflow.db`` with artifacts under ``mlruns/`` at
the project root. Stages log *after* their DVC outputs are complete, so a tracking failure raises a
clear :class:`TrackingError` but never touches those outputs, and the outputs never depend on run ids.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

EXPERIMENT = "generative-ddsp"


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused a write; DVC outputs are already complete."""


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def _experiment_id(mlflow, root: Path) -> str:
    existing = mlflow.get_experiment_by_name(EXPERIMENT)
    if existing is not None:
        return existing.experiment_id
    return mlflow.create_experiment(EXPERIMENT, artifact_location=(root / "mlruns").resolve().as_uri())


def _flatten(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value
    return out


class StageRun:
    """What a stage may log: params, numeric metrics, files and folders."""

    def __init__(self, mlflow):
        self._mlflow = mlflow

    def log_params(self, params: dict) -> None:
        flat = _flatten("", params, {})
        self._mlflow.log_params({k: str(v)[:6000] for k, v in flat.items()})

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        flat = _flatten("", metrics, {})
        numeric = {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._mlflow.log_metrics(numeric, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self._mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        else:
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)


@contextlib.contextmanager
def stage_run(stage: str, root: Path, tags: dict | None = None) -> Iterator[StageRun]:
    """An MLflow run for one stage execution, tagged with the stage name."""
    import mlflow

    uri = tracking_uri(root)
    try:
        mlflow.set_tracking_uri(uri)
        experiment_id = _experiment_id(mlflow, root)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags={"stage": stage, **(tags or {})})
    except Exception as err:
        raise TrackingError(f"MLflow tracking at {uri} failed for stage {stage!r}: {err}") from err
    with run:
        try:
            yield StageRun(mlflow)
        except Exception as err:
            raise TrackingError(f"MLflow logging to {uri} failed in stage {stage!r} "
                                f"(the stage's DVC outputs are complete): {err}") from err
