"""MLflow's model registry: register a trained autoencoder and promote it only when it is better.

A candidate (the ``train`` stage's model folder and its held-out metrics) becomes a new version of
``tracking.registered_model``; the alias ``champion`` moves to it only when it beats the current
champion on ``flows.promote_metric``. The comparison is on the same held-out data: each version
records a digest of the eval shards it was scored on, and when today's eval data differs the
champion is scored again on it (a model scored on other data proves nothing). A candidate whose
weights equal those of any registered version (the champion or not) is not registered again.
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pipeline.config import TrackingParams
from pipeline.tracking.runs import Run, Store
from pipeline.vocab import higher_is_better

CHAMPION = "champion"
MODEL_ARTIFACT = "model"


def folder_digest(folder: str | Path, pattern: str = "*") -> str:
    """SHA-256 over the relative paths and bytes of the files under ``folder`` matching ``pattern``."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob(pattern) if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def compare(metric: str, candidate: dict, champion: dict | None, champion_version: str | None = None) -> Decision:
    """Whether ``candidate`` beats ``champion`` on ``metric``, and a sentence saying why."""
    value = candidate.get(metric)
    if value is None:
        return Decision(False, f"not promoted: the candidate has no held-out {metric}")
    if champion is None:
        return Decision(True, f"promoted: no {CHAMPION} yet (candidate {metric} {value:.4g})")
    best = champion.get(metric)
    if best is None:
        return Decision(True, f"promoted: {CHAMPION} version {champion_version} has no {metric}")
    higher = higher_is_better(metric)
    better = value > best if higher else value < best
    relation = (">" if value > best else "≤") if higher else ("<" if value < best else "≥")
    direction = "higher" if higher else "lower"
    verdict = "promoted" if better else "not promoted"
    return Decision(better, f"{verdict}: held-out {metric} {value:.4g} {relation} {best:.4g} of {CHAMPION} "
                            f"version {champion_version} ({direction} is better)")


@dataclass(frozen=True)
class Registration:
    version: str | None      # the new version, or None when the candidate was already registered
    promoted: bool
    reason: str
    champion_version: str | None

    def as_dict(self) -> dict:
        return {"version": self.version, "promoted": self.promoted, "reason": self.reason,
                "champion_version": self.champion_version}


def version_with_weights(client, name: str, weights: str) -> str | None:
    """The registered version of ``name`` tagged with weights digest ``weights``, if any (all pages)."""
    token = None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=200, page_token=token)
        for version in page:
            if version.tags.get("weights_sha256") == weights:
                return str(version.version)
        token = page.token
        if not token:
            return None


def register_candidate(root: Path, settings: TrackingParams, metric: str, model_dir: Path, metrics: dict,
                       eval_digest: str, parent_run_id: str | None,
                       rescore: Callable[[Path], dict]) -> Registration:
    """Register the model in ``model_dir`` with its held-out ``metrics``; promote it if it is better.

    ``rescore(folder)`` scores a downloaded model folder on today's held-out data (used only when
    the champion was scored on other data).
    """
    from mlflow.exceptions import MlflowException

    store = Store.open(root, settings)
    client, name = store.client, settings.registered_model
    weights = folder_digest(model_dir)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="DDSP autoencoder (z encoder) trained by the pipeline")
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None

    champion_version = str(champion.version) if champion is not None else None  # an int from some stores
    holder = version_with_weights(client, name, weights)
    if holder is not None:
        role = f"{CHAMPION} version" if holder == champion_version else "version"
        return Registration(None, False, f"unchanged: the trained weights are registered as {role} {holder} "
                                         "already", champion_version)
    champion_metrics = None
    if champion is not None:
        champion_metrics = dict(client.get_run(champion.run_id).data.metrics)
        if champion.tags.get("eval_data_sha256") != eval_digest:
            with tempfile.TemporaryDirectory() as scratch:
                folder = client.download_artifacts(champion.run_id, MODEL_ARTIFACT, scratch)
                champion_metrics = rescore(Path(folder))
    decision = compare(metric, metrics, champion_metrics, champion_version)

    run_id = store.child_run(parent_run_id, "register", {"stage": "register"}, reuse=False) if parent_run_id \
        else client.create_run(store.experiment_id, run_name="register", tags={"stage": "register"}).info.run_id
    run = Run(store, run_id)
    run.log_metrics(metrics)
    if champion_metrics is not None:
        run.log_metrics({f"champion.{key}": value for key, value in champion_metrics.items()})
    run.log_artifact(model_dir, MODEL_ARTIFACT)
    version = client.create_model_version(
        name, source=f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}", run_id=run_id,
        tags={"weights_sha256": weights, "eval_data_sha256": eval_digest, "promotion": decision.reason},
        description=decision.reason)
    client.set_terminated(run_id)
    new_version = str(version.version)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, new_version)
    return Registration(new_version, decision.promote, decision.reason,
                        new_version if decision.promote else champion_version)
