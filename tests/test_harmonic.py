"""pipeline.model.harmonic computes ddsp's harmonic synthesis, numbers checked against ddsp and float64."""
from __future__ import annotations

import numpy as np
import pytest

SAMPLE_RATE, N_FRAMES, HOP, N_HARMONICS = 16000, 25, 160, 24
N_SAMPLES = N_FRAMES * HOP


def controls(seed: int = 0, batch: int = 2):
    """Harmonic.get_controls on random network outputs: gliding f0 that crosses Nyquist for high harmonics."""
    import tensorflow as tf

    from pipeline.compat import import_ddsp

    ddsp = import_ddsp()
    rng = np.random.default_rng(seed)
    synth = ddsp.synths.Harmonic(n_samples=N_SAMPLES, sample_rate=SAMPLE_RATE, normalize_below_nyquist=True,
                                 scale_fn=ddsp.core.exp_sigmoid)
    f0 = np.geomspace(rng.uniform(80, 200, batch), rng.uniform(500, 900, batch), N_FRAMES).T[..., None]
    raw_amps = rng.normal(size=(batch, N_FRAMES, 1))
    raw_dist = rng.normal(size=(batch, N_FRAMES, N_HARMONICS))
    c = synth.get_controls(*(tf.constant(x, tf.float32) for x in (raw_amps, raw_dist, f0)))
    return synth, c["amplitudes"], c["harmonic_distribution"], c["f0_hz"]


def test_equals_ddsp_harmonic_synth_and_float64_reference():
    from pipeline.model.harmonic import harmonic_audio
    from tests.synthetic import float64_harmonic_audio

    synth, amplitudes, distribution, f0_hz = controls()
    ours = harmonic_audio(amplitudes, distribution, f0_hz, N_SAMPLES, SAMPLE_RATE).numpy()
    stock = synth.get_signal(amplitudes, distribution, f0_hz).numpy()
    reference = float64_harmonic_audio(amplitudes, distribution, f0_hz, N_SAMPLES, SAMPLE_RATE)
    peak = np.abs(reference).max()
    assert ours.shape == stock.shape == (2, N_SAMPLES) and peak > 0.05
    assert np.abs(ours - reference).max() < 1e-4 * peak
    # ddsp's float32 phase sum per harmonic drifts even within 1/4 s: measured 6e-3 of the peak, ours 4e-5
    assert np.abs(ours - stock).max() < 1e-2 * peak
    assert np.abs(stock - reference).max() > 10 * np.abs(ours - reference).max()
    # the Nyquist cut matters in this input: without it the high harmonics would add energy
    freqs_top = f0_hz.numpy().max() * N_HARMONICS
    assert freqs_top > SAMPLE_RATE / 2


def test_more_accurate_than_ddsp_on_long_clips():
    """ddsp's float32 cumsum per harmonic drifts over a long clip; one float64 phase does not."""
    import tensorflow as tf

    from pipeline.compat import import_ddsp
    from pipeline.model.harmonic import harmonic_audio

    core = import_ddsp().core
    n_frames, n_samples = 400, 400 * HOP  # 4 s
    f0 = tf.fill([1, n_frames, 1], 440.0)
    amplitudes = tf.fill([1, n_frames, 1], 0.5)
    distribution = tf.one_hot([[7] * n_frames], N_HARMONICS)  # one harmonic: 3520 Hz
    t = np.arange(1, n_samples + 1)
    exact = 0.5 * np.sin(2 * np.pi * 3520.0 * t / SAMPLE_RATE)
    ours = harmonic_audio(amplitudes, distribution, f0, n_samples, SAMPLE_RATE).numpy()[0]
    stock = core.harmonic_synthesis(f0, amplitudes, harmonic_distribution=distribution, n_samples=n_samples,
                                    sample_rate=SAMPLE_RATE).numpy()[0]
    assert np.abs(ours - exact).max() < 1e-4
    assert np.abs(stock - exact).max() > 10 * np.abs(ours - exact).max()


def test_gradients_match_ddsp():
    """Amplitudes, distribution and f0: ours is written by hand, so each is held to ddsp's autodiff."""
    import tensorflow as tf

    from pipeline.model.harmonic import harmonic_audio

    synth, amplitudes, distribution, f0_hz = controls(seed=1, batch=1)
    target = tf.constant(np.random.default_rng(2).normal(size=(1, N_SAMPLES)), tf.float32)

    def grads(render, mode: str):
        def loss_grads():
            with tf.GradientTape() as tape:
                tape.watch([amplitudes, distribution, f0_hz])
                loss = tf.reduce_mean((render(amplitudes, distribution, f0_hz) - target) ** 2)
            return tape.gradient(loss, [amplitudes, distribution, f0_hz])
        run = {"eager": loss_grads, "graph": tf.function(loss_grads),
               "xla": tf.function(loss_grads, jit_compile=True)}[mode]  # xla: as in the cpu preset's train step
        return [g.numpy() for g in run()]

    stock = grads(synth.get_signal, "eager")
    for mode in ("eager", "graph", "xla"):
        ours = grads(lambda a, d, f: harmonic_audio(a, d, f, N_SAMPLES, SAMPLE_RATE), mode)
        for mine, theirs in zip(ours, stock):
            # as the audio, within the drift of ddsp's float32 phase sum (high harmonics, late frames)
            np.testing.assert_allclose(mine, theirs, atol=1e-2 * np.abs(theirs).max())


