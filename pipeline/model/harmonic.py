"""ddsp's harmonic synthesis, computed the way its maths allows: one phase, frame-blocked amplitudes.

``ddsp.core.harmonic_synthesis`` (which the ``Harmonic`` synth calls) builds a [batch, samples,
harmonics] frequency envelope, runs a float32 ``cumsum`` along every harmonic's samples, and
upsamples every harmonic's amplitude to audio rate with overlapping Hann windows before summing.
Both steps are linear, which this module uses:

- harmonic k's frequency envelope is k times the fundamental's (linear interpolation commutes with
  scaling), so its phase is k times the fundamental's phase. The fundamental's frequency is a
  linear ramp within each frame, so its running sum is a quadratic there, plus a running sum over
  frames: float64, wrapped to [0, 2pi), with no per-sample sum (which XLA compiles slowly). This is
  more accurate than ddsp's float32 sum per harmonic, whose rounding error grows along the clip;
- sin(k phase) comes from rotating (cos, sin) of harmonic k-1 by the fundamental's: two sines per
  sample instead of one per harmonic;
- ddsp's window upsampling (``add_endpoint``, hop = samples / frames) gives sample m of frame j the
  amplitude ``a[j] * fall[m] + a[j+1] * rise[m]`` (Hann halves, ``rise + fall = 1``; the last frame
  held). So each harmonic is weighted by its two neighbouring frames' amplitudes and the two sums
  are cross-faded once, instead of upsampling every harmonic's envelope.

Harmonics at or above Nyquist are silenced per sample, as ``oscillator_bank`` does. The result
equals ddsp's for the same controls up to float32 rounding, and so do its gradients with respect
to the amplitudes, the distribution and f0 (tests/test_harmonic.py); the gradient is written by
hand so that XLA compiles it as one loop over the harmonics. The model trains through it, far
faster than through ddsp's synth (bench/train_throughput.py, bench/generation_speed.py). It covers what
:mod:`pipeline.model.build` makes (window amplitude resampling, no harmonic shifts).
"""
from __future__ import annotations

import math

import tensorflow as tf

from pipeline.compat import import_ddsp

_ddsp = import_ddsp()


class FastHarmonic(_ddsp.synths.Harmonic):
    """ddsp's ``Harmonic`` synth (same controls and scaling) rendering through :func:`harmonic_audio`.

    Only ddsp's default amplitude resampling (``window``) is offered, because that is what
    :func:`harmonic_audio` computes.
    """

    def __init__(self, n_samples: int = 64000, sample_rate: int = 16000, scale_fn=_ddsp.core.exp_sigmoid,
                 normalize_below_nyquist: bool = True, name: str = "harmonic"):
        super().__init__(n_samples=n_samples, sample_rate=sample_rate, scale_fn=scale_fn,
                         normalize_below_nyquist=normalize_below_nyquist, amp_resample_method="window", name=name)
        # True: render through an XLA-compiled function of its own, for callers that do not compile
        # (generation: 2-4x faster). Never inside an XLA-compiled train step (see harmonic_audio).
        self.compile_alone = False

    # Plain tensor code: autograph has nothing to convert here, and its cache of converted
    # functions once handed this call a stale conversion (a TypeError naming ``tf____init__``)
    @tf.autograph.experimental.do_not_convert
    def get_signal(self, amplitudes, harmonic_distribution, f0_hz):
        render = compiled_harmonic_audio if self.compile_alone else harmonic_audio
        return render(amplitudes, harmonic_distribution, f0_hz, self.n_samples, self.sample_rate)


