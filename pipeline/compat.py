"""The one place that makes ddsp 3.7 import on TensorFlow 2.21 / Python 3.11.

Why this module exists:
- Keras 3 breaks ddsp (``ProcessorGroup`` raises IndexError inside keras ops), so the legacy
  Keras 2 implementation (the ``tf-keras`` package) must be selected with
  ``TF_USE_LEGACY_KERAS=1`` *before TensorFlow is first imported*, in every process: stages,
  Beam workers, Prefect tasks and tests. Importing :mod:`pipeline` sets it, and child processes
  inherit it through the environment.
- ``ddsp.spectral_ops`` and ``ddsp.losses`` import ``crepe`` at module top, and the ``crepe``
  package cannot be installed offline (its setup.py downloads weights). We register a stand-in
  module that raises a clear error if anything calls it; the project never uses CREPE (f0 comes
  from the offline estimators in :mod:`pipeline.audio.features`).
- Importing :mod:`pipeline` (without TensorFlow) registers that stand-in, so a user's own script can
  ``import pipeline`` and then ``import ddsp`` / ``from ddsp.training import data`` directly.
- TensorFlow's known-benign C++ start-up lines are filtered out of fd 2 (:mod:`pipeline.quiet`).
- ddsp is installed with ``--no-deps`` (its pins cannot resolve on Python 3.11); the lock file
  installs exactly the modules its code paths import.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
import warnings

from pipeline import quiet

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# note_seq (imported by ddsp.training) imports pydub, which warns about ffmpeg; nothing here uses it
warnings.filterwarnings("ignore", message="Couldn't find ffmpeg or avconv", category=RuntimeWarning)
quiet.filter_stderr()  # before anything can import TensorFlow


class CrepeUnavailableError(RuntimeError):
    """Raised when something reaches for CREPE, which cannot be installed offline."""


def _crepe_stand_in() -> types.ModuleType:
    """A ``crepe`` module with exactly the names ddsp touches, each raising a clear error."""

    def _unavailable(*_args, **_kwargs):
        raise CrepeUnavailableError(
            "CREPE is not available in this environment (its weights cannot be downloaded "
            "offline). Use prepare.f0.method = 'swift' or 'pyin' instead."
        )

    core = types.ModuleType("crepe.core")
    core.build_and_load_model = _unavailable
    core.models = {}
    module = types.ModuleType("crepe")
    module.__doc__ = "Stand-in for the crepe package (not installable offline); see pipeline.compat."
    module.predict = _unavailable
    module.get_activation = _unavailable
    module.core = core
    return module


def check_legacy_keras() -> None:
    """Fail loudly if TensorFlow was imported before the legacy-Keras switch took effect."""
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("TF_USE_LEGACY_KERAS must be '1' before TensorFlow is imported (see pipeline.compat).")


def register_crepe_stand_in() -> None:
    """Put the stand-in in ``sys.modules`` unless a real ``crepe`` is installed (found, not imported:
    importing the real one would load TensorFlow)."""
    if "crepe" in sys.modules:
        return
    try:
        real = importlib.util.find_spec("crepe") is not None
    except (ImportError, ValueError):
        real = False
    if not real:
        stand_in = _crepe_stand_in()
        sys.modules["crepe"], sys.modules["crepe.core"] = stand_in, stand_in.core


register_crepe_stand_in()


def import_ddsp():
    """Import and return ``ddsp`` (with ``ddsp.training``) on this stack."""
    check_legacy_keras()
    register_crepe_stand_in()
    import ddsp
    import ddsp.training  # noqa: F401

    return ddsp
