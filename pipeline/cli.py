"""``gddsp``: the user's command, run from the project folder after `make run`.

Subcommands:

    gddsp generate --k 8 --cluster 3 --method temporal --midi tune.mid --out tune.wav
    gddsp generate --k 8 --method direct --f0-hz 220 --loudness-db -30 --secs 4 --out tone.wav
    gddsp generate --k 8 --cluster 3 --audio my_singing.wav --out sung.wav
    gddsp export --k 8
    gddsp stream --k 8 --cluster 3 --method temporal --midi tune.mid --out tune.wav

``generate``: a sound from the trained model and a fitted mixture: pitch + loudness + sampled z. Any
length plays as one continuous signal (the decoder's state and the reverb's tail run on from start to
end), its z one continuous draw; ``--audio`` plays the pitch and loudness of a recording in the
sampled timbre. ``export`` writes the real-time model (:mod:`pipeline.export`); ``stream`` plays it
block by block, equal to ``generate`` on the same inputs and seed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.audio.io import AudioRejected
from pipeline.audio.plots import plot_example
from pipeline.config import Params, load_params, project_root
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.export.command import EXPORT_HELP, STREAM_HELP, add_export_arguments, add_stream_arguments, export, stream
from pipeline.generation.conditioning import Conditioning
from pipeline.generation.longform import (
    add_melody_arguments,
    audio_conditioning,
    constant_conditioning,
    long_form_z,
    midi_conditioning,
    midi_envelope_for,
)
from pipeline.generation.plans import ClipPlan
from pipeline.paths import CONDITIONAL_DIR, Paths
from pipeline.prior.conditional import load_conditional
from pipeline.prior.mixture import load_mixture
from pipeline.prior.selection import mixture_folder
from pipeline.vocab import ALL_METHODS, CONDITIONAL, RECOMMENDED

GENERATE_HELP = "a sound from pitch + loudness + z sampled from a fitted mixture (no input audio)"



def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    add_melody_arguments(parser, ALL_METHODS)
    parser.add_argument("--out", type=Path, required=True, help="output WAV; a spectrogram PNG is written beside it")


def conditioning_for(args: argparse.Namespace, spec: DatasetSpec, params: Params, paths: Paths) -> Conditioning:
    if args.midi is not None:
        return midi_conditioning(args.midi, spec, midi_envelope_for(params, paths))
    if args.audio is not None:
        if not args.audio.is_file():
            sys.exit(f"generate: --audio {args.audio}: no such file")
        try:
            return audio_conditioning(args.audio, spec, params.prepare)
        except AudioRejected as err:
            sys.exit(f"generate: --audio {args.audio}: {err}")
    return constant_conditioning(args.f0_hz, args.loudness_db, args.secs or spec.example_secs, spec)


def generate(args: argparse.Namespace) -> None:
    params = load_params()
    paths = Paths(params, project_root())
    try:
        k, mixture_dir = mixture_folder(paths, args.k)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"generate: {err}")
    gmm = load_mixture(mixture_dir)
    if args.cluster is not None and not 0 <= args.cluster < k:
        sys.exit(f"generate: --cluster must be in [0, {k}), got {args.cluster}")
    conditional = None
    if args.method == CONDITIONAL:
        if not (mixture_dir / CONDITIONAL_DIR).is_dir():
            stage = f"fit_gmm_{RECOMMENDED}" if mixture_dir.name == RECOMMENDED else f"fit_gmm@{k}"
            sys.exit(f"generate: no joint mixture for K={k} at {mixture_dir / CONDITIONAL_DIR}: "
                     f"run `dvc repro {stage}` first")
        conditional = load_conditional(mixture_dir / CONDITIONAL_DIR)
    from pipeline.generation.synthesizer import load_synthesizer  # deferred: TensorFlow loads only once arguments are valid

    synth = load_synthesizer(paths.model_dir)
    spec = DatasetSpec.load(paths.prepared_dir)
    cond = conditioning_for(args, spec, params, paths)
    plan = ClipPlan(k, args.method, args.cluster, cond.name)
    z = long_form_z(plan, gmm, cond, spec, synth.n_z_frames, args.seed, args.rho, conditional)
    audio, _, _ = synth.decode_long(cond.f0_hz, cond.loudness_db, z, args.seed)
    audio = audio[: int(round(cond.n_frames / spec.frame_rate * spec.sample_rate))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, np.clip(audio, -1, 1), spec.sample_rate, subtype="PCM_16")
    png = plot_example(args.out.with_suffix(".png"), audio, spec.sample_rate, cond.f0_hz,
                       cond.voiced.astype(np.float32), cond.loudness_db, spec.frame_rate,
                       f"K={k} {args.method} cluster {args.cluster}, {cond.name}")
    print(f"generate: {len(audio) / spec.sample_rate:.1f} s -> {args.out} (spectrogram {png})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gddsp", description="Generative DDSP: play pitch + loudness in timbres sampled from the prior over z.",
        epilog="Run from the project folder (where params.yaml is) after `make run`: the model comes from "
               "train.model_dir, mixtures from gmm.out_dir/k<K>, the data's rates from prepare.out_dir.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_generate_arguments(commands.add_parser("generate", help=GENERATE_HELP, description=GENERATE_HELP))
    add_export_arguments(commands.add_parser("export", help=EXPORT_HELP, description=EXPORT_HELP))
    add_stream_arguments(commands.add_parser("stream", help=STREAM_HELP, description=STREAM_HELP))
    return parser


def check_generate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.method != "direct" and args.cluster is None:
        parser.error(f"--cluster is required with --method {args.method}")


COMMANDS = {"generate": (check_generate, generate), "export": (lambda parser, args: None, export),
            "stream": (check_generate, stream)}


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check, run = COMMANDS[args.command]
    check(parser, args)
    run(args)


if __name__ == "__main__":
    main()
