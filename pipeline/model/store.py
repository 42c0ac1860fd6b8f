"""The saved model folder: weights plus everything needed to rebuild the model without retraining.

``config.json`` holds the resolved ``train`` section and the DatasetSpec it was trained on;
``weights/`` a model-only TensorFlow checkpoint (no optimizer state). ``load_model`` rebuilds the
Autoencoder from the config with :func:`pipeline.model.build.build_autoencoder` and restores it.
Write into a staging folder (``pipeline.publish.staged_dir``) so the folder appears whole or not at all.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.config import TrainParams
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.model.build import build_autoencoder

CONFIG_FILE = "config.json"
WEIGHTS_PREFIX = "weights/model"


def write_model(model, folder: str | Path, train: TrainParams, spec: DatasetSpec) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(model=model).write(str(folder / WEIGHTS_PREFIX))
    config = {"train": train.resolved().model_dump(mode="json"), "dataset": asdict(spec)}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def read_config(folder: str | Path) -> tuple[TrainParams, DatasetSpec]:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the train stage first")
    config = json.loads(path.read_text())
    return TrainParams.model_validate(config["train"]), DatasetSpec(**config["dataset"])


def load_model(folder: str | Path):
    """The trained ddsp Autoencoder saved in ``folder``, ready for inference."""
    train, spec = read_config(folder)
    model = build_autoencoder(train, spec)
    model(placeholder_batch(spec), training=False)  # create the variables the checkpoint fills
    tf.train.Checkpoint(model=model).read(str(Path(folder) / WEIGHTS_PREFIX)).assert_existing_objects_matched()
    return model


def placeholder_batch(spec: DatasetSpec, batch_size: int = 1) -> dict[str, tf.Tensor]:
    """A silent batch with the model's input shapes."""
    return {"audio": tf.zeros([batch_size, spec.n_samples]),
            "f0_hz": tf.fill([batch_size, spec.n_frames], np.float32(220.0)),
            "loudness_db": tf.fill([batch_size, spec.n_frames], np.float32(-80.0))}
