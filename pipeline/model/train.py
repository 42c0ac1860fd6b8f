"""Our training loop: a compiled step over a cached tf.data pipeline, with resumable checkpoints.

Faster than ddsp's stock ``trainers.Trainer`` on the same model (bench/train_throughput.py):
the forward and backward pass is one XLA cluster (``jit_compile``), which fuses the synthesiser's
per-sample elementwise work, while the optimizer update stays outside it so that cross-replica
gradient reduction under a distribution strategy still works; the input pipeline parses each
example once and keeps it in memory.

A run killed at any point (kill -9 included) restarts from its newest checkpoint: TensorFlow's
CheckpointManager writes the checkpoint files first and then replaces the ``checkpoint`` index
file, so a half-written checkpoint is never the one restored. At most ``checkpoint_every`` steps
are lost. The loss log lives beside the checkpoints and is cut back to the restored step.

A resumed run is exact: it ends with the weights and optimiser state of an uninterrupted run with
the same params, bit for bit (tests/test_model.py). Nothing it draws depends on the process: the
batch order is a function of (seed, step) (:func:`pipeline.dataset.reader.train_batches`, started at
the restored step), and the noise synth's white noise is drawn statelessly from (seed, step,
replica) inside the train step instead of from TensorFlow's global generator.

The checkpoint folder outlives DVC reruns on purpose, so it records which run it belongs to
(``run.json``: the resolved train params that shape the model and its optimisation, the seed,
and the prepared data). A run with another identity does not resume from it: the folder is
cleared and training starts at step 0. Only run-length, placement and reporting keys (``steps``,
``checkpoint_every``, ``strategy``, ...) may change between a run and its resumption, so raising
``steps`` continues a finished run.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import tensorflow as tf
from tqdm import tqdm

from pipeline.config import Params, TrainParams
from pipeline.dataset.reader import shard_files, train_batches
from pipeline.dataset.tfrecord import SPLITS, DatasetSpec
from pipeline.model.build import build_autoencoder, resolve_for_dataset, use_generic_gru_kernels
from pipeline.model.decode import seeded_noise
from pipeline.model.distribute import is_chief, make_strategy, use_mixed_precision
from pipeline.model.heldout import Evaluator
from pipeline.model.store import placeholder_batch
from pipeline.publish import write_json_atomic
from pipeline.vocab import WALL_CLOCK_FIELDS

LOSS_LOG = "loss.csv"
UNTRAINED_METRICS = "untrained_metrics.json"
RUN_FILE = "run.json"
# keys a resumed run may change: how long and where to train and what to report, not what is trained
RESUMABLE_KEYS = ("steps", "checkpoint_every", "keep_checkpoints", "n_reconstructions",
                  "model_dir", "checkpoint_dir", "strategy", "workers", "jit_compile")


def run_identity(train: TrainParams, spec: DatasetSpec, data_dir: str | Path, seed: int) -> dict:
    """What checkpoints must share to be resumable: model and optimiser params, seed, and the data."""
    shards = {Path(f).name: Path(f).stat().st_size for split in SPLITS for f in shard_files(data_dir, split)}
    return {"train": train.resolved().model_dump(mode="json", exclude=set(RESUMABLE_KEYS)),
            "seed": seed, "dataset": asdict(spec), "shards": shards}


def claim_checkpoint_dir(checkpoint_dir: str | Path, identity: dict) -> bool:
    """Make ``checkpoint_dir`` this run's; True if it held another run's checkpoints (now removed)."""
    folder = Path(checkpoint_dir)
    record = folder / RUN_FILE
    stale = folder.exists() and any(folder.iterdir()) and (
        not record.exists() or json.loads(record.read_text()) != identity)
    if stale:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, identity)
    return stale


class LossLog:
    """``step, loss, <each loss term>, steps_per_s`` rows in a CSV, buffered between checkpoints."""

    def __init__(self, path: Path):
        self.path = path
        self._rows: list[dict] = []

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (written before a kill, after the checkpoint we resume from)."""
        self._rows = []
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            # a line cut short by a kill has missing fields: it goes too
            kept = [row for row in reader if None not in row.values() and int(row["step"]) <= step]
            fields = reader.fieldnames
        if not fields:
            self.path.unlink()
            return
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(partial, self.path)

    def append(self, row: dict) -> None:
        self._rows.append(row)

    def flush(self) -> None:
        if not self._rows:
            return
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self._rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(self._rows)
        self._rows = []


