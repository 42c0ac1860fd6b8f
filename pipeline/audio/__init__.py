"""Audio in and out of the pipeline: ``io`` (find, inspect, read and resample files), ``features``
(f0 and loudness, as prepare computes them and generated clips are measured), ``plots`` (the
spectrogram + contours picture of one example or clip)."""
