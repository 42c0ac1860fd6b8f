"""Pictures people look at: spectrograms with the features that drive the synthesiser."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.audio.features import VOICED_THRESHOLD  # noqa: E402


def _log_spectrogram(ax, audio: np.ndarray, sample_rate: int, n_fft: int = 1024) -> None:
    import librosa

    hop = n_fft // 4
    spec = librosa.amplitude_to_db(np.abs(librosa.stft(audio, n_fft=n_fft, hop_length=hop)), ref=np.max, top_db=80)
    times = np.arange(spec.shape[1]) * hop / sample_rate
    freqs = np.linspace(0, sample_rate / 2, spec.shape[0])
    ax.pcolormesh(times, freqs, spec, shading="auto", cmap="magma")
    ax.set_yscale("symlog", linthresh=500)
    ax.set_ylim(30, sample_rate / 2)
    ax.set_ylabel("Hz")


def plot_example(path: str | Path, audio: np.ndarray, sample_rate: int, f0_hz: np.ndarray,
                 f0_confidence: np.ndarray, loudness_db: np.ndarray, frame_rate: int, title: str) -> Path:
    """Spectrogram with voiced f0 overlaid, and loudness below, on one time axis."""
    path = Path(path)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=(3, 1))
    _log_spectrogram(top, np.asarray(audio, np.float32), sample_rate)
    times = np.arange(len(f0_hz)) / frame_rate
    voiced_f0 = np.where(np.asarray(f0_confidence) >= VOICED_THRESHOLD, f0_hz, np.nan)
    top.plot(times, voiced_f0, color="cyan", lw=1.2, label="f0 (voiced)")
    top.legend(loc="upper right", fontsize=8)
    top.set_title(title, fontsize=10)
    bottom.plot(times, loudness_db, color="tab:blue", lw=1)
    bottom.set_ylabel("loudness dB")
    bottom.set_xlabel("seconds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
