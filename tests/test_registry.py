"""Model registry: a model is promoted only when it beats the champion on the same held-out data, and
the same weights are never registered twice."""
from __future__ import annotations

import pytest

from pipeline.config import TrackingParams
from pipeline.tracking.registry import CHAMPION, compare, register_candidate

SETTINGS = TrackingParams(experiment="registry-test", registered_model="ae")
EVAL = "eval-digest-a"


def test_compare_says_which_metric_and_why():
    assert compare("spectral_distance", {"spectral_distance": 7.0}, None).reason.startswith("promoted: no champion")
    better = compare("spectral_distance", {"spectral_distance": 7.0}, {"spectral_distance": 8.0}, "3")
    assert better.promote and better.reason == ("promoted: held-out spectral_distance 7 < 8 of champion version 3 "
                                                "(lower is better)")
    worse = compare("spectral_distance", {"spectral_distance": 9.0}, {"spectral_distance": 8.0}, "3")
    assert not worse.promote and "9 ≥ 8" in worse.reason
    assert compare("f0_rpa", {"f0_rpa": 0.9}, {"f0_rpa": 0.8}, "1").promote  # higher is better for f0_rpa
    assert not compare("f0_rpa", {"f0_rpa": 0.7}, {"f0_rpa": 0.8}, "1").promote
    assert not compare("spectral_distance", {"spectral_distance": None}, None).promote


@pytest.fixture
def registry(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def model_folder(root, name: str, weights: bytes):
    folder = root / name
    (folder / "weights").mkdir(parents=True)
    (folder / "weights/model.data").write_bytes(weights)
    (folder / "config.json").write_text("{}")
    return folder


def never_rescore(folder):
    raise AssertionError("the champion was scored on the same data: no rescoring")


def test_promotes_only_better_models_and_never_registers_the_same_weights_twice(registry, tmp_path):
    register = lambda folder, distance, digest=EVAL, rescore=never_rescore: register_candidate(  # noqa: E731
        tmp_path, SETTINGS, "spectral_distance", folder, {"spectral_distance": distance, "f0_rpa": 0.9},
        digest, None, rescore)

    first = register(model_folder(tmp_path, "a", b"a"), 8.0)
    assert (first.version, first.promoted, first.champion_version) == ("1", True, "1")
    worse = register(model_folder(tmp_path, "b", b"b"), 9.0)
    assert (worse.version, worse.promoted, worse.champion_version) == ("2", False, "1")
    assert "not promoted: held-out spectral_distance 9 ≥ 8 of champion version 1" in worse.reason
    better = register(model_folder(tmp_path, "c", b"c"), 7.5)
    assert (better.version, better.promoted) == ("3", True)
    assert str(registry.get_model_version_by_alias("ae", CHAMPION).version) == "3"
    same = register(model_folder(tmp_path, "c-again", b"c"), 7.5)
    assert same.version is None and same.reason.startswith("unchanged")
    assert "champion version 3" in same.reason
    # weights already held by a version that is not the champion are not registered again either,
    # whatever metrics come with them this time
    for weights, distance, holder in ((b"a", 8.0, "1"), (b"b", 1.0, "2")):
        again = register(model_folder(tmp_path, f"{weights.decode()}-again", weights), distance)
        assert (again.version, again.promoted, again.champion_version) == (None, False, "3")
        assert again.reason == f"unchanged: the trained weights are registered as version {holder} already"
    assert len(registry.search_model_versions("name = 'ae'")) == 3
    assert str(registry.get_model_version_by_alias("ae", CHAMPION).version) == "3"

    version = registry.get_model_version("ae", "2")
    assert version.tags["promotion"] == worse.reason and version.description == worse.reason
    assert {a.path for a in registry.list_artifacts(version.run_id, "model")} == {"model/config.json",
                                                                                   "model/weights"}


def test_champion_scored_on_other_data_is_scored_again_on_todays(registry, tmp_path):
    register_candidate(tmp_path, SETTINGS, "spectral_distance", model_folder(tmp_path, "a", b"a"),
                       {"spectral_distance": 8.0}, EVAL, None, never_rescore)
    rescored = []

    def rescore(folder):
        rescored.append(sorted(p.name for p in folder.iterdir()))
        return {"spectral_distance": 6.0}  # on the new data the champion does better than it did before

    result = register_candidate(tmp_path, SETTINGS, "spectral_distance", model_folder(tmp_path, "b", b"b"),
                                {"spectral_distance": 7.0}, "eval-digest-b", None, rescore)
    assert rescored == [["config.json", "weights"]]
    assert not result.promoted and "7 ≥ 6" in result.reason
