"""Where training runs: a tf.distribute strategy from params, and mixed precision on GPUs only.

- ``default``: TensorFlow's default strategy, one device (a GPU when one is visible).
- ``mirrored``: synchronous data parallelism over the local GPUs (or the CPU when there is none).
- ``multi_worker``: MultiWorkerMirroredStrategy; the cluster comes from the ``TF_CONFIG``
  environment variable (set by a scheduler, or by :mod:`pipeline.model.launch`). Only the chief
  writes checkpoints and the model; every worker restores the chief's, and the others save to a
  scratch folder, as TensorFlow requires every worker to save.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

MIXED_POLICY = "mixed_float16"


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise RuntimeError("train.strategy 'multi_worker' needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def is_chief() -> bool:
    """True unless TF_CONFIG names this process as a task other than the chief."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if task.get("type") in (None, "chief"):
        return True
    return task["type"] == "worker" and task.get("index", 0) == 0 and "chief" not in config.get("cluster", {})


def gpu_available() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def use_mixed_precision(requested: bool) -> bool:
    """Set the global Keras policy before the model is built; float16 only pays off on GPUs."""
    enabled = requested and gpu_available()
    tf.keras.mixed_precision.set_global_policy(MIXED_POLICY if enabled else "float32")
    return enabled
