"""Launching multi-worker training: one process per worker, each with its own ``TF_CONFIG``.

MultiWorkerMirroredStrategy reads the cluster from ``TF_CONFIG``. On a cluster each pod gets it
from its scheduler; :func:`tf_config_from_env` builds it for a Kubernetes Indexed Job (one pod per
worker, ``JOB_COMPLETION_INDEX`` set by Kubernetes, the peers' addresses in ``GDDSP_WORKER_HOSTS``,
see deploy/k8s-train-workers.yaml). On one machine :func:`run_local_workers` starts the workers on
127.0.0.1 and watches them: a worker blocks in collectives forever once a peer is gone, so when one
exits with an error (or is killed) the others are stopped, and the launcher fails with that code.
Rerunning resumes every worker from the chief's newest checkpoint.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

HOSTS_ENV = "GDDSP_WORKER_HOSTS"   # comma-separated host:port of every worker, in index order
INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes on each pod of an Indexed Job
STOP_GRACE_SECS = 10.0


def tf_config(hosts: Sequence[str], index: int) -> dict:
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of workers only (worker 0 is the chief)."""
    if not 0 <= index < len(hosts):
        raise ValueError(f"worker index {index} is not in [0, {len(hosts)})")
    return {"cluster": {"worker": list(hosts)}, "task": {"type": "worker", "index": index}}


def tf_config_from_env(env: Mapping[str, str]) -> dict | None:
    """``TF_CONFIG`` as set, else built from an Indexed Job's ``GDDSP_WORKER_HOSTS`` and index; None if neither."""
    if env.get("TF_CONFIG"):
        return json.loads(env["TF_CONFIG"])
    if env.get(HOSTS_ENV):
        if INDEX_ENV not in env:
            raise RuntimeError(f"{HOSTS_ENV} is set but {INDEX_ENV} is not: which worker is this?")
        hosts = [host.strip() for host in env[HOSTS_ENV].split(",") if host.strip()]
        return tf_config(hosts, int(env[INDEX_ENV]))
    return None


def ensure_tf_config() -> bool:
    """Set ``TF_CONFIG`` from an Indexed Job's variables if it is not set; True if this process is a worker now."""
    config = tf_config_from_env(os.environ)
    if config is not None:
        os.environ["TF_CONFIG"] = json.dumps(config)
    return config is not None


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the launcher dies, even by kill -9 (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_local_workers(command: Sequence[str], n_workers: int, log_dir: str | Path, *, cwd: str | Path | None = None,
                      env: Mapping[str, str] | None = None, deadline_secs: float | None = None,
                      poll_secs: float = 0.2) -> int:
    """Run ``command`` as ``n_workers`` workers on 127.0.0.1; return 0 when all succeed, else the first failure's code.

    Worker 0 (the chief) writes to this process's stdout and stderr; worker i > 0 to
    ``log_dir/worker-<i>.log``, whose tail is printed if it fails. With ``deadline_secs`` the
    workers are stopped after that long and the code is 124, as timeout(1) gives.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    hosts = [f"127.0.0.1:{port}" for port in free_ports(n_workers)]
    base = dict(os.environ if env is None else env)
    processes, logs = [], []
    # SIGTERM (a cancelled flow run, a stopped container) stops the workers too
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        for index in range(n_workers):
            worker_env = {**base, "TF_CONFIG": json.dumps(tf_config(hosts, index))}
            worker_env.pop(HOSTS_ENV, None)
            if index == 0:
                out = None
            else:
                out = open(log_dir / f"worker-{index}.log", "w")
                logs.append(out)
            processes.append(subprocess.Popen(list(command), cwd=cwd, env=worker_env, stdout=out,
                                              stderr=subprocess.STDOUT if out else None,
                                              preexec_fn=_die_with_parent))
        start = time.monotonic()
        while True:
            codes = [process.poll() for process in processes]
            failed = [(index, code) for index, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                index, code = failed[0]
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
                print(f"train: worker {index} of {n_workers} {how}: stopping the others "
                      f"(a rerun resumes from the newest checkpoint)", file=sys.stderr, flush=True)
                if index:
                    _print_tail(log_dir / f"worker-{index}.log")
                return code if code > 0 else 128 - code
            if all(code == 0 for code in codes):
                return 0
            if deadline_secs is not None and time.monotonic() - start > deadline_secs:
                print(f"train: workers still running after {deadline_secs:g} s: stopped", file=sys.stderr,
                      flush=True)
                return 124
            time.sleep(poll_secs)
    finally:
        _stop(processes)
        for out in logs:
            out.close()
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _print_tail(path: Path, lines: int = 40) -> None:
    if path.exists():
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last lines of {path}:", *tail, sep="\n", file=sys.stderr, flush=True)
