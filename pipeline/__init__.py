"""Generative DDSP pipeline: the library below the stages.

Importing the package first applies :mod:`pipeline.compat` so that any later TensorFlow import
in this process (and in child processes, through the environment) uses legacy Keras.
"""
from pipeline import compat as _compat  # noqa: F401  (side effect: env before TF import)

__all__ = ["compat"]