def harmonic_audio(amplitudes: tf.Tensor, harmonic_distribution: tf.Tensor, f0_hz: tf.Tensor,
                   n_samples: int, sample_rate: int, differentiable: bool = True) -> tf.Tensor:
    """Audio [batch, n_samples] from frame-rate controls, as ``Harmonic.get_controls`` returns them.

    amplitudes [batch, frames, 1], harmonic_distribution [batch, frames, harmonics] (normalised),
    f0_hz [batch, frames, 1]; ``n_samples`` must be a multiple of ``frames``. Plain TensorFlow ops:
    under a caller's XLA compilation (``jit_compile``) the loop over harmonics fuses into one pass
    over the samples. It is deliberately not a compiled function of its own: nested in the train
    step's XLA function, it made TensorFlow compile again on every step.
    ``differentiable=False`` (generation) leaves out the hand-written gradient, which nothing then
    needs.
    """
    n_frames = int(harmonic_distribution.shape[1])
    if n_samples % n_frames:
        raise ValueError(f"n_samples ({n_samples}) must be a multiple of the control frames ({n_frames})")
    tf_float32 = _ddsp.core.tf_float32  # casts, so float16 controls under mixed precision work too
    return _harmonic_audio(tf_float32(amplitudes), tf_float32(harmonic_distribution), tf_float32(f0_hz),
                           n_samples, float(sample_rate), differentiable)


@tf.function(jit_compile=True)
def compiled_harmonic_audio(amplitudes, harmonic_distribution, f0_hz, n_samples: int, sample_rate: int):
    """:func:`harmonic_audio` for generation: XLA-compiled once per shape, without gradient."""
    return harmonic_audio(amplitudes, harmonic_distribution, f0_hz, n_samples, sample_rate, differentiable=False)


def _harmonic_audio(amplitudes, harmonic_distribution, f0_hz, n_samples, sample_rate, differentiable):
    hop = n_samples // int(harmonic_distribution.shape[1])

    # the fundamental at audio rate: ddsp's linear resample (tf.image.resize, no corner alignment)
    # puts sample m of frame j at f0[j] + (f0[j+1] - f0[j]) * m / hop, holding the last frame
    f0 = f0_hz[..., 0]
    f0_next = tf.concat([f0[:, 1:], f0[:, -1:]], axis=1)
    ramp = tf.range(hop, dtype=tf.float32) / hop
    f0_env = f0[:, :, None] + (f0_next - f0)[:, :, None] * ramp  # [batch, frames, hop]
    # its running phase sum, in closed form within each frame (a linear ramp sums to a quadratic)
    # on top of a running sum over frames only; float64, so nothing drifts along the clip
    to_radians = 2.0 * math.pi / sample_rate
    omega, omega_next = tf.cast(f0, tf.float64) * to_radians, tf.cast(f0_next, tf.float64) * to_radians
    m = tf.range(hop, dtype=tf.float64)
    within = (omega[:, :, None] * (m + 1.0)
              + (omega_next - omega)[:, :, None] * (m * (m + 1.0) / (2.0 * hop)))  # [batch, frames, hop]
    frame_total = within[:, :, -1]
    before_frame = tf.cumsum(tf.math.floormod(frame_total, 2.0 * math.pi), axis=1, exclusive=True)
    phase = tf.math.floormod(before_frame[:, :, None] + within, 2.0 * math.pi)
    phase = tf.cast(phase, tf.float32)  # [batch, frames, hop]

    harmonic_amps = amplitudes * harmonic_distribution  # [batch, frames, harmonics]
    next_amps = tf.concat([harmonic_amps[:, 1:], harmonic_amps[:, -1:]], axis=1)
    # tf.signal.hann_window(2 * hop) split in its rising and falling halves
    rise = 0.5 - 0.5 * tf.cos(math.pi * tf.range(hop, dtype=tf.float32) / hop)
    crossfade = _crossfaded_harmonics if differentiable else _crossfaded_harmonics_forward
    return tf.reshape(crossfade(phase, f0_env, harmonic_amps, next_amps, rise, sample_rate), [-1, n_samples])


