"""Reading prepared examples back (for plots, tests and later stages)."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.tfrecord import DatasetSpec, feature_spec, shard_pattern


def iter_examples(folder: str | Path, split: str, limit: int | None = None) -> Iterator[dict]:
    """Decoded examples of one split, in shard order, as numpy arrays (``source`` as str)."""
    import tensorflow as tf

    spec = DatasetSpec.load(folder)
    files = sorted(glob.glob(shard_pattern(folder, split)))
    parse = feature_spec(spec)
    dataset = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, parse))
    if limit is not None:
        dataset = dataset.take(limit)
    for example in dataset.as_numpy_iterator():
        example["source"] = example["source"].decode()
        example["offset_secs"] = float(np.asarray(example["offset_secs"]))
        yield example
