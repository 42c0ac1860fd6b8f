"""Multi-worker training for real: two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy.

The launcher (``pipeline.model.launch``) gives each worker its TF_CONFIG; each worker reads only its
own shards and contributes its share of every global batch; only the chief publishes; when a worker
is killed the launcher stops the other and a rerun of both resumes from the chief's checkpoint.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

from pipeline.model.launch import HOSTS_ENV, INDEX_ENV, run_local_workers, tf_config, tf_config_from_env
from tests.test_model import SPEC, TINY

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = 24
CHECKPOINT_EVERY = 5
DEADLINE_SECS = 600


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from tests.synthetic import write_synthetic_dataset

    # two train shards: one per worker
    return write_synthetic_dataset(tmp_path_factory.mktemp("prepared"), SPEC, n_train=12, n_eval=4, seed=3,
                                   n_shards=2)


def test_multi_worker_tf_config_from_an_indexed_job():
    hosts = "train-0.train:2222, train-1.train:2222"
    config = tf_config_from_env({HOSTS_ENV: hosts, INDEX_ENV: "1"})
    assert config == {"cluster": {"worker": ["train-0.train:2222", "train-1.train:2222"]},
                      "task": {"type": "worker", "index": 1}}
    given = json.dumps(tf_config(["a:1"], 0))
    assert tf_config_from_env({"TF_CONFIG": given, HOSTS_ENV: hosts, INDEX_ENV: "1"}) == json.loads(given)
    assert tf_config_from_env({}) is None
    with pytest.raises(RuntimeError, match=INDEX_ENV):
        tf_config_from_env({HOSTS_ENV: hosts})
    with pytest.raises(ValueError, match=r"worker index 2 is not in \[0, 2\)"):
        tf_config_from_env({HOSTS_ENV: hosts, INDEX_ENV: "2"})


def test_multi_worker_kubernetes_indexed_job_gives_each_pod_a_gpu_and_its_tf_config():
    """deploy/k8s-train-workers.yaml: one pod per worker, a GPU each, peers named as Kubernetes' DNS names them."""
    service, job = yaml.safe_load_all((REPO_ROOT / "deploy" / "k8s-train-workers.yaml").read_text())
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed" and spec["backoffLimit"] == 0
    n = spec["completions"]
    assert spec["parallelism"] == n >= 2
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    assert container["command"][-2:] == ["-m", "stages.train"]
    for side in ("requests", "limits"):
        assert container["resources"][side]["nvidia.com/gpu"] == 1
    env = {item["name"]: item["value"] for item in container["env"]}
    port = service["spec"]["ports"][0]["port"]
    expected = [f"{job['metadata']['name']}-{i}.{pod['subdomain']}:{port}" for i in range(n)]
    for index in range(n):
        config = tf_config_from_env({**env, INDEX_ENV: str(index)})
        assert config["cluster"]["worker"] == expected and config["task"]["index"] == index


def test_multi_worker_chief_is_worker_zero(monkeypatch):
    from pipeline.model.distribute import is_chief

    for index, chief in ((0, True), (1, False)):
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config(["a:1", "b:1"], index)))
        assert is_chief() is chief


def test_multi_worker_each_worker_reads_its_own_shards_and_its_share_of_the_batch(dataset):
    from pipeline.dataset.reader import examples, shard_files, train_batches, worker_shards

    files = shard_files(dataset, "train")
    assert worker_shards(dataset, "train", 0, 2) == files[0::2] and worker_shards(dataset, "train", 1, 2) == files[1::2]
    with pytest.raises(ValueError, match=r"3 training workers need at least 3 train shards.*prepare\.num_shards"):
        worker_shards(dataset, "train", 0, 3)
    for worker in (0, 1):
        own = {row["audio"][:64].tobytes() for row in examples(dataset, "train", SPEC, files=[files[worker]])
               .as_numpy_iterator()}
        batch = next(iter(train_batches(dataset, SPEC, 2, seed=1, worker=worker, n_workers=2)))
        assert batch["audio"].shape[0] == 2  # half the global batch of 4
        assert {row[:64].tobytes() for row in batch["audio"].numpy()} <= own, worker


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_multi_worker_launcher_stops_the_others_when_one_fails(tmp_path, capsys):
    index = "import json, os, sys, time; i = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
    start = time.monotonic()
    code = run_local_workers(_python(index + "sys.exit(3) if i == 1 else time.sleep(120)"), 2, tmp_path,
                             deadline_secs=60)
    assert code == 3 and time.monotonic() - start < 30
    assert "worker 1 of 2 exited with 3" in capsys.readouterr().err
    # a worker that outlives the deadline is stopped too
    code = run_local_workers(_python(index + "time.sleep(120)"), 2, tmp_path, deadline_secs=1)
    assert code == 124
    assert run_local_workers(_python(index + "print(i)"), 2, tmp_path, deadline_secs=60) == 0
    assert (tmp_path / "worker-1.log").read_text().strip() == "1"