def test_a_hundred_harmonics_over_four_seconds_stay_accurate():
    """The paper preset's 100 harmonics over 4 s: 99 rotations of (cos, sin) stay close to float64, ddsp does not."""
    import tensorflow as tf

    from pipeline.compat import import_ddsp
    from pipeline.model.harmonic import harmonic_audio
    from tests.synthetic import float64_harmonic_audio

    rng = np.random.default_rng(4)
    n_frames, n_harmonics = 400, 100
    n_samples = n_frames * HOP
    f0 = tf.constant(np.repeat(rng.uniform(40, 79, (1, 16, 1)), n_frames // 16, axis=1), tf.float32)  # all audible
    amplitudes = tf.constant(rng.uniform(0.1, 0.5, (1, n_frames, 1)), tf.float32)
    distribution = rng.uniform(size=(1, n_frames, n_harmonics))
    distribution = tf.constant(distribution / distribution.sum(-1, keepdims=True), tf.float32)
    ours = harmonic_audio(amplitudes, distribution, f0, n_samples, SAMPLE_RATE).numpy()
    stock = import_ddsp().core.harmonic_synthesis(f0, amplitudes, harmonic_distribution=distribution,
                                                  n_samples=n_samples, sample_rate=SAMPLE_RATE).numpy()
    reference = float64_harmonic_audio(amplitudes, distribution, f0, n_samples, SAMPLE_RATE)
    # the reference integrates float32 envelopes too, so a few 1e-4 of drift is in the reference itself
    assert np.abs(ours - reference).max() < 1e-3 * np.abs(reference).max()
    assert np.abs(stock - reference).max() > 10 * np.abs(ours - reference).max()


def test_refuses_lengths_it_does_not_compute():
    from pipeline.model.harmonic import harmonic_audio

    _, amplitudes, distribution, f0_hz = controls()
    with pytest.raises(ValueError, match="multiple of the control frames"):
        harmonic_audio(amplitudes, distribution, f0_hz, N_SAMPLES + 1, SAMPLE_RATE)


def test_model_with_fast_harmonic_sounds_like_the_ddsp_one_with_the_same_weights():
    from pipeline.compat import import_ddsp
    from pipeline.config import TrainParams
    from pipeline.dataset.tfrecord import DatasetSpec
    from pipeline.model.build import build_autoencoder
    from pipeline.model.harmonic import FastHarmonic
    from pipeline.model.store import placeholder_batch
    from tests.synthetic import float64_harmonic_audio

    spec = DatasetSpec(sample_rate=SAMPLE_RATE, frame_rate=250, example_secs=1.0, f0_method="swift")
    train = TrainParams(decoder_frame_rate=50, z_dims=4, z_time_steps=32, encoder_rnn_channels=16,
                        decoder_rnn_channels=32, decoder_fc_channels=32, decoder_layers=1, n_harmonics=16,
                        n_noise_bands=8, reverb=False, fft_sizes=[512, 128], batch_size=2)
    batch = placeholder_batch(spec, 2)
    batch["audio"] = np.random.default_rng(5).normal(scale=0.1, size=batch["audio"].shape).astype(np.float32)
    batch["f0_hz"] = np.full(batch["f0_hz"].shape, 330.0, np.float32)
    ours = build_autoencoder(train, spec)
    stock = build_autoencoder(train, spec, harmonic_synth=import_ddsp().synths.Harmonic)
    ours(batch, training=False)
    stock(batch, training=False)
    stock.set_weights(ours.get_weights())
    assert isinstance(ours.processor_group.harmonic, FastHarmonic)
    assert type(stock.processor_group.harmonic) is import_ddsp().synths.Harmonic

    def harmonic_part(model):
        outputs = model(batch, training=False)["harmonic"]
        return outputs["signal"].numpy(), outputs["controls"]

    mine, _ = harmonic_part(ours)
    theirs, their_controls = harmonic_part(stock)
    # ddsp's own output drifts along the clip (float32 phase sums), so both are held to the float64
    # rendering of the ddsp model's controls: same weights, same sound
    reference = float64_harmonic_audio(their_controls["amplitudes"], their_controls["harmonic_distribution"],
                                       their_controls["f0_hz"], spec.n_samples, SAMPLE_RATE)
    peak = np.abs(reference).max()
    assert peak > 1e-2
    assert np.abs(mine - reference).max() < 1e-3 * peak
    assert np.abs(theirs[:, :320] - reference[:, :320]).max() < 2e-3 * peak  # ddsp before it drifts (20 ms)
