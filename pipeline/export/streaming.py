"""The trained decoder + harmonic synth as a streaming TensorFlow function, for SavedModel and TFLite.

One call takes one block of B whole decoder frames (f0 in Hz, loudness in dB, z at the decoder's
frame rate), the fundamental's phase for the block's audio (from
:class:`pipeline.export.host.HarmonicPhase`: float64, which LiteRT lacks) and the carried state,
and returns the harmonic audio of frames n-1..n+B-2, the noise synth's band magnitudes of frames
n..n+B-1 (filtered by :class:`pipeline.export.host.NoiseFilter`) and the new state:

- ``gru_state`` [rnn_channels]: the decoder GRU's state, the cell unrolled over the block's frames
  (LiteRT's built-in ops have no RNN loop the converter keeps otherwise);
- ``prev_f0`` [1] and ``prev_amps`` [n_harmonics]: the last frame's f0 and harmonic amplitudes,
  because ddsp's harmonic synth cross-fades each frame's amplitudes into the next frame's
  (window upsampling) and switches off harmonics above Nyquist by the ramped f0; so the block's
  first frame of audio is the previous block's last frame (one frame of latency).

``hold`` [B] flags the block's audio frames (n-1..n+B-2): 1 on the signal's last frame, which
then cross-fades into itself, as the offline decode ends; 0 everywhere else.

The network is ddsp's ``RnnFcDecoder`` called layer by layer with the trained weights, the
controls its processors' own ``get_controls``, and the oscillators
:func:`pipeline.model.harmonic._crossfaded_harmonics_forward`: the offline decode's functions.
"""
from __future__ import annotations

import math

import tensorflow as tf

from pipeline.compat import import_ddsp
from pipeline.model.build import HARMONIC, NOISE, REVERB
from pipeline.model.harmonic import _crossfaded_harmonics_forward

SIGNATURE = "stream"


def block_frames_for(block_ms: float, frame_rate: int) -> int:
    """The whole number of decoder frames nearest ``block_ms`` (at least one)."""
    return max(1, int(round(block_ms / 1000.0 * frame_rate)))


class _Untracked:
    """Holds the model out of the SavedModel's object graph (saving would trace its Keras calls)."""

    def __init__(self, model):
        self.model = model


