"""prepare on Beam's DaskRunner: a dask.distributed cluster of worker processes on 127.0.0.1 writes exactly
the local runner's shards, and bad files are still rejected with their reason."""
from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
import soundfile as sf
from distributed import Client

from pipeline.config import BeamParams, DaskParams
from pipeline.prepare.beam import pipeline_options, run_prepare
from pipeline.prepare.cluster import start_local_cluster
from tests.conftest import harmonic_tone, write_audio
from tests.test_prepare import SR, tiny_params

DEADLINE_SECS = 240  # every wait below has one: connecting, workers starting, the pipeline, closing


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask_audio")
    for i in range(3):
        write_audio(root / f"t{i}.wav", harmonic_tone(5.0, SR, 180.0 + 50 * i, seed=i), SR)
    write_audio(root / "long.flac", harmonic_tone(12.5, SR, 247.0, seed=5), SR)  # two chunks of 10 s
    write_audio(root / "bad/truncated.wav", harmonic_tone(3.0, SR, 300.0), SR, subtype="PCM_16")
    data = (root / "bad/truncated.wav").read_bytes()
    (root / "bad/truncated.wav").write_bytes(data[: len(data) // 2])
    (root / "bad/not_audio.wav").write_text("this is a text file with an audio extension\n" * 50)
    sf.write(str(root / "dc.wav"), np.full(4 * SR, 0.3, np.float32), SR)  # unpitched: rejected after analysis
    return root


def _shards(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.tfrecord-*"))}


def test_dask_cluster_writes_the_local_runners_shards_byte_for_byte(corpus, tmp_path):
    local = run_prepare(tiny_params(), corpus, tmp_path / "local", seed=3)
    environ = dict(os.environ)
    cluster = start_local_cluster(2, timeout_secs=60)
    # the nannies' worker settings (OMP_NUM_THREADS=1, PYTHONHASHSEED) stay out of this process's environment,
    # which later stages started from it inherit
    assert dict(os.environ) == environ
    try:
        with Client(cluster.scheduler_address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            assert all(w.startswith("tcp://127.0.0.1:") for w in client.scheduler_info()["workers"])
            params = tiny_params(beam=BeamParams(runner="dask", dask=DaskParams(
                address=cluster.scheduler_address, connect_timeout_secs=60, run_timeout_secs=DEADLINE_SECS)))
            report = run_prepare(params, corpus, tmp_path / "dask", seed=3)
            # the workers ran with the project's TensorFlow set-up (pipeline.compat), as the local runner's do
            setup = client.run(lambda: (os.environ.get("TF_USE_LEGACY_KERAS"), "crepe" in __import__("sys").modules))
            assert len(setup) == 2 and set(setup.values()) == {("1", True)}
    finally:
        cluster.close(timeout=60)
    shards = _shards(tmp_path / "dask")
    assert sorted(shards) == [f"{split}.tfrecord-0000{i}-of-00002" for split in ("eval", "train") for i in range(2)]
    assert shards == _shards(tmp_path / "local")
    assert report == local
    reasons = {r["source"]: r["reason"] for r in report["rejected"]}
    assert reasons == {"bad/truncated.wav": "truncated", "bad/not_audio.wav": "unreadable", "dc.wav": "unpitched"}
    assert {"records.jsonl", "pieces"}.isdisjoint(p.name for p in (tmp_path / "dask").iterdir())
    assert report["counts"]["examples_train"] + report["counts"]["examples_eval"] == 3 * 4 + 12
    assert report["counts"]["rejected_truncated"] == 1 and report["counts"]["files_read"] == 5


def test_dask_without_an_address_starts_and_closes_its_own_local_cluster(corpus, tmp_path):
    params = tiny_params(beam=BeamParams(runner="dask", num_workers=1, dask=DaskParams(
        connect_timeout_secs=60, run_timeout_secs=DEADLINE_SECS)))
    report = run_prepare(params, corpus, tmp_path / "own", seed=3)
    assert {r["source"] for r in report["rejected"]} == {"bad/truncated.wav", "bad/not_audio.wav", "dc.wav"}
    assert report["stats"]["files_used"] == 4
    assert not multiprocessing.active_children(), "the LocalCluster's worker processes outlived prepare"


def test_dask_runner_flags():
    params = tiny_params(beam=BeamParams(runner="dask", dask=DaskParams(address="tcp://scheduler:8786")))
    flags = pipeline_options(params, n_files=3).get_all_options()
    assert flags["runner"].endswith("DaskRunner") and flags["address"] == "tcp://scheduler:8786"
    assert flags["npartitions"] == 3 and flags["timeout"] == 60
    with pytest.raises(ValueError, match="prepare.beam.dask.address"):
        pipeline_options(tiny_params(beam=BeamParams(runner="dask")))
