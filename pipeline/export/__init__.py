"""The real-time export: the trained model as a streaming TFLite model plus a numpy host module.

:mod:`pipeline.export.streaming` builds the streaming TensorFlow function (decoder + harmonic
oscillators), :mod:`pipeline.export.bundle` writes the export folder, :mod:`pipeline.export.host`
is the numpy half a host program runs next to the LiteRT interpreter, and
:mod:`pipeline.export.command` holds the ``gddsp export`` / ``gddsp stream`` commands.
"""