def _project(root: Path, dataset: Path) -> Path:
    params = {"seed": 5, "prepare": {"out_dir": str(dataset), "example_secs": SPEC.example_secs},
              "train": {**TINY, "steps": STEPS, "checkpoint_every": CHECKPOINT_EVERY, "eval_examples": 2,
                        "n_reconstructions": 1, "jit_compile": False, "strategy": "multi_worker", "workers": 2},
              "tracking": {"enabled": False}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _shown_step(text: str) -> int:
    shown = re.findall(rf"\b(\d+)/{STEPS}\b", text)
    return int(shown[-1]) if shown else 0


def _last_loss(text: str) -> str:
    return re.findall(r"loss=([0-9.]+)", text)[-1]


def _workers(launcher: psutil.Process) -> dict[int, psutil.Process]:
    found = {}
    for child in launcher.children():
        try:
            found[json.loads(child.environ()["TF_CONFIG"])["task"]["index"]] = child
        except (psutil.Error, KeyError):
            pass
    return found


def _launch(project: Path, log_name: str) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    log_path = project / log_name
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=project, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    return process, log_path


def test_multi_worker_training_on_two_workers_resumes_after_a_worker_is_killed(dataset, tmp_path):
    project = _project(tmp_path / "project", dataset)
    worker_log = project / "logs" / "train-workers" / "worker-1.log"
    launcher, log_path = _launch(project, "first.log")
    try:
        deadline = time.monotonic() + DEADLINE_SECS
        while _shown_step(log_path.read_text(errors="replace")) <= CHECKPOINT_EVERY + 1:
            assert launcher.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no step {CHECKPOINT_EVERY + 1} in {DEADLINE_SECS} s"
            time.sleep(0.05)
        workers = _workers(psutil.Process(launcher.pid))
        assert sorted(workers) == [0, 1]
        workers[1].send_signal(signal.SIGKILL)
        # the chief would block in collectives: the launcher stops it and fails
        assert launcher.wait(timeout=60) != 0
        psutil.wait_procs(list(workers.values()), timeout=30)
        assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE
                       for worker in workers.values())
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    first = log_path.read_text(errors="replace")
    assert "worker 1 of 2 was killed by SIGKILL" in first, first[-3000:]
    checkpoints = project / "models" / "checkpoints"
    restored = max(int(p.stem.split("-")[1]) for p in checkpoints.glob("ckpt-*.index"))
    assert CHECKPOINT_EVERY <= restored < STEPS
    assert not (project / "models" / "autoencoder").exists()

    launcher, log_path = _launch(project, "second.log")
    try:
        assert launcher.wait(timeout=DEADLINE_SECS) == 0, log_path.read_text()[-3000:]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    chief, worker = log_path.read_text(errors="replace"), worker_log.read_text(errors="replace")
    # both workers resumed from the chief's checkpoint and stepped in lockstep to the end
    for text in (chief, worker):
        assert f"resuming from step {restored}" in text
        assert _shown_step(text) == STEPS
    assert _last_loss(chief) == _last_loss(worker)  # the loss is reduced over both workers' halves
    # only the chief published: checkpoints in one folder, no scratch left behind
    metrics = json.loads((project / "metrics" / "train.json").read_text())
    assert metrics["steps"] == STEPS and metrics["trained"]["spectral_distance"] > 0
    with (project / "metrics" / "train_loss.csv").open() as handle:
        steps = [int(line.split(",")[0]) for line in handle.readlines()[1:]]
    assert steps == list(range(1, STEPS + 1))

    # the result loads and decodes like a single-worker model
    from pipeline.dataset.reader import ordered_batches
    from pipeline.model.decode import encode_z, synthesize
    from pipeline.model.store import load_model, read_config

    model = load_model(project / "models" / "autoencoder")
    assert read_config(project / "models" / "autoencoder")[0].strategy == "multi_worker"
    batch = next(iter(ordered_batches(dataset, "eval", SPEC, 2)))
    features = {key: batch[key] for key in ("audio", "f0_hz", "loudness_db")}
    z = encode_z(model, features)
    assert z.shape == (2, TINY["z_time_steps"], TINY["z_dims"])
    audio = synthesize(model, batch["f0_hz"], batch["loudness_db"], z, SPEC.frame_rate).harmonic
    assert audio.shape[0] == 2 and np.isfinite(audio).all() and np.abs(audio).max() > 0
