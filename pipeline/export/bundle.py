"""Write the export folder: SavedModel, TFLite model(s), reverb IR, host module and manifest.

Everything a host program needs to play the model is in the folder: ``model.tflite`` (decoder +
harmonic oscillators, LiteRT built-in ops only), ``host.py`` (numpy: the fundamental's phase, the
noise and its filter, the reverb), ``reverb_ir.npy``, ``mixture/`` (with ``--k``: the fitted mixture as
fit_gmm wrote it) and ``manifest.json`` (signature, rates, block size, latency, z dims, the ddsp
scaling the model applies to f0 and loudness, the training params and the code's commit). Quantised
variants (``model_float16.tflite``, ``model_int8.tflite``) carry their audio error against the float32
model, measured on a test tone.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.export import host
from pipeline.export.streaming import SIGNATURE, StreamingDecoder, block_frames_for, save, to_tflite
from pipeline.prior.mixture import ARRAYS_FILE, META_FILE
from pipeline.publish import staged_dir, write_json_atomic

TFLITE_FILE = "model.tflite"
SAVED_MODEL_DIR = "saved_model"
REVERB_FILE = "reverb_ir.npy"
MIXTURE_DIR = "mixture"
FORMAT_VERSION = 1


def export_model(model_dir: Path, out_dir: Path, block_ms: float, quantize: list[str] = (),
                 mixture_dir: Path | None = None, project_dir: Path | None = None,
                 midi_envelope: dict | None = None) -> dict:
    """Write ``out_dir`` whole (staged, then renamed) and return its manifest. ``midi_envelope``
    (:class:`pipeline.generation.midi_envelope.EnvelopeParams` as a dict) is how a host turns MIDI notes
    into f0 and loudness for this model; None leaves it to the host."""
    from pipeline.model.store import load_model, read_config

    train, spec = read_config(model_dir)
    model = load_model(model_dir)
    streaming = StreamingDecoder(model, block_frames_for(block_ms, train.resolved().decoder_frame_rate))
    with staged_dir(out_dir) as folder:
        save(streaming, folder / SAVED_MODEL_DIR)
        (folder / TFLITE_FILE).write_bytes(to_tflite(folder / SAVED_MODEL_DIR))
        ir = streaming.reverb_ir()
        if ir is not None:
            np.save(folder / REVERB_FILE, ir.astype(np.float32))
        shutil.copy(host.__file__, folder / "host.py")
        if mixture_dir is not None:  # as fit_gmm wrote it (pipeline.prior.mixture.load_mixture reads it back)
            (folder / MIXTURE_DIR).mkdir()
            for name in (META_FILE, ARRAYS_FILE):
                shutil.copy(Path(mixture_dir) / name, folder / MIXTURE_DIR / name)
        manifest = _manifest(streaming, train, spec, ir is not None, mixture_dir, project_dir)
        manifest["midi_envelope"] = midi_envelope
        write_json_atomic(folder / host.MANIFEST_FILE, manifest)
        for kind in quantize:
            name = f"model_{kind}.tflite"
            (folder / name).write_bytes(to_tflite(folder / SAVED_MODEL_DIR, quantize=kind))
            manifest["quantized"][kind] = {"tflite": name, "audio_error": quantization_error(folder, name)}
        write_json_atomic(folder / host.MANIFEST_FILE, manifest)
    return manifest


def quantization_error(folder: Path, model_file: str, secs: float = 1.0) -> dict:
    """Max and RMS difference from the float32 model's audio, over its peak, on a test tone."""
    manifest = host.load_manifest(folder)
    n = int(round(secs * manifest["frame_rate"]))
    f0 = np.full(n, 220.0, np.float32) * np.linspace(1.0, 2.0, n, dtype=np.float32)  # a glide over an octave
    loudness = np.linspace(-50.0, -20.0, n, dtype=np.float32)
    z = np.zeros((n, manifest["z_dims"]), np.float32)
    reference = host.stream(folder, f0, loudness, z, seed=0)
    quantized = host.stream(folder, f0, loudness, z, seed=0, model_file=model_file)
    peak = float(np.abs(reference).max()) or 1.0
    return {"max_over_peak": float(np.abs(quantized - reference).max() / peak),
            "rms_over_peak": float(np.sqrt(np.mean((quantized - reference) ** 2)) / peak),
            "test_signal": f"{secs:g} s glide 220-440 Hz, -50 to -20 dB, z = 0, seed 0"}


def _manifest(streaming: StreamingDecoder, train, spec, has_reverb: bool, mixture_dir, project_dir) -> dict:
    s = streaming
    block = s.block_frames
    return {
        "format_version": FORMAT_VERSION,
        "tflite": TFLITE_FILE, "saved_model": SAVED_MODEL_DIR, "signature": SIGNATURE, "host_module": "host.py",
        "sample_rate": s.sample_rate, "frame_rate": s.frame_rate, "hop_samples": s.hop,
        "block_frames": block, "block_samples": block * s.hop, "block_ms": 1000.0 * block / s.frame_rate,
        "latency_samples": s.hop, "latency_ms": 1000.0 / s.frame_rate,
        "latency_note": "one decoder frame: ddsp's harmonic amplitudes and f0 cross-fade into the next frame and "
                        "the noise filter's zero-phase FIR reaches into it, so a block's audio is frames n-1..n+B-2 "
                        "(plus the block itself, buffered by the host)",
        "z_dims": s.z_dims, "n_harmonics": s.n_harmonics, "n_noise_bands": s.n_noise_bands,
        "rnn_channels": s.rnn_channels,
        "inputs": {
            "f0_hz": {"shape": [block], "meaning": "f0 in Hz per decoder frame"},
            "loudness_db": {"shape": [block], "meaning": "A-weighted loudness in dB per decoder frame"},
            "z": {"shape": [block, s.z_dims], "meaning": "z per decoder frame (resample the z grid linearly, "
                                                        "host.resample_frames)"},
            "phase": {"shape": [block * s.hop], "meaning": "the fundamental's phase for the block's audio "
                                                           "(host.HarmonicPhase, float64 then float32)"},
        },
        "state": streaming.state_shapes(),
        "outputs": {"harmonic": [block * s.hop], "noise_magnitudes": [block, s.n_noise_bands],
                    **streaming.state_shapes()},
        "scaling": {"f0_scaled": "ddsp scale_f0_hz: hz_to_midi(f0_hz) / 127 (0 Hz -> 0), inside the model",
                    "ld_scaled": "ddsp scale_db: loudness_db / 80 + 1, inside the model"},
        "noise": {"generator": "numpy.random.Generator(numpy.random.PCG64(seed)).uniform(-1, 1) as float64, cast to "
                               "float32, block_samples per call (host.noise_stream)",
                  "filter": "host.NoiseFilter: ddsp frequency_filter(window_size=0) of noise_magnitudes"},
        "reverb_ir": REVERB_FILE if has_reverb else None,
        "contour_frame_rate": spec.frame_rate,
        "z_table": {"frames_per_example": train.z_time_steps, "example_secs": spec.example_secs},
        "mixture": MIXTURE_DIR if mixture_dir is not None else None,
        "quantized": {},
        "training": {"train": train.resolved().model_dump(mode="json"), "dataset": asdict(spec),
                     "code_commit": _git_commit(project_dir)},
    }


def _git_commit(folder: Path | None) -> str | None:
    """The project's commit (with ``-dirty`` for uncommitted changes), or None outside a git checkout."""
    if folder is None:
        return None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")
