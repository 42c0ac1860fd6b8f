"""``spectral_distance_to_real``: ddsp's multi-resolution SpectralLoss between a clip and the real example
whose contours it was decoded on.

The loss is the train stage's held-out ``spectral_distance`` exactly (:data:`pipeline.model.heldout.
REFERENCE_FFT_SIZES`, ae.gin's FFT 2048..64, L1 on magnitudes and log magnitudes, built by
:func:`pipeline.model.build.spectral_loss`), so a generated clip, an anchor and the autoencoder's
own resynthesis are measured on one yardstick.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _loss():
    from pipeline.model.build import spectral_loss
    from pipeline.model.heldout import REFERENCE_FFT_SIZES

    return spectral_loss(REFERENCE_FFT_SIZES)


def spectral_distance_to_real(reference: np.ndarray, audio: np.ndarray) -> float:
    """SpectralLoss of ``audio`` [n] against ``reference`` [n'] (cut to the shorter); 0 for identical audio."""
    reference = np.asarray(reference, np.float32).reshape(-1)
    audio = np.asarray(audio, np.float32).reshape(-1)
    n = min(len(reference), len(audio))
    if n == 0:
        raise ValueError("spectral_distance_to_real needs non-empty audio")
    return float(_loss()(reference[None, :n], audio[None, :n]))
