"""Measuring one generated clip (``clip``): pitch and loudness accuracy, harmonic-to-noise ratio,
spectral shape, timbre consistency, distance to real audio, validity."""