def read_loss_log(path: str | Path) -> list[dict]:
    """The loss log's rows with numbers, as :class:`LossLog` wrote them."""
    with Path(path).open(newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def make_optimizer(train: TrainParams, mixed_precision: bool) -> tf.keras.optimizers.Optimizer:
    """ddsp's optimiser: Adam with exponential learning-rate decay (loss-scaled under float16)."""
    schedule = tf.keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=train.learning_rate, decay_steps=train.lr_decay_steps, decay_rate=train.lr_decay_rate)
    optimizer = tf.keras.optimizers.Adam(schedule)
    return tf.keras.mixed_precision.LossScaleOptimizer(optimizer) if mixed_precision else optimizer


class Trainer:
    """Owns the model, optimizer, step counter and checkpoints of one training run."""

    def __init__(self, build_model: Callable[[], tf.keras.Model], train: TrainParams,
                 strategy: tf.distribute.Strategy, checkpoint_dir: str | Path, mixed_precision: bool = False,
                 noise_seed: int = 0):
        self.train = train.resolved()
        self.noise_seed = noise_seed  # with the step, keys the noise synth's draws
        self.strategy = strategy
        self.mixed_precision = mixed_precision
        with strategy.scope():
            self.model = build_model()
            if self.train.jit_compile:
                use_generic_gru_kernels(self.model)
            self.optimizer = make_optimizer(self.train, mixed_precision)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        # every task restores the chief's checkpoints (a shared folder on a cluster); every multi-worker
        # task must also save, so the others save to a scratch folder that is thrown away
        self.checkpoint_dir = Path(checkpoint_dir)
        self.chief = is_chief()
        self.save_dir = self.checkpoint_dir if self.chief else Path(tempfile.mkdtemp(prefix="worker-ckpt-"))
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.save_dir),
                                                  max_to_keep=self.train.keep_checkpoints, step_counter=self.step)
        self.loss_log = LossLog(self.save_dir / LOSS_LOG)
        self._gradients = tf.function(self._gradients_fn, jit_compile=self.train.jit_compile)
        self._source, self._iterator = None, None

    def build(self, batch: dict) -> None:
        """Create the model's and optimizer's variables (so a checkpoint restores into them at once)."""
        self.strategy.run(tf.function(lambda features: self.model(features, training=False)),
                          args=(self._first_replica_batch(batch),))
        with self.strategy.scope():
            self.optimizer.build(self.model.trainable_variables)

    def restore(self) -> int:
        """Load the newest checkpoint if there is one; return the step training continues from."""
        latest = tf.train.latest_checkpoint(str(self.checkpoint_dir))
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(self.step.numpy())
        self.loss_log.truncate_after(step)
        return step

    def save(self) -> None:
        self.loss_log.flush()
        self.manager.save(checkpoint_number=int(self.step.numpy()))

    def close(self) -> None:
        """Remove a non-chief task's scratch checkpoints."""
        if not self.chief:
            shutil.rmtree(self.save_dir, ignore_errors=True)

    def fit(self, dataset: tf.data.Dataset | Callable[[tf.distribute.InputContext], tf.data.Dataset],
            steps: int | None = None, progress: bool = True) -> int:
        """Train until ``steps`` (default: train.steps); returns the final step (``progress``: a progress bar).

        ``dataset`` gives global batches, or is a function of the input context that gives each
        worker its own per-replica batches (``distribute_datasets_from_function``).
        """
        steps = self.train.steps if steps is None else steps
        # a later fit on the same dataset continues its stream (no refilled shuffle buffer, no repeats)
        if self._source is not dataset:
            distributed = (self.strategy.experimental_distribute_dataset(dataset)
                           if isinstance(dataset, tf.data.Dataset)
                           else self.strategy.distribute_datasets_from_function(dataset))
            self._source, self._iterator = dataset, iter(distributed)
        iterator = self._iterator
        step = int(self.step.numpy())
        with tqdm(total=steps, initial=step, unit="step", dynamic_ncols=True, desc="train", disable=not progress) as bar:
            last = time.perf_counter()
            while step < steps:
                losses = {name: float(value) for name, value in self._train_step(iterator).items()}
                step = int(self.step.numpy())
                now = time.perf_counter()
                rate, last = 1.0 / max(now - last, 1e-9), now
                self.loss_log.append({"step": step, "loss": losses["total_loss"],
                                      **{k: v for k, v in losses.items() if k != "total_loss"}, "steps_per_s": rate})
                bar.set_postfix(loss=f"{losses['total_loss']:.4f}", steps_per_s=f"{rate:.2f}")
                bar.update(1)
                if step % self.train.checkpoint_every == 0 or step == steps:
                    self.save()
        return step

    @tf.function
    def _train_step(self, iterator) -> dict:
        key = tf.stack([tf.constant(self.noise_seed, tf.int64), self.step.read_value()])
        per_replica = self.strategy.run(self._replica_step, args=(next(iterator), key))
        self.step.assign_add(1)
        return {name: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in per_replica.items()}

    def _replica_step(self, batch: dict, key: tf.Tensor) -> dict:
        # replicas draw different noise: key (seed, step * replicas + replica)
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        key = tf.stack([key[0], key[1] * self.strategy.num_replicas_in_sync + replica])
        # across workers tf.distribute leaves the batch dimension unknown; ddsp's synths need it
        per_replica = self.train.batch_size // self.strategy.num_replicas_in_sync
        batch = {name: tf.ensure_shape(value, [per_replica, *value.shape[1:]]) for name, value in batch.items()}
        grads, losses = self._gradients(batch, key)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return losses

    def _gradients_fn(self, batch: dict, noise_key: tf.Tensor):
        with tf.GradientTape() as tape, seeded_noise(self.model.processor_group, noise_key):
            _, losses = self.model(batch, return_losses=True, training=True)
            # replicas' gradients are summed when applied, so each contributes its share of the mean
            loss = losses["total_loss"] / self.strategy.num_replicas_in_sync
            if self.mixed_precision:
                loss = self.optimizer.get_scaled_loss(loss)
        grads = tape.gradient(loss, self.model.trainable_variables)
        if self.mixed_precision:
            grads = self.optimizer.get_unscaled_gradients(grads)
        grads, _ = tf.clip_by_global_norm(grads, self.train.grad_clip_norm)
        return grads, losses

    def _first_replica_batch(self, batch: dict) -> dict:
        per_replica = max(1, int(next(iter(batch.values())).shape[0]) // self.strategy.num_replicas_in_sync)
        return {name: value[:per_replica] for name, value in batch.items()}


def untrained_metrics(trainer: Trainer, start_step: int, evaluate: Callable[[tf.keras.Model], dict]) -> dict:
    """Held-out metrics of the initial weights, measured before step 0 of a fresh run.

    They are stored beside the checkpoints before the first checkpoint can exist, so a resumed run
    (whose initial weights are gone) reports the same numbers.
    """
    path = trainer.checkpoint_dir / UNTRAINED_METRICS
    if not trainer.chief:  # another task's metrics are never published
        return {}
    if start_step == 0:
        metrics = evaluate(trainer.model)
        write_json_atomic(path, metrics)
        return metrics
    if not path.exists():
        raise RuntimeError(f"{path} is missing although checkpoints exist: delete {trainer.checkpoint_dir} "
                           "to train from scratch")
    return json.loads(path.read_text())


@dataclass
class TrainResult:
    """What one training run leaves for the stage to publish (the chief's view)."""

    model: tf.keras.Model
    train: TrainParams       # resolved: every preset value filled in
    spec: DatasetSpec
    steps: int
    untrained: dict
    trained: dict
    evaluator: Evaluator
    loss_log: Path           # the run's loss log beside its checkpoints


def batches_for(strategy: tf.distribute.Strategy, data_dir: Path, spec: DatasetSpec, batch_size: int, seed: int,
                start_step: int) -> tf.data.Dataset | Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """The training batches from ``start_step`` on: global batches, or on several workers a function giving
    each worker its share of every global batch from its own shards (all workers step in lockstep)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            return train_batches(data_dir, spec, context.get_per_replica_batch_size(batch_size), seed=seed,
                                 start_step=start_step, worker=context.input_pipeline_id,
                                 n_workers=context.num_input_pipelines)
        return per_worker
    return train_batches(data_dir, spec, batch_size, seed=seed, start_step=start_step)


def train_autoencoder(params: Params, data_dir: Path, checkpoint_dir: Path) -> TrainResult | None:
    """Train (or resume training) the autoencoder of ``params.train`` on the prepared data.

    Returns None on a non-chief multi-worker task, which publishes nothing.
    """
    spec = DatasetSpec.load(data_dir)
    train = resolve_for_dataset(params.train, spec)
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
    try:
        untrained = untrained_metrics(trainer, start, evaluator)
        # the batches from the restored step on: exactly those an uninterrupted run trains on
        steps = trainer.fit(batches_for(trainer.strategy, data_dir, spec, train.batch_size, params.seed, start))
    finally:
        trainer.close()
    if not trainer.chief:
        return None
    return TrainResult(trainer.model, train, spec, steps, untrained, evaluator(trainer.model), evaluator,
                       trainer.checkpoint_dir / LOSS_LOG)


def loss_curve_rows(path: str | Path) -> list[dict]:
    """The loss log's rows as written (text), without wall-clock columns: what DVC tracks as the curve."""
    with Path(path).open(newline="") as handle:
        return [{key: value for key, value in row.items() if key not in WALL_CLOCK_FIELDS}
                for row in csv.DictReader(handle)]
