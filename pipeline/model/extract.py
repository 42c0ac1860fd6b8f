"""The trained encoder over every example -> one parquet row per z frame, streamed batch by batch.

Which z frame rate: the encoder's native one (``train.z_time_steps`` frames per example, 125 per 4 s
= 31.25 Hz by default), not the decoder's. ddsp's ``ZEncoder.expand_z`` linearly upsamples native z
to the decoder's frames inside the model, so every z the decoder ever sees is an interpolation
between consecutive native frames. Rows at the decoder's rate would repeat that interpolation
(8x the rows with no new information, nearly-duplicate neighbours that shrink the mixture's
covariances and push frame-to-frame correlation towards 1). Fitting the GMM on native frames models
the encoder's actual output; the sampler draws z on this same grid and hands it to
:func:`pipeline.model.decode.decode`, which upsamples it exactly as ddsp does in training.

``f0_hz`` and ``loudness_db`` are the dataset's per-frame contours resampled onto the z grid with
ddsp's ``core.resample``: the same mapping between the two grids that ddsp uses to upsample z, so
native z frame j sits at dataset frame j * n_frames / z_time_steps, and with an integer ratio
(8 at the defaults) the values are sampled exactly at the z frame times.

Memory stays flat in corpus size: one batch of rows is in memory at a time, written as its own
row group by :func:`pipeline.latent.ztable.z_table_writer`, which renames the table when complete.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipeline.compat import import_ddsp
from pipeline.dataset.reader import ordered_batches
from pipeline.dataset.tfrecord import SPLITS, DatasetSpec
from pipeline.latent.ztable import frames_table, z_table_writer
from pipeline.model.decode import encode_z
from pipeline.model.store import load_model, read_config

EXTRACT_KEYS = ("audio", "f0_hz", "loudness_db", "source")


@dataclass(frozen=True)
class ExtractSummary:
    rows: dict[str, int]
    examples: dict[str, int]
    z_dims: int
    z_time_steps: int
    seconds: float

    @property
    def frames_per_s(self) -> float:
        return sum(self.rows.values()) / max(self.seconds, 1e-9)


def extract_z(model, data_dir: str | Path, spec: DatasetSpec, out_path: str | Path, batch_size: int) -> ExtractSummary:
    """Write the z frames table for both splits of ``data_dir`` to ``out_path`` (atomically)."""
    core = import_ddsp().core
    z_dims = model.encoder.dense_out.units
    encode = tf.function(lambda features: encode_z(model, features))
    rows, examples, z_time_steps = {}, {}, 0
    started = time.perf_counter()
    with z_table_writer(out_path, z_dims) as writer:
        for split in SPLITS:
            rows[split] = examples[split] = 0
            for batch in ordered_batches(data_dir, split, spec, batch_size, keys=EXTRACT_KEYS):
                z = encode({"audio": batch["audio"]}).numpy()
                t = z.shape[1]
                # the contours on the z grid, with the mapping ddsp uses to upsample z
                f0 = core.resample(batch["f0_hz"][..., np.newaxis], t).numpy()[..., 0]
                loudness = core.resample(batch["loudness_db"][..., np.newaxis], t).numpy()[..., 0]
                sources = [s.decode() for s in batch["source"].numpy()]
                table = frames_table(writer.schema, z, f0, loudness, sources, split, first_id=sum(examples.values()))
                writer.write_table(table)
                rows[split] += table.num_rows
                examples[split] += len(z)
                z_time_steps = t
    return ExtractSummary(rows=rows, examples=examples, z_dims=z_dims,
                          z_time_steps=int(z_time_steps), seconds=time.perf_counter() - started)


def extract_checked(model_dir: Path, data_dir: Path, out_path: Path, batch_size: int) -> ExtractSummary:
    """:func:`extract_z` with the saved model, after checking it was trained on this data."""
    spec = DatasetSpec.load(data_dir)
    _, trained_on = read_config(model_dir)
    if spec != trained_on:
        raise RuntimeError(f"{data_dir} ({spec}) is not the data the model in {model_dir} was trained on "
                           f"({trained_on}): rerun the train stage")
    return extract_z(load_model(model_dir), data_dir, spec, out_path, batch_size)
