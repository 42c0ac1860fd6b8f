"""The z frames table (written by extract_z): one row per z frame, read back by split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.sampling import z_columns

META_COLUMNS = ("example_id", "source", "split", "frame", "f0_hz", "loudness_db")


def read_z_table(path: str | Path, split: str | None = None, z_only: bool = False) -> pd.DataFrame:
    """Rows of one split (or all); ``z_only`` reads just the z columns (and no metadata) from disk."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the extract_z stage first")
    columns = None
    if z_only:
        columns = [name for name in pq.read_schema(path).names if name.startswith("z_")]
    filters = [("split", "==", split)] if split else None
    return pq.read_table(path, columns=columns, filters=filters).to_pandas()


def z_frames(path: str | Path, split: str) -> np.ndarray:
    table = read_z_table(path, split, z_only=True)
    return table[z_columns(table)].to_numpy(np.float64)


def subsample_rows(z: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """A seeded subset of at most ``max_rows`` rows, in their original order (0 = keep all)."""
    if not max_rows or len(z) <= max_rows:
        return z
    keep = np.sort(np.random.default_rng(seed).choice(len(z), size=max_rows, replace=False))
    return z[keep]
