"""The z frames table: one parquet row per native z frame, its schema, its writer and its reader.

Columns: ``example_id``, ``source``, ``split``, ``frame``, ``f0_hz``, ``loudness_db`` (the example's
contours on the z grid), then ``z_0`` ... ``z_{d-1}``. Written by the extract_z stage
(:func:`pipeline.model.extract.extract_z`), read by fit_gmm@K and sample@K.
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.publish import staged_file

ID_COLUMNS = [("example_id", pa.int64()), ("source", pa.string()), ("split", pa.string()),
              ("frame", pa.int32()), ("f0_hz", pa.float32()), ("loudness_db", pa.float32())]
META_COLUMNS = tuple(name for name, _ in ID_COLUMNS)
_Z_COLUMN = re.compile(r"^z_(\d+)$")


def z_schema(z_dims: int) -> pa.Schema:
    return pa.schema(ID_COLUMNS + [(f"z_{i}", pa.float32()) for i in range(z_dims)])


def frames_table(schema: pa.Schema, z: np.ndarray, f0_hz: np.ndarray, loudness_db: np.ndarray,
                 sources: list[str], split: str, first_id: int) -> pa.Table:
    """Rows for one batch: z [b, t, d] and its contours [b, t] already on the z grid."""
    n, t, d = z.shape
    columns = {
        "example_id": np.repeat(np.arange(first_id, first_id + n, dtype=np.int64), t),
        "source": np.repeat(np.array(sources, dtype=object), t),
        "split": np.full(n * t, split, dtype=object),
        "frame": np.tile(np.arange(t, dtype=np.int32), n),
        "f0_hz": np.asarray(f0_hz).reshape(-1).astype(np.float32),
        "loudness_db": np.asarray(loudness_db).reshape(-1).astype(np.float32),
    }
    flat = z.reshape(n * t, d).astype(np.float32)
    columns.update({f"z_{i}": flat[:, i] for i in range(d)})
    return pa.table(columns, schema=schema)


@contextlib.contextmanager
def z_table_writer(path: str | Path, z_dims: int) -> Iterator[pq.ParquetWriter]:
    """A writer of row groups under a temporary name, renamed to ``path`` only when complete."""
    with staged_file(path) as partial, pq.ParquetWriter(partial, z_schema(z_dims), compression="zstd") as writer:
        yield writer


def z_columns(df: pd.DataFrame) -> list[str]:
    """The ``z_<i>`` columns of a z table in numeric order (z_2 before z_10)."""
    found = sorted((int(m.group(1)), name) for name in df.columns if (m := _Z_COLUMN.match(str(name))))
    if not found:
        raise ValueError("table has no z_<i> columns")
    indices = [i for i, _ in found]
    if indices != list(range(len(indices))):
        raise ValueError(f"z columns must be z_0..z_{len(indices) - 1} without gaps, got indices {indices}")
    return [name for _, name in found]


def z_matrix(df: pd.DataFrame) -> np.ndarray:
    """The z frames [n_rows, d] of a z table (columns example_id, frame, z_0..z_{d-1}, ...)."""
    return df[z_columns(df)].to_numpy(np.float64)


def read_z_table(path: str | Path, split: str | None = None, z_only: bool = False) -> pd.DataFrame:
    """Rows of one split (or all); ``z_only`` reads just the z columns (and no metadata) from disk."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the extract_z stage first")
    columns = None
    if z_only:
        columns = [name for name in pq.read_schema(path).names if _Z_COLUMN.match(name)]
    filters = [("split", "==", split)] if split else None
    return pq.read_table(path, columns=columns, filters=filters).to_pandas()


def z_frames(path: str | Path, split: str) -> np.ndarray:
    return z_matrix(read_z_table(path, split, z_only=True))


def subsample_rows(z: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """A seeded subset of at most ``max_rows`` rows, in their original order (0 = keep all)."""
    if not max_rows or len(z) <= max_rows:
        return z
    keep = np.sort(np.random.default_rng(seed).choice(len(z), size=max_rows, replace=False))
    return z[keep]
