"""Prepared examples in ddsp's TFRecord format, and the spec that travels with them.

Each example holds ddsp's feature names, so ``ddsp.training.data.TFRecordProvider`` reads the shards
unchanged (it also asks for ``audio_16k``, its CREPE-rate copy of the audio):

- ``audio`` [n_samples] and ``audio_16k`` [example_secs * 16000] float32 in [-1, 1]
- ``f0_hz``, ``f0_confidence``, ``loudness_db`` [n_frames] float32, frame i at time i / frame_rate
- ``source`` (relative path of the file it came from), ``offset_secs``: extra keys for provenance,
  ignored by ddsp's parser.

Shards are named ``{split}.tfrecord-SSSSS-of-NNNNN`` inside the prepared folder, beside
``spec.json`` (rates and lengths, so later stages never restate them).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SPLITS = ("train", "eval")
SPEC_FILE = "spec.json"
FLOAT_FEATURES = ("audio", "audio_16k", "f0_hz", "f0_confidence", "loudness_db")


@dataclass(frozen=True)
class DatasetSpec:
    sample_rate: int
    frame_rate: int
    example_secs: float
    f0_method: str

    def __post_init__(self):
        # ddsp's TFRecordProvider computes shapes as example_secs * rate and needs an int there
        if float(self.example_secs).is_integer():
            object.__setattr__(self, "example_secs", int(self.example_secs))

    @property
    def n_samples(self) -> int:
        return round(self.example_secs * self.sample_rate)

    @property
    def n_frames(self) -> int:
        return round(self.example_secs * self.frame_rate)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SPEC_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "DatasetSpec":
        path = Path(folder) / SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the prepare stage first")
        return cls(**json.loads(path.read_text()))


def shard_prefix(folder: str | Path, split: str) -> str:
    return str(Path(folder) / f"{split}.tfrecord")


def shard_path(prefix: str, shard: int, num_shards: int) -> str:
    """``{prefix}-SSSSS-of-NNNNN``, Beam's default shard name template."""
    return f"{prefix}-{shard:05d}-of-{num_shards:05d}"


def shard_pattern(folder: str | Path, split: str) -> str:
    """Glob for one split's shards, as ddsp's TFRecordProvider(file_pattern=...) takes it."""
    return shard_prefix(folder, split) + "-*"


def encode_example(features: dict[str, np.ndarray], source: str, offset_secs: float) -> bytes:
    """Serialise one window as a ``tf.train.Example``."""
    import tensorflow as tf  # deferred: workers that only list files need not load TF

    # built in place, each array handed over as one .tolist() (plain floats in one C call): a FloatList
    # built from a numpy array, or built apart and copied into the map, costs several times more
    example = tf.train.Example()
    feature = example.features.feature
    for name in FLOAT_FEATURES:
        feature[name].float_list.value.extend(np.asarray(features[name], np.float32).tolist())
    feature["source"].bytes_list.value.append(source.encode())
    feature["offset_secs"].float_list.value.append(float(offset_secs))
    # deterministic: map entries sorted by key, so a process's hash seed never changes the bytes
    return example.SerializeToString(deterministic=True)


def feature_spec(spec: DatasetSpec) -> dict:
    """Parsing spec for every key we write (ddsp's own provider uses a subset)."""
    import tensorflow as tf

    n_16k = round(spec.example_secs * 16000)
    return {
        "audio": tf.io.FixedLenFeature([spec.n_samples], tf.float32),
        "audio_16k": tf.io.FixedLenFeature([n_16k], tf.float32),
        "f0_hz": tf.io.FixedLenFeature([spec.n_frames], tf.float32),
        "f0_confidence": tf.io.FixedLenFeature([spec.n_frames], tf.float32),
        "loudness_db": tf.io.FixedLenFeature([spec.n_frames], tf.float32),
        "source": tf.io.FixedLenFeature([], tf.string),
        "offset_secs": tf.io.FixedLenFeature([], tf.float32),
    }
