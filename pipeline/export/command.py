"""`gddsp export` and `gddsp stream`: the real-time model, written and played.

    gddsp export [--k 8]            # export.out_dir: SavedModel, TFLite, host.py, manifest.json
    gddsp stream --k 8 --cluster 3 --method temporal --midi tune.mid --out tune.wav

``stream`` plays the exported TFLite model block by block (LiteRT interpreter + the numpy host
module), with z drawn as ``generate`` draws it; on the same inputs and seed its WAV equals
``generate``'s (the one frame of latency removed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.config import load_params, project_root
from pipeline.generation.longform import add_melody_arguments
from pipeline.paths import Paths
from pipeline.prior.selection import k_argument, mixture_folder
from pipeline.vocab import MIXTURE_METHODS

EXPORT_HELP = ("write the streaming model of the trained autoencoder: TFLite + SavedModel + host module + "
               "manifest")
STREAM_HELP = "play a melody through the exported TFLite model block by block, z from a fitted mixture, into a WAV"


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=k_argument, default=None,
                        help="also copy this fitted mixture (models/gmm/k<K>; 'recommended': choose_k's K)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: export.out_dir)")


def export(args: argparse.Namespace) -> None:
    params = load_params()
    root = project_root()
    model_dir = root / params.train.model_dir
    if not (model_dir / "config.json").is_file():
        sys.exit(f"export: no trained model at {model_dir}: run `dvc repro train` first")
    mixture_dir = None
    if args.k is not None:
        try:
            _k, mixture_dir = mixture_folder(Paths(params, root), args.k)
        except (FileNotFoundError, ValueError) as err:
            sys.exit(f"export: {err}")
    from pipeline.export.bundle import export_model  # deferred: TensorFlow loads only once arguments are valid
    from pipeline.generation.longform import midi_envelope_for

    out = args.out or root / params.export.out_dir
    envelope = midi_envelope_for(params, Paths(params, root)).as_dict()
    manifest = export_model(model_dir, out, params.export.block_ms, list(params.export.quantize), mixture_dir, root,
                            envelope)
    errors = ", ".join(f"{kind}: max error {q['audio_error']['max_over_peak']:.1e} of peak"
                       for kind, q in manifest["quantized"].items())
    print(f"export: {out} — blocks of {manifest['block_frames']} frames ({manifest['block_ms']:g} ms), "
          f"latency {manifest['latency_ms']:g} ms" + (f"; {errors}" if errors else ""))


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    add_melody_arguments(parser, MIXTURE_METHODS)
    parser.add_argument("--export-dir", type=Path, default=None, help="the export folder (default: export.out_dir)")
    parser.add_argument("--quantized", choices=("float16", "int8"), default=None,
                        help="play a weight-quantised model of the export instead of the float32 one")
    parser.add_argument("--out", type=Path, required=True, help="output WAV")


def stream(args: argparse.Namespace) -> None:
    from pipeline.audio.io import AudioRejected
    from pipeline.dataset.tfrecord import DatasetSpec
    from pipeline.export import host
    from pipeline.generation.longform import audio_conditioning, constant_conditioning, long_form_z, midi_conditioning
    from pipeline.generation.midi_envelope import EnvelopeParams
    from pipeline.generation.plans import ClipPlan
    from pipeline.prior.mixture import load_mixture

    params = load_params()
    root = project_root()
    folder = args.export_dir or root / params.export.out_dir
    if not (folder / host.MANIFEST_FILE).is_file():
        sys.exit(f"stream: no export at {folder}: run `gddsp export` first")
    manifest = host.load_manifest(folder)
    model_file = None
    if args.quantized:
        if args.quantized not in manifest["quantized"]:
            sys.exit(f"stream: {folder} has no {args.quantized} model (export.quantize)")
        model_file = manifest["quantized"][args.quantized]["tflite"]
    try:
        k, mixture_dir = mixture_folder(Paths(params, root), args.k)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"stream: {err}")
    gmm = load_mixture(mixture_dir)
    if args.cluster is not None and not 0 <= args.cluster < k:
        sys.exit(f"stream: --cluster must be in [0, {k}), got {args.cluster}")
    spec = DatasetSpec(**manifest["training"]["dataset"])
    if args.midi is not None:
        envelope = manifest.get("midi_envelope")  # as generate plays MIDI: the training data's envelope
        cond = midi_conditioning(args.midi, spec, EnvelopeParams(**envelope) if envelope else None)
    elif args.audio is not None:
        try:
            cond = audio_conditioning(args.audio, spec, params.prepare)
        except AudioRejected as err:
            sys.exit(f"stream: --audio {args.audio}: {err}")
    else:
        cond = constant_conditioning(args.f0_hz, args.loudness_db, args.secs or spec.example_secs, spec)
    plan = ClipPlan(k, args.method, args.cluster, cond.name)
    z = long_form_z(plan, gmm, cond, spec, manifest["z_table"]["frames_per_example"], args.seed, args.rho)
    f0, loudness, z = host.to_decoder_frames(cond.f0_hz, cond.loudness_db, z, spec.frame_rate, manifest["frame_rate"])
    audio = host.stream(folder, f0, loudness, z, args.seed, model_file)
    audio = audio[: int(round(cond.n_frames / spec.frame_rate * spec.sample_rate))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, np.clip(audio, -1, 1), spec.sample_rate, subtype="PCM_16")
    print(f"stream: {len(audio) / spec.sample_rate:.1f} s in blocks of {manifest['block_frames']} frames -> {args.out}")

