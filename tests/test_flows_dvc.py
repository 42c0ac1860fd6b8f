"""What the flows read from DVC and how they judge a stage's failure (no Prefect server needed)."""
from __future__ import annotations

import io

import pytest
import yaml

from pipeline.config import ConfigError, apply_overrides
from pipeline.flows.dvc import StageFailed, _lines, stage_order
from tests.conftest import REPO_ROOT


def test_stage_order_is_dvcs_with_matrix_items_in_numeric_order():
    order = stage_order(REPO_ROOT)
    ks = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["gmm"]["n_components"]
    assert order[:4] == ["corpus", "prepare", "train", "extract_z"]
    assert order[-2:] == ["evaluate", "report"]
    assert [name for name in order if name.startswith("fit_gmm@")] == [f"fit_gmm@{k}" for k in sorted(ks)]
    assert all(order.index(f"fit_gmm@{k}") < order.index(f"sample@{k}") for k in ks)


def test_only_signals_and_lock_contention_are_transient():
    assert StageFailed("train", -9, "").transient  # killed, e.g. by the OOM killer
    assert StageFailed("train", 1, "ERROR: Unable to acquire lock. Most likely another DVC process").transient
    error = StageFailed("prepare", 1, "prepare failed: zero usable examples")
    assert not error.transient and "exit code 1" in str(error) and "zero usable examples" in str(error)


def test_progress_bar_redraws_become_separate_log_lines():
    stream = io.BufferedReader(io.BytesIO(b"start\ntrain: 1/3\rtrain: 2/3\rtrain: 3/3\n\ndone"))
    assert list(_lines(stream)) == ["start", "train: 1/3", "train: 2/3", "train: 3/3", "done"]


def test_overrides_keep_comments_and_bad_ones_name_the_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\ntrain:\n  preset: cpu   # the CPU preset\n")
    assert apply_overrides(params, {"train.preset": "paper", "gmm.n_components": [2, 3]}).train.preset == "paper"
    text = params.read_text()
    assert "# the CPU preset" in text and yaml.safe_load(text)["gmm"]["n_components"] == [2, 3]
    with pytest.raises(ConfigError, match=r"train\.preset"):
        apply_overrides(params, {"train.preset": "gpu"})
    assert yaml.safe_load(params.read_text())["train"]["preset"] == "paper", "a bad override changes nothing"
