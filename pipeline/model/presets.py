"""The two training presets: every model and optimisation key of the ``train`` section.

They live with the model (not in :mod:`pipeline.config`) because they shape its output: a preset
changed here retrains, while edits to the config code do not.
"""
from __future__ import annotations

# Every model/optimisation key of the ``train`` section, per preset. ``paper`` is ddsp's ae.gin
# (plus solo_instrument.gin's trainable reverb) with base.gin's optimiser, and ddsp's cuDNN GRUs
# (no XLA: untested on GPUs here). ``cpu`` is sized from measured step times on 2 cores with XLA and
# pipeline.model.harmonic (bench/train_throughput.py) so that the default corpus trains within the
# `make run` budget including evaluation, and was chosen from bench/preset_curve.py's held-out quality
# against training minutes: of the variants measured (twice the learning rate, half the batch, a wider
# decoder) it is the only one that leaves the unpitched plateau within the budget, and its held-out
# spectral_distance still falls between 750 and 1500 steps. Its reverb is 0.25 s: with 1 s the trained
# impulse response rang on ~20 dB below the note for most of a second after the synth had fallen silent
# (piano releases fall ~85 dB/s in the default corpus), so rests filled with a tail no training audio had.
TRAIN_PRESETS: dict[str, dict] = {
    "paper": dict(decoder_frame_rate=250, z_dims=16, z_time_steps=125, encoder_rnn_channels=512,
                  decoder_rnn_channels=512, decoder_fc_channels=512, decoder_layers=3, n_harmonics=100,
                  n_noise_bands=65, reverb=True, reverb_length=48000, fft_sizes=[2048, 1024, 512, 256, 128, 64],
                  batch_size=16, steps=30000, learning_rate=3e-4, lr_decay_steps=10000, lr_decay_rate=0.98,
                  grad_clip_norm=3.0, checkpoint_every=300, eval_examples=64, strategy="default",
                  mixed_precision=False, jit_compile=False),
    "cpu": dict(decoder_frame_rate=100, z_dims=16, z_time_steps=125, encoder_rnn_channels=128,
                decoder_rnn_channels=256, decoder_fc_channels=128, decoder_layers=1, n_harmonics=40,
                n_noise_bands=33, reverb=True, reverb_length=4000, fft_sizes=[1024, 256, 64],
                batch_size=8, steps=1200, learning_rate=1e-3, lr_decay_steps=10000, lr_decay_rate=0.98,
                grad_clip_norm=3.0, checkpoint_every=50, eval_examples=32, strategy="default",
                mixed_precision=False, jit_compile=True),
}
