"""The trained encoder over every example -> one parquet row per z frame, streamed batch by batch.

Which z frame rate: the encoder's native one (``train.z_time_steps`` frames per example, 125 per 4 s
= 31.25 Hz by default), not the decoder's. ddsp's ``ZEncoder.expand_z`` linearly upsamples native z
to the decoder's frames inside the model, so every z the decoder ever sees is an interpolation
between consecutive native frames. Rows at the decoder's rate would repeat that interpolation
(8x the rows with no new information, nearly-duplicate neighbours that shrink the mixture's
covariances and push frame-to-frame correlation towards 1). Fitting the GMM on native frames models
the encoder's actual output; the sampler draws z on this same grid and hands it to
:func:`pipeline.model.synthesis.decode`, which upsamples it exactly as ddsp does in training.

``f0_hz`` and ``loudness_db`` are the dataset's per-frame contours resampled onto the z grid with
ddsp's ``core.resample``: the same mapping between the two grids that ddsp uses to upsample z, so
native z frame j sits at dataset frame j * n_frames / z_time_steps, and with an integer ratio
(8 at the defaults) the values are sampled exactly at the z frame times.

Memory stays flat in corpus size: one batch of rows is in memory at a time, written as its own
row group with ``pyarrow.parquet.ParquetWriter``; the table is written under a temporary name
and renamed when complete.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from pipeline.compat import import_ddsp
from pipeline.model.data import ordered_batches
from pipeline.model.synthesis import encode_z
from pipeline.tfrecord import SPLITS, DatasetSpec

EXTRACT_KEYS = ("audio", "f0_hz", "loudness_db", "source")
ID_COLUMNS = [("example_id", pa.int64()), ("source", pa.string()), ("split", pa.string()),
              ("frame", pa.int32()), ("f0_hz", pa.float32()), ("loudness_db", pa.float32())]


def z_schema(z_dims: int) -> pa.Schema:
    return pa.schema(ID_COLUMNS + [(f"z_{i}", pa.float32()) for i in range(z_dims)])


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
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    schema = z_schema(model.encoder.dense_out.units)
    encode = tf.function(lambda features: encode_z(model, features))
    rows, examples, z_time_steps = {}, {}, 0
    started = time.perf_counter()
    try:
        with pq.ParquetWriter(partial, schema, compression="zstd") as writer:
            for split in SPLITS:
                rows[split] = examples[split] = 0
                for batch in ordered_batches(data_dir, split, spec, batch_size, keys=EXTRACT_KEYS):
                    z = encode({"audio": batch["audio"]}).numpy()
                    table = frames_table(schema, z, batch, split, first_id=sum(examples.values()))
                    writer.write_table(table)
                    rows[split] += table.num_rows
                    examples[split] += len(z)
                    z_time_steps = z.shape[1]
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out_path)
    return ExtractSummary(rows=rows, examples=examples, z_dims=len(schema) - len(ID_COLUMNS),
                          z_time_steps=int(z_time_steps), seconds=time.perf_counter() - started)


def frames_table(schema: pa.Schema, z: np.ndarray, batch: dict, split: str, first_id: int) -> pa.Table:
    """Rows for one batch: z [b, t, d] with the f0/loudness contours resampled to the t z frames."""
    core = import_ddsp().core
    n, t, d = z.shape
    f0 = core.resample(batch["f0_hz"][..., np.newaxis], t).numpy()[..., 0]
    loudness = core.resample(batch["loudness_db"][..., np.newaxis], t).numpy()[..., 0]
    sources = [s.decode() for s in batch["source"].numpy()]
    columns = {
        "example_id": np.repeat(np.arange(first_id, first_id + n, dtype=np.int64), t),
        "source": np.repeat(np.array(sources, dtype=object), t),
        "split": np.full(n * t, split, dtype=object),
        "frame": np.tile(np.arange(t, dtype=np.int32), n),
        "f0_hz": f0.reshape(-1).astype(np.float32),
        "loudness_db": loudness.reshape(-1).astype(np.float32),
    }
    flat = z.reshape(n * t, d).astype(np.float32)
    columns.update({f"z_{i}": flat[:, i] for i in range(d)})
    return pa.table(columns, schema=schema)
