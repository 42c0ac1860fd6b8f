"""Atomic publication of outputs: a crash mid-stage never leaves a complete-looking result."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def staging_dir_for(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


@contextlib.contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``final`` in one rename.

    A staging folder left by a killed run is removed first, so a rerun starts clean.
    """
    final = Path(final)
    staging = staging_dir_for(final)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


@contextlib.contextmanager
def staged_file(final: str | Path) -> Iterator[Path]:
    """Yield ``<final>.partial`` to write; on success it replaces ``final`` in one rename, on error it goes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(final.name + ".partial")
    staging.unlink(missing_ok=True)
    try:
        yield staging
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, final)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``path`` holds ``text`` whole, or keeps what it held before: written beside it, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False,
                                     encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(handle.name, path)
    return path


def write_json_atomic(path: str | Path, payload: object) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")


def write_csv_atomic(path: str | Path, rows: list[dict]) -> Path:
    """Rows (dicts with the same keys, in order) as a CSV with a header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())
