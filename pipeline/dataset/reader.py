"""The one reader of prepared TFRecord shards: tf.data pipelines for training, evaluation and z extraction,
and decoded numpy examples for plots, conditioning and tests.

Training caches the parsed examples in memory after the first pass (only the keys the model reads:
the 16 kHz audio copy is dropped), then shuffles, repeats, batches and prefetches, so on a 2-core
machine the step never waits for parsing. Evaluation and extraction read in a fixed order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow as tf

from pipeline.dataset.tfrecord import DatasetSpec, feature_spec, shard_pattern

MODEL_KEYS = ("audio", "f0_hz", "loudness_db")
EVAL_KEYS = MODEL_KEYS + ("f0_confidence",)
SHUFFLE_BUFFER = 4096


def shard_files(folder: str | Path, split: str) -> list[str]:
    files = sorted(tf.io.gfile.glob(shard_pattern(folder, split)))
    if not files:
        raise FileNotFoundError(f"no {split} shards match {shard_pattern(folder, split)}: run the prepare stage first")
    return files


def examples(folder: str | Path, split: str, spec: DatasetSpec, keys=MODEL_KEYS) -> tf.data.Dataset:
    """Unbatched examples of one split, in a deterministic order (shards sorted, read in turn)."""
    full_spec = feature_spec(spec)
    wanted = {key: full_spec[key] for key in keys}
    return tf.data.TFRecordDataset(shard_files(folder, split)).map(
        lambda record: tf.io.parse_single_example(record, wanted),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def train_batches(folder: str | Path, spec: DatasetSpec, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless shuffled batches of the train split (fixed batch shape, as ddsp's synths need)."""
    dataset = examples(folder, "train", spec).cache()
    dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


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