class StreamingDecoder(tf.Module):
    def __init__(self, model, block_frames: int):
        super().__init__(name="streaming_decoder")
        self._held = _Untracked(model)
        self.decoder_variables = list(model.decoder.variables)  # what the signature reads, tracked
        self.block_frames = block_frames
        self.sample_rate = int(model.preprocessor.sample_rate)
        self.frame_rate = int(model.preprocessor.frame_rate)
        self.hop = self.sample_rate // self.frame_rate
        decoder = model.decoder
        self._held.gru = decoder.rnn.rnn
        processors = {p.name: p for p in model.processor_group.processors}
        self._held.harmonic, self._held.noise = processors[HARMONIC], processors[NOISE]
        self._held.reverb = processors.get(REVERB)
        self.n_harmonics = dict(decoder.output_splits)["harmonic_distribution"]
        self.n_noise_bands = dict(decoder.output_splits)["noise_magnitudes"]
        self.z_dims = int(decoder.input_stacks[2].layers[0].layers[0].kernel.shape[0])
        self.rnn_channels = int(self._held.gru.units)
        self.stream = tf.function(self._stream, input_signature=self.input_signature())

    def state_shapes(self) -> dict[str, list[int]]:
        return {"gru_state": [self.rnn_channels], "prev_f0": [1], "prev_amps": [self.n_harmonics]}

    def input_signature(self) -> list[tf.TensorSpec]:
        b = self.block_frames
        specs = [tf.TensorSpec([b], tf.float32, "f0_hz"), tf.TensorSpec([b], tf.float32, "loudness_db"),
                 tf.TensorSpec([b, self.z_dims], tf.float32, "z"), tf.TensorSpec([b * self.hop], tf.float32, "phase"),
                 tf.TensorSpec([b], tf.float32, "hold")]
        return specs + [tf.TensorSpec(shape, tf.float32, name) for name, shape in self.state_shapes().items()]

    def _stream(self, f0_hz, loudness_db, z, phase, hold, gru_state, prev_f0, prev_amps):
        ddsp = import_ddsp()
        preprocessing, nn = ddsp.training.preprocessing, ddsp.training.nn
        held = self._held
        decoder = held.model.decoder
        f0 = f0_hz[tf.newaxis, :, tf.newaxis]  # [1, B, 1]
        inputs = [preprocessing.scale_db(loudness_db[tf.newaxis, :, tf.newaxis]), preprocessing.scale_f0_hz(f0),
                  z[tf.newaxis]]
        inputs = [stack(x) for stack, x in zip(decoder.input_stacks, inputs)]
        x = tf.concat(inputs, axis=-1)
        state, outputs = gru_state[tf.newaxis], []
        for t in range(self.block_frames):  # unrolled: one GRU cell per frame
            out, state = held.gru.cell(x[:, t], [state], training=False)
            state = state[0] if isinstance(state, (list, tuple)) else state
            outputs.append(out)
        x = tf.concat(inputs + [tf.stack(outputs, axis=1)], axis=-1)
        x = decoder.dense_out(decoder.out_stack(x))
        raw = nn.split_to_dict(x, decoder.output_splits)
        harmonic = held.harmonic.get_controls(raw["amps"], raw["harmonic_distribution"], f0)
        magnitudes = held.noise.get_controls(raw["noise_magnitudes"])["magnitudes"]
        amps = (harmonic["amplitudes"] * harmonic["harmonic_distribution"])[0]  # [B, harmonics]

        # frames n-1..n+B-2 and the frames after each (n..n+B-1)
        f0_seq = tf.concat([prev_f0, f0_hz], axis=0)  # [B + 1]
        amps_seq = tf.concat([prev_amps[tf.newaxis], amps], axis=0)  # [B + 1, harmonics]
        ramp = tf.range(self.hop, dtype=tf.float32) / self.hop
        f0_env = f0_seq[:-1, None] + (f0_seq[1:] - f0_seq[:-1])[:, None] * ramp  # [B, hop]
        rise = 0.5 - 0.5 * tf.cos(math.pi * tf.range(self.hop, dtype=tf.float32) / self.hop)
        # hold = 1 ends the signal: each frame cross-fades into itself, as offline holds its last frame
        next_amps = amps_seq[1:] * (1.0 - hold[:, None]) + amps_seq[:-1] * hold[:, None]
        audio = _crossfaded_harmonics_forward(
            tf.reshape(phase, [1, self.block_frames, self.hop]), f0_env[tf.newaxis], amps_seq[tf.newaxis, :-1],
            next_amps[tf.newaxis], rise, float(self.sample_rate))
        return {"harmonic": tf.reshape(audio, [-1]), "noise_magnitudes": magnitudes[0],
                "gru_state": state[0], "prev_f0": f0_hz[-1:], "prev_amps": amps[-1]}

    def reverb_ir(self):
        """The reverb's impulse response as numpy [reverb_length] (None without reverb)."""
        reverb = self._held.reverb
        return None if reverb is None else reverb._ir.numpy().reshape(-1)


def save(streaming: StreamingDecoder, folder) -> None:
    """A SavedModel with the one ``stream`` signature."""
    tf.saved_model.save(streaming, str(folder), signatures={SIGNATURE: streaming.stream.get_concrete_function()})


def to_tflite(saved_model_dir, quantize: str | None = None) -> bytes:
    """The SavedModel's ``stream`` signature as a TFLite flatbuffer of built-in ops only.

    ``quantize``: None (float32), ``float16`` (weights stored as float16) or ``int8`` (dynamic
    range: weights int8, activations float).
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize is not None:
        raise ValueError(f"quantize must be None, 'float16' or 'int8', not {quantize!r}")
    return converter.convert()
