"""Long-form generation on a tiny real model: one continuous signal, no seams; --audio conditioning."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from test_generation import SPEC, in_project, project  # noqa: F401  (the tiny-model project fixtures)

TONE_F0_HZ, TONE_DB = 220.0, -25.0


def spectral_flux(audio: np.ndarray, sample_rate: int, hop_secs: float = 0.01) -> np.ndarray:
    """Flux between consecutive 10 ms frames: the L2 norm of the magnitude spectrum's change, [frames - 1]."""
    hop = int(round(hop_secs * sample_rate))
    n_fft = 2 * hop
    window = np.hanning(n_fft)
    starts = np.arange(0, len(audio) - n_fft + 1, hop)
    frames = np.stack([audio[s:s + n_fft] * window for s in starts])
    magnitudes = np.abs(np.fft.rfft(frames, axis=-1))
    return np.linalg.norm(np.diff(magnitudes, axis=0), axis=-1), starts[1:] + n_fft // 2


def seam_ratio(audio: np.ndarray, window_samples: int, n_windows: int, sample_rate: int) -> float:
    """The larger flux at a window boundary (the frame centred on it) over the 99th percentile of the
    flux elsewhere (frames clear of the boundaries by 20 ms, after the first 0.2 s)."""
    flux, centres = spectral_flux(audio, sample_rate)
    boundaries = window_samples * np.arange(1, n_windows)
    at = [int(np.argmin(np.abs(centres - b))) for b in boundaries]
    clear = np.all(np.abs(centres[:, None] - boundaries) > 0.02 * sample_rate, axis=1)
    elsewhere = clear & (centres > 0.2 * sample_rate)
    return float(flux[at].max() / np.percentile(flux[elsewhere], 99))


@pytest.fixture(scope="module")
def synth(project):  # noqa: F811
    from pipeline.generation.synthesizer import load_synthesizer

    return load_synthesizer(project / "models/autoencoder")


def constant_tone(n_windows: int):
    n_frames = SPEC.n_frames * n_windows
    z = np.tile(np.linspace(-1.0, 1.0, 4, dtype=np.float32), (32 * n_windows, 1))
    return np.full(n_frames, TONE_F0_HZ, np.float32), np.full(n_frames, TONE_DB, np.float32), z


def test_a_tone_three_windows_long_has_no_seams(synth):
    f0, loudness, z = constant_tone(3)
    audio, harmonic, noise = synth.decode_long(f0, loudness, z, seed=5)
    assert audio.shape == harmonic.shape == noise.shape == (3 * SPEC.n_samples,)
    assert np.abs(harmonic).max() > 1e-3, "the tone sounds"
    assert seam_ratio(audio, SPEC.n_samples, 3, SPEC.sample_rate) <= 1.0
    # the measure sees seams where there are some: the same tone as three windows decoded apart
    windowed, _, _ = synth.synthesize(f0.reshape(3, -1), loudness.reshape(3, -1), z.reshape(3, 32, -1), seed=5)
    assert seam_ratio(windowed.reshape(-1), SPEC.n_samples, 3, SPEC.sample_rate) > 1.5


def test_long_decode_is_its_seed(synth):
    f0, loudness, z = constant_tone(2)
    a = synth.decode_long(f0, loudness, z, seed=1)[0]
    np.testing.assert_array_equal(a, synth.decode_long(f0, loudness, z, seed=1)[0])
    assert not np.array_equal(a, synth.decode_long(f0, loudness, z, seed=2)[0])
    # any length, not only whole windows: 1.3 examples
    n = int(1.3 * SPEC.n_frames)
    out = synth.decode_long(f0[:n], loudness[:n], z[:42], seed=1)[0]
    assert len(out) == round(n * synth.decoder_frame_rate / SPEC.frame_rate) * synth.hop


def test_generate_plays_a_recording_in_a_sampled_timbre(in_project):  # noqa: F811
    from conftest import harmonic_tone

    from pipeline import cli
    from stages import fit_gmm

    if not (in_project / "models/gmm/k2/mixture.json").exists():
        fit_gmm.main(["--k", "2"])
    secs = 1.7
    sf.write(in_project / "me.wav", harmonic_tone(secs, 22050, 196.0), 22050)  # another rate: resampled
    for name in ("a.wav", "b.wav"):
        cli.main(["generate", "--k", "2", "--cluster", "0", "--audio", "me.wav", "--seed", "2", "--out", f"gen/{name}"])
    a, rate = sf.read(in_project / "gen/a.wav")
    assert rate == SPEC.sample_rate and len(a) == int(round(np.ceil(secs * SPEC.frame_rate) / SPEC.frame_rate
                                                           * SPEC.sample_rate))
    np.testing.assert_array_equal(a, sf.read(in_project / "gen/b.wav")[0])
    assert np.abs(a).max() > 1e-3
    with pytest.raises(SystemExit, match="no such file"):
        cli.main(["generate", "--k", "2", "--cluster", "0", "--audio", "missing.wav", "--out", "gen/x.wav"])
    (in_project / "junk.wav").write_bytes(b"not audio")
    with pytest.raises(SystemExit, match="unreadable"):
        cli.main(["generate", "--k", "2", "--cluster", "0", "--audio", "junk.wav", "--out", "gen/x.wav"])
