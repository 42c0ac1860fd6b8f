"""params.yaml parses once into typed config; bad values fail before any work, naming the key."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pipeline.config import ConfigError, Params, load_params, parse_params
from tests.conftest import REPO_ROOT


def test_repository_params_validate():
    params = load_params(REPO_ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert params.prepare.n_frames == params.prepare.example_secs * params.prepare.frame_rate


@pytest.mark.parametrize("raw, key", [
    ({"prepare": {"bogus": 1}}, "prepare.bogus"),
    ({"prepare": {"f0": {"method": "crepe"}}}, "prepare.f0.method"),
    ({"prepare": {"example_secs": "long"}}, "prepare.example_secs"),
    ({"prepare": {"eval_fraction": 1.5}}, "prepare.eval_fraction"),
    ({"seed": -3}, "seed"),
    ({"corpus": {"n_files": 0}}, "corpus.n_files"),
    ({"prepare": {"beam": {"mode": "multi_threading"}}}, "prepare.beam.mode"),
    ({"prepare": {"beam": {"runner": "dask", "dask": {"address": "scheduler:8786"}}}}, "prepare.beam.dask.address"),
    ({"prepare": {"beam": {"dask": {"npartitions": 0}}}}, "prepare.beam.dask.npartitions"),
    ({"prepare": {"beam": {"dask": {"run_timeout_secs": -1}}}}, "prepare.beam.dask.run_timeout_secs"),
    ({"prepare": {"beam": {"runner": "DaskRunner"}}}, "prepare.beam.runner"),
    ({"unknown_section": {}}, "unknown_section"),
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert f"  {key}:" in str(info.value)


def test_cross_field_rules_are_explained():
    with pytest.raises(ConfigError, match="frame_rate 300 must divide"):
        parse_params({"prepare": {"frame_rate": 300}})
    with pytest.raises(ConfigError, match="hop_secs must not exceed example_secs"):
        parse_params({"prepare": {"hop_secs": 5.0, "example_secs": 4.0}})
    with pytest.raises(ConfigError, match="pitch_low must not exceed pitch_high"):
        parse_params({"corpus": {"pitch_low": 90, "pitch_high": 60}})


def test_stage_fails_before_work_on_bad_params(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"prepare": {"f0": {"method": "crepe"}}}))
    result = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "prepare.f0.method" in result.stderr
    assert not (tmp_path / "data").exists()