def _rotations(phase, f0_env, n_harmonics: int, nyquist: float):
    """(k, cos(k phase), sin(k phase), audible) for k = 1..n_harmonics, by rotation.

    Rotating harmonic k-1's (cos, sin) by the fundamental's gives harmonic k's with no sine per
    harmonic, and the rounding error grows only linearly with k (unit-modulus rotations).
    """
    cos_1, sin_1 = tf.cos(phase), tf.sin(phase)
    cos_k, sin_k = cos_1, sin_1
    for k in range(1, n_harmonics + 1):
        if k > 1:
            cos_k, sin_k = cos_k * cos_1 - sin_k * sin_1, sin_k * cos_1 + cos_k * sin_1
        yield k, cos_k, sin_k, f0_env * k < nyquist


def _crossfaded_harmonics_forward(phase, f0_env, harmonic_amps, next_amps, rise, sample_rate):
    """sum_k sin(k phase) * (a_k[j] * (1 - rise) + a_k[j+1] * rise), harmonics at or above Nyquist silent.

    phase, f0_env: [batch, frames, hop]; harmonic_amps, next_amps: [batch, frames, harmonics].
    """
    from_frame, to_frame = tf.zeros_like(phase), tf.zeros_like(phase)
    for k, _, sin_k, audible in _rotations(phase, f0_env, int(harmonic_amps.shape[-1]), sample_rate / 2.0):
        sin_k = tf.where(audible, sin_k, 0.0)
        from_frame += sin_k * harmonic_amps[:, :, k - 1:k]
        to_frame += sin_k * next_amps[:, :, k - 1:k]
    return from_frame * (1.0 - rise) + to_frame * rise


@tf.custom_gradient
def _crossfaded_harmonics(phase, f0_env, harmonic_amps, next_amps, rise, sample_rate):
    """:func:`_crossfaded_harmonics_forward` with its gradient written by hand.

    Left to autodiff, XLA recomputes the rotation chain for every harmonic's gradient (quadratic in
    the harmonics).
    """
    n_harmonics = int(harmonic_amps.shape[-1])
    nyquist = sample_rate / 2.0
    audio = _crossfaded_harmonics_forward(phase, f0_env, harmonic_amps, next_amps, rise, sample_rate)

    def gradient(upstream):
        from_weight, to_weight = upstream * (1.0 - rise), upstream * rise
        cos_1, sin_1 = tf.cos(phase), tf.sin(phase)
        amps_by_k = tf.transpose(harmonic_amps, [2, 0, 1])[..., None]  # [harmonics, batch, frames, 1]
        next_by_k = tf.transpose(next_amps, [2, 0, 1])[..., None]

        # a loop, not unrolled: XLA would recompute the rotation chain for every harmonic
        def step(k, cos_k, sin_k, d_phase, d_from, d_to):
            harmonic = tf.cast(k + 1, tf.float32)
            audible = f0_env * harmonic < nyquist
            sin_audible = tf.where(audible, sin_k, 0.0)
            d_from = d_from.write(k, tf.reduce_sum(sin_audible * from_weight, axis=2))
            d_to = d_to.write(k, tf.reduce_sum(sin_audible * to_weight, axis=2))
            amp_k = amps_by_k[k] * from_weight + next_by_k[k] * to_weight
            d_phase += tf.where(audible, harmonic * cos_k * amp_k, 0.0)
            return (k + 1, cos_k * cos_1 - sin_k * sin_1, sin_k * cos_1 + cos_k * sin_1, d_phase, d_from, d_to)

        # two arrays: an eager TensorArray is written in place, so one shared by both would mix them
        d_from, d_to = (tf.TensorArray(tf.float32, size=n_harmonics) for _ in range(2))
        _, _, _, d_phase, d_from, d_to = tf.while_loop(
            lambda k, *_: k < n_harmonics, step, (tf.constant(0), cos_1, sin_1, tf.zeros_like(phase), d_from, d_to))
        d_harmonic_amps = tf.transpose(d_from.stack(), [1, 2, 0])
        d_next_amps = tf.transpose(d_to.stack(), [1, 2, 0])
        # no gradient for f0_env (it only switches harmonics off), rise or the sample rate
        return d_phase, None, d_harmonic_amps, d_next_amps, None, None

    return audio, gradient
