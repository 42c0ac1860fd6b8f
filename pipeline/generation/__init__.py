"""From a mixture to sound: ``conditioning`` (f0 + loudness contours: the seed preset, real, MIDI),
``plans`` (which clips to make and the z of each), ``render`` (z -> decoder + synth -> WAV, PNG and
metrics, through the ``Synthesizer`` interface)."""
