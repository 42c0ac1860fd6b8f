"""DVC stage ``train``: train the DDSP autoencoder from params.yaml's ``train`` section.

Run as ``python -m stages.train``. Code: :mod:`pipeline.model` (with :mod:`pipeline.dataset` and
:mod:`pipeline.audio`). Reads the prepared data (``prepare.out_dir``). Outs: ``train.model_dir``
(weights + config.json + held-out reconstructions), ``metrics/train.json`` (held-out metrics of the
untrained and the trained model), ``metrics/train_loss.csv`` (loss curve). Checkpoints go to
``train.checkpoint_dir``, which is deliberately not a DVC out: DVC deletes outs before rerunning a
stage, and a killed run must find its checkpoints to resume.

With ``train.strategy: multi_worker`` and no cluster in the environment (``TF_CONFIG``, or an Indexed
Job's ``GDDSP_WORKER_HOSTS``), this process only launches ``train.workers`` local workers running this
stage (:mod:`pipeline.model.launch`); worker 0 publishes.
"""
from __future__ import annotations

import sys

import pipeline  # noqa: F401  (legacy Keras before TensorFlow loads)
from pipeline.config import load_params, project_root
from pipeline.model.launch import ensure_tf_config, run_local_workers
from pipeline.model.reconstructions import write_reconstructions
from pipeline.model.store import write_model
from pipeline.model.train import loss_curve_rows, read_loss_log, train_autoencoder
from pipeline.paths import RECONSTRUCTIONS, Paths
from pipeline.publish import staged_dir, write_csv_atomic, write_json_atomic
from pipeline.tracking.runs import stage_run


def main() -> None:
    params = load_params()
    paths = Paths(params, project_root())
    if params.train.resolved().strategy == "multi_worker" and not ensure_tf_config():
        # no cluster given: this process launches train.workers local workers running this stage
        sys.exit(run_local_workers([sys.executable, "-m", "stages.train"], params.train.workers,
                                   paths.worker_logs, cwd=paths.root))
    result = train_autoencoder(params, paths.prepared_dir, paths.checkpoint_dir)
    if result is None:  # a multi-worker task other than the chief
        return
    with staged_dir(paths.model_dir) as staging:
        write_model(result.model, staging, result.train, result.spec)
        write_reconstructions(staging / RECONSTRUCTIONS,
                              *result.evaluator.reconstruct(result.model, result.train.n_reconstructions),
                              sample_rate=result.spec.sample_rate)
    write_json_atomic(paths.train_metrics, {"steps": result.steps, "untrained": result.untrained,
                                            "trained": result.trained})
    write_csv_atomic(paths.train_loss, loss_curve_rows(result.loss_log))
    print(f"train: {result.steps} steps; held-out metrics untrained {result.untrained} -> trained "
          f"{result.trained}; model in {paths.model_dir}")
    with stage_run("train", paths.root, params.tracking) as run:
        run.log_params({"seed": params.seed, "train": result.train.model_dump(mode="json")})
        run.log_history(read_loss_log(result.loss_log))  # with steps_per_s, which DVC does not track
        run.log_metrics({**result.trained, "untrained": result.untrained, "steps": result.steps})
        run.log_artifact(paths.train_loss)
        run.log_artifact(paths.model_dir / RECONSTRUCTIONS, RECONSTRUCTIONS)
        run.log_artifact(paths.model_dir, "model")


if __name__ == "__main__":
    main()
