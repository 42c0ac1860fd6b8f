"""DVC stage ``train``: train the DDSP autoencoder from params.yaml's ``train`` section.

Run as ``python -m stages.train``. Reads the prepared data (``prepare.out_dir``). Outs:
``train.model_dir`` (weights + config.json + held-out reconstructions), ``metrics/train.json``
(held-out metrics of the untrained and the trained model), ``metrics/train_loss.csv`` (loss curve).
Checkpoints go to ``train.checkpoint_dir``, which is deliberately not a DVC out: DVC deletes outs
before rerunning a stage, and a killed run must find its checkpoints to resume.
"""
from __future__ import annotations

import shutil

import pipeline  # noqa: F401  (legacy Keras before TensorFlow loads)
import tensorflow as tf

from pipeline.config import load_params, project_root
from pipeline.fsutil import staged_dir, write_json_atomic
from pipeline.model.build import build_autoencoder, resolve_for_dataset
from pipeline.model.data import train_batches
from pipeline.model.distribute import is_chief, make_strategy, use_mixed_precision
from pipeline.model.evaluate import Evaluator
from pipeline.model.reconstructions import write_reconstructions
from pipeline.model.store import placeholder_batch, write_model
from pipeline.model.train import (LOSS_LOG, Trainer, claim_checkpoint_dir, read_loss_log, run_identity,
                                  untrained_metrics)
from pipeline.tfrecord import DatasetSpec
from pipeline.tracking import stage_run

METRICS_FILE = "metrics/train.json"
LOSS_PLOT_FILE = "metrics/train_loss.csv"
RECONSTRUCTIONS = "reconstructions"


def main() -> None:
    params = load_params()
    root = project_root()
    data_dir = root / params.prepare.out_dir
    spec = DatasetSpec.load(data_dir)
    train = resolve_for_dataset(params.train, spec)

    checkpoint_dir = root / train.checkpoint_dir
    if is_chief() and claim_checkpoint_dir(checkpoint_dir, run_identity(train, spec, data_dir, params.seed)):
        print(f"train: {checkpoint_dir} held checkpoints of another configuration or data: removed", flush=True)

    tf.keras.utils.set_random_seed(params.seed)
    mixed = use_mixed_precision(train.mixed_precision)
    trainer = Trainer(lambda: build_autoencoder(train, spec), train, make_strategy(train.strategy), checkpoint_dir,
                      mixed, noise_seed=params.seed)
    trainer.build(placeholder_batch(spec, train.batch_size))
    start = trainer.restore()
    print(f"train: resuming from step {start} in {trainer.checkpoint_dir}" if start else
          f"train: starting at step 0 (no checkpoint in {trainer.checkpoint_dir})", flush=True)
    evaluator = Evaluator(data_dir, spec, train.eval_examples, fmin_hz=params.prepare.f0.fmin_hz,
                          fmax_hz=params.prepare.f0.fmax_hz, noise_seed=params.seed)
    untrained = untrained_metrics(trainer, start, evaluator)
    # the batches from the restored step on: exactly those an uninterrupted run trains on
    steps = trainer.fit(train_batches(data_dir, spec, train.batch_size, seed=params.seed, start_step=start))
    if not is_chief():
        return
    trained = evaluator(trainer.model)

    with staged_dir(root / train.model_dir) as staging:
        write_model(trainer.model, staging, train, spec)
        write_reconstructions(staging / RECONSTRUCTIONS, *evaluator.reconstruct(trainer.model, train.n_reconstructions),
                              sample_rate=spec.sample_rate)
    write_json_atomic(root / METRICS_FILE, {"steps": steps, "untrained": untrained, "trained": trained})
    shutil.copyfile(trainer.checkpoint_dir / LOSS_LOG, root / LOSS_PLOT_FILE)
    print(f"train: {steps} steps; held-out metrics untrained {untrained} -> trained {trained}; "
          f"model in {root / train.model_dir}")
    with stage_run("train", root, params.tracking) as run:
        run.log_params({"seed": params.seed, "train": train.model_dump(mode="json")})
        run.log_history(read_loss_log(root / LOSS_PLOT_FILE))
        run.log_metrics({**trained, "untrained": untrained, "steps": steps})  # trained under the bare names
        run.log_artifact(root / LOSS_PLOT_FILE)
        run.log_artifact(root / train.model_dir / RECONSTRUCTIONS, RECONSTRUCTIONS)
        run.log_artifact(root / train.model_dir, "model")


if __name__ == "__main__":
    main()
