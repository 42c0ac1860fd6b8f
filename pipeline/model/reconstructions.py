"""Held-out reconstructions for people: each original beside its resynthesis, as WAV and spectrogram PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

N_FFT, HOP, RANGE_DB = 1024, 256, 80.0


def write_reconstructions(folder: str | Path, sources: list[str], originals: np.ndarray, resyntheses: np.ndarray,
                          sample_rate: int) -> list[Path]:
    """``example_NN_original.wav``, ``example_NN_resynthesis.wav`` and ``example_NN.png`` per example."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (source, original, resynthesis) in enumerate(zip(sources, originals, resyntheses)):
        stem = folder / f"example_{index:02d}"
        sf.write(f"{stem}_original.wav", original, sample_rate, subtype="PCM_16")
        sf.write(f"{stem}_resynthesis.wav", np.clip(resynthesis, -1.0, 1.0), sample_rate, subtype="PCM_16")
        spectra = [_db(original), _db(resynthesis)]
        top = max(float(s.max()) for s in spectra)  # one colour scale, so levels compare across panels
        figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True, constrained_layout=True)
        for axis, spectrum, title in zip(axes, spectra, ("original", "resynthesis")):
            axis.imshow(spectrum, origin="lower", aspect="auto", cmap="magma", vmin=top - RANGE_DB, vmax=top,
                        extent=(0.0, len(original) / sample_rate, 0.0, sample_rate / 2))
            axis.set_title(f"{title}: {source}", fontsize=9)
            axis.set_xlabel("s")
        axes[0].set_ylabel("Hz")
        figure.savefig(f"{stem}.png", dpi=100)
        plt.close(figure)
        written.append(Path(f"{stem}.png"))
    return written


def _db(audio: np.ndarray) -> np.ndarray:
    import librosa

    magnitude = np.abs(librosa.stft(np.asarray(audio, np.float32), n_fft=N_FFT, hop_length=HOP))
    return librosa.amplitude_to_db(magnitude, ref=1.0, top_db=None)
