"""MLflow the way teams run it: ``mlflow server`` on PostgreSQL with proxied artifacts.

The session's MLflow server (the ``mlflow_uri`` fixture) keeps its runs in a PostgreSQL server of the
test session's own (Debian's packages, run as an unprivileged account when the tests are root) and its
artifacts behind ``--artifacts-destination``: clients up- and download through the server. The tiny
``dvc repro`` (the ``tiny_project`` fixture) logs there; these tests read it back through MLflow's
client and straight from the database.
"""
from __future__ import annotations

import pytest
from services import rendered_ks, samples_folder

pytestmark = pytest.mark.slow

STAGE_RUNS = ["corpus", "prepare", "train", "extract_z", "choose_k", "anchors", "evaluate", "report"]


def dvc_runs(client, filter_string: str) -> list:
    experiment = client.get_experiment_by_name("generative-ddsp")
    return client.search_runs([experiment.experiment_id], filter_string=filter_string, max_results=1000)


def dvc_children(client) -> dict[str, object]:
    """The runs of the tiny project's `dvc repro` under its parent, by name."""
    (parent,) = dvc_runs(client, "tags.pipeline_role = 'parent' and tags.source = 'dvc'")
    return {run.info.run_name: run for run in dvc_runs(client, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}


def test_postgres_backend_holds_the_dvc_repro_parent_stage_and_k_runs(tiny_project, mlflow_uri, postgres_uri):
    import psycopg
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    (parent,) = dvc_runs(client, "tags.pipeline_role = 'parent' and tags.source = 'dvc'")
    children = dvc_runs(client, f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_name = {run.info.run_name: run for run in children}
    assert sorted(by_name) == sorted([*STAGE_RUNS, *(f"K={k}" for k in rendered_ks(tiny_project))])
    assert all(run.info.status == "FINISHED" for run in [parent, *children])

    # the server wrote them to PostgreSQL, not to a file of its own
    with psycopg.connect(postgres_uri.replace("postgresql+psycopg://", "postgresql://")) as connection:
        rows = dict(connection.execute("SELECT run_uuid, status FROM runs").fetchall())
        k_run = by_name[f"K={rendered_ks(tiny_project)[0]}"]
        bics = connection.execute("SELECT value FROM metrics WHERE run_uuid = %s AND key = 'bic'",
                                  (k_run.info.run_id,)).fetchall()
    assert {run.info.run_id for run in [parent, *children]} <= set(rows)
    assert rows[parent.info.run_id] == "FINISHED"
    # fit_gmm@K and sample@K both log the mixture's metrics to the K run: the same value twice
    assert bics and all(value == pytest.approx(k_run.data.metrics["bic"]) for (value,) in bics)


def test_postgres_backed_server_proxies_the_k_runs_artifacts(tiny_project, mlflow_uri, postgres_uri, tmp_path):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    client = MlflowClient(mlflow_uri)
    children = dvc_children(client)
    for k in rendered_ks(tiny_project):
        run = children[f"K={k}"]
        # proxied: the run's artifact root is the server's, not a path the client writes to
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"clips", "clips.csv", "manifest.json", "mixture"} <= top
        wavs = [a for a in client.list_artifacts(run.info.run_id, "clips") if a.path.endswith(".wav")]
        # direct, plus one clip per cluster for each cluster method (inverse_transform, temporal,
        # temporal_hold, conditional), on the one conditioning of the tiny project
        assert len(wavs) == 1 + 4 * k and all(a.file_size > 44 for a in wavs)
        got = download_artifacts(run_id=run.info.run_id, artifact_path="clips.csv", dst_path=str(tmp_path / f"k{k}"),
                                 tracking_uri=mlflow_uri)
        assert open(got, "rb").read() == (samples_folder(tiny_project, k) / "clips.csv").read_bytes()
