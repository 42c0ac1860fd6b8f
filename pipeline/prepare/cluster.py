"""The dask.distributed side of ``prepare.beam.runner: dask``: which scheduler, and the workers' set-up.

With ``prepare.beam.dask.address`` null, a ``distributed.LocalCluster`` of ``prepare.beam.num_workers``
worker processes (one thread each) is started on 127.0.0.1 (not Dask's default cluster, which listens on
every interface and takes every core) and closed when prepare ends. With an address (a dask-kubernetes or
dask-jobqueue cluster, or ``dask scheduler``), its workers are used as they are: they need this project
installed (the DoFns are this package's classes) and ``prepare.out_dir`` on storage they share with the
process that runs prepare (they write the shards).

Every worker gets :class:`WorkerSetup` before it runs a task, in the workers already there and in those
that join later: it imports :mod:`pipeline` as the local runner's workers do when they unpickle a DoFn,
so legacy Keras is selected before TensorFlow loads, the ``crepe`` stand-in is registered and
TensorFlow's benign start-up lines are filtered.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from distributed import Client, LocalCluster, WorkerPlugin

from pipeline.config import BeamParams

LOG = logging.getLogger(__name__)
PLUGIN_NAME = "gddsp-prepare-setup"


class WorkerSetup(WorkerPlugin):
    """What a dask worker does before prepare's tasks: the project's TensorFlow set-up (pipeline.compat)."""

    def setup(self, worker) -> None:
        import pipeline  # noqa: F401  (pipeline.compat: TF_USE_LEGACY_KERAS before TensorFlow, crepe stand-in)
        from pipeline import compat

        compat.check_legacy_keras()


def start_local_cluster(num_workers: int, timeout_secs: float) -> LocalCluster:
    """``num_workers`` worker processes bound to 127.0.0.1, one thread each, no dashboard (the scheduler's
    HTTP endpoint on a free port of 127.0.0.1, not 8787). Worker processes are spawned: a script that runs
    prepare on dask needs the ``if __name__ == "__main__":`` guard, as with multiprocessing."""
    # distributed's nannies write their workers' environment (OMP_NUM_THREADS=1, PYTHONHASHSEED, ...) into this
    # process's os.environ; every later subprocess (a DVC stage run by the same Python) would inherit it
    environ = dict(os.environ)
    try:
        return LocalCluster(n_workers=num_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            protocol="tcp", dashboard_address=None, death_timeout=timeout_secs,
                            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
    finally:
        os.environ.clear()
        os.environ.update(environ)


@contextlib.contextmanager
def dask_scheduler(beam_params: BeamParams) -> Iterator[str]:
    """The scheduler address for the run: ``prepare.beam.dask.address``, or a LocalCluster's (closed on exit).

    The set-up plugin is registered before the pipeline is submitted; a LocalCluster's workers are waited
    for, each wait with ``prepare.beam.dask.connect_timeout_secs``.
    """
    dask = beam_params.dask
    timeout = dask.connect_timeout_secs
    logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines are per worker and connection
    cluster = start_local_cluster(beam_params.num_workers, timeout) if dask.address is None else None
    address = dask.address or cluster.scheduler_address
    try:
        with Client(address, timeout=timeout, set_as_default=False) as client:
            client.register_plugin(WorkerSetup(), name=PLUGIN_NAME)
            if cluster is not None:
                client.wait_for_workers(beam_params.num_workers, timeout=timeout)
            LOG.info("prepare: dask scheduler %s, %d workers", address, len(client.scheduler_info()["workers"]))
            yield address
    finally:
        if cluster is not None:
            cluster.close(timeout=timeout)
