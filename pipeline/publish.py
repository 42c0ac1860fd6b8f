"""Atomic publication of outputs: a crash mid-stage never leaves a complete-looking result."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
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
    """``path`` holds ``text`` whole, or keeps what it held before: written to ``<path>.partial``, then renamed."""
    path = Path(path)
    with staged_file(path) as staging:
        staging.write_text(text, encoding="utf-8", newline="")
    return path


def write_json_atomic(path: str | Path, payload: object) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")


def publish_pointer(folder: str | Path, file_name: str, metrics_path: str | Path, pointer: dict) -> None:
    """A stage's outs that only say where their content already is: ``folder/file_name`` and the metrics file
    both hold ``pointer`` (a DVC out must exist even when the stage has nothing new to write)."""
    with staged_dir(folder) as staging:
        write_json_atomic(staging / file_name, pointer)
    write_json_atomic(metrics_path, pointer)


def write_csv_atomic(path: str | Path, rows: list[dict]) -> Path:
    """Rows (dicts with the same keys, in order) as a CSV with a header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())
