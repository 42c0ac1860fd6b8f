"""The one reader of prepared TFRecord shards: tf.data pipelines for training, evaluation and z extraction,
and decoded numpy examples for plots, conditioning and tests.

Training holds the parsed train split in memory (only the keys the model reads: the 16 kHz audio
copy is dropped) and gathers each batch from it by index, so on a 2-core machine the step never
waits for parsing. The order is a pure function of (seed, step): epoch ``e`` visits the examples in
a permutation drawn statelessly from (seed, e), and the example stream is cut into batches, so
batch ``i`` is the same whether a run reaches it directly or resumes at step ``i`` after a kill
(no dataset iterator needs checkpointing). Evaluation and extraction read in a fixed order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf

from pipeline.dataset.tfrecord import DatasetSpec, feature_spec, shard_pattern

MODEL_KEYS = ("audio", "f0_hz", "loudness_db")
EVAL_KEYS = MODEL_KEYS + ("f0_confidence",)


def shard_files(folder: str | Path, split: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(shard_pattern(folder, split)))
    if not files:
        raise FileNotFoundError(f"no {split} shards match {shard_pattern(folder, split)}: run the prepare stage first")
    return files


def worker_shards(folder: str | Path, split: str, worker: int = 0, n_workers: int = 1) -> list[str]:
    """The shards of ``split`` that worker ``worker`` of ``n_workers`` reads: every n-th, from its index."""
    if not 0 <= worker < n_workers:
        raise ValueError(f"worker index {worker} is not in [0, {n_workers})")
    files = shard_files(folder, split)
    if len(files) < n_workers:
        raise ValueError(f"{n_workers} training workers need at least {n_workers} {split} shards, but {folder} has "
                         f"{len(files)}: raise prepare.num_shards")
    return files[worker::n_workers]


def examples(folder: str | Path, split: str, spec: DatasetSpec, keys=MODEL_KEYS,
             files: list[str] | None = None) -> tf.data.Dataset:
    """Unbatched examples of one split (or of ``files``), in a deterministic order (shards sorted, read in turn)."""
    full_spec = feature_spec(spec)
    wanted = {key: full_spec[key] for key in keys}
    return tf.data.TFRecordDataset(shard_files(folder, split) if files is None else files).map(
        lambda record: tf.io.parse_single_example(record, wanted),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def epoch_order(n_examples: int, seed: int, epoch) -> tf.Tensor:
    """The example indices [n_examples] of one epoch: a permutation drawn statelessly from (seed, epoch)."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.stateless_shuffle(tf.range(n_examples, dtype=tf.int64), seed=key)


def train_batches(folder: str | Path, spec: DatasetSpec, batch_size: int, seed: int,
                  start_step: int = 0, worker: int = 0, n_workers: int = 1) -> tf.data.Dataset:
    """Endless shuffled batches of the train split from batch ``start_step`` on (fixed batch shape, as
    ddsp's synths need); batch ``i`` depends only on (seed, i), the data and ``batch_size``.

    With ``n_workers`` > 1, worker ``worker`` reads only its own shards (:func:`worker_shards`) and
    ``batch_size`` is its share of the global batch.
    """
    split = examples(folder, "train", spec, files=worker_shards(folder, "train", worker, n_workers))
    n_examples = int(split.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
    if n_examples < batch_size:
        where = f"worker {worker}'s shards of {folder}" if n_workers > 1 else folder
        raise ValueError(f"train.batch_size {batch_size} is larger than the {n_examples} train examples in {where}")
    table = split.batch(n_examples).get_single_element()  # {key: [n_examples, ...]}, in file order
    first_epoch, offset = divmod(start_step * batch_size, n_examples)
    order = tf.data.Dataset.range(first_epoch, 2**62).flat_map(
        lambda epoch: tf.data.Dataset.from_tensor_slices(epoch_order(n_examples, seed, epoch)))
    batches = order.skip(offset).batch(batch_size, drop_remainder=True)
    return batches.map(lambda indices: {key: tf.gather(value, indices) for key, value in table.items()},
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def ordered_batches(folder: str | Path, split: str, spec: DatasetSpec, batch_size: int,
                    keys=EVAL_KEYS, limit: int | None = None) -> tf.data.Dataset:
    """One pass over a split in file order; the last batch may be short."""
    dataset = examples(folder, split, spec, keys)
    if limit is not None:
        dataset = dataset.take(limit)
    return dataset.batch(batch_size).prefetch(2)


def iter_examples(folder: str | Path, split: str, limit: int | None = None) -> Iterator[dict]:
    """Decoded examples of one split, in shard order, as numpy arrays (``source`` as str)."""
    spec = DatasetSpec.load(folder)
    parse = feature_spec(spec)
    dataset = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(shard_pattern(folder, split))))
    dataset = dataset.map(lambda r: tf.io.parse_single_example(r, parse))
    if limit is not None:
        dataset = dataset.take(limit)
    for example in dataset.as_numpy_iterator():
        example["source"] = example["source"].decode()
        example["offset_secs"] = float(np.asarray(example["offset_secs"]))
        yield example
