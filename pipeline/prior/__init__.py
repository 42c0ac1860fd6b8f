"""The probability model over z: ``mixture`` (fit, save, load and score Gaussian mixtures) and
``samplers`` (z sequences from a mixture: direct, inverse transform, temporal, hold)."""
