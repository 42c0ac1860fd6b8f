"""``gddsp``: the user's command, run from the project folder after `make run`.

Subcommands:

    gddsp generate --k 8 --cluster 3 --method temporal --midi tune.mid --out tune.wav
    gddsp generate --k 8 --method direct --f0-hz 220 --loudness-db -30 --secs 4 --out tone.wav

``generate``: a sound from the trained model and a fitted mixture: pitch + loudness + sampled z, no
audio in.

A melody longer than the model's example length is played in consecutive windows whose z comes from
one continuous draw, so timbre (and, for ``temporal``, its slow drift) carries across windows.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.audio.plots import plot_example
from pipeline.config import load_params, project_root
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.generation.conditioning import Conditioning, melody_contour, read_midi_notes
from pipeline.generation.plans import ClipPlan, draw_z
from pipeline.paths import Paths
from pipeline.prior.mixture import META_FILE, load_mixture
from pipeline.vocab import ALL_METHODS

GENERATE_HELP = "a sound from pitch + loudness + z sampled from a fitted mixture (no input audio)"



def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=int, required=True, help="which fitted mixture (a K in gmm.n_components)")
    parser.add_argument("--cluster", type=int, default=None,
                        help="cluster to draw every frame from (required unless --method direct)")
    parser.add_argument("--method", choices=ALL_METHODS, default="temporal",
                        help="direct: each frame its own component; inverse_transform: i.i.d. frames from one "
                             "cluster; temporal: AR(1)-smooth frames from one cluster; temporal_hold: one draw per note")
    parser.add_argument("--rho", type=float, default=0.9, help="frame-to-frame correlation for --method temporal")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--midi", type=Path, help="a MIDI file; its top voice is the melody")
    source.add_argument("--f0-hz", type=float, help="a constant pitch in Hz (with --loudness-db and --secs)")
    parser.add_argument("--loudness-db", type=float, default=-30.0, help="constant loudness with --f0-hz")
    parser.add_argument("--secs", type=float, default=None, help="length with --f0-hz (default: one example)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same audio")
    parser.add_argument("--out", type=Path, required=True, help="output WAV; a spectrogram PNG is written beside it")


def conditioning_for(args: argparse.Namespace, spec: DatasetSpec) -> Conditioning:
    if args.midi is not None:
        notes = read_midi_notes(args.midi)
        n_frames = int(np.ceil((max(n.end_s for n in notes) + 0.5) * spec.frame_rate))
        return melody_contour(notes, n_frames, spec.frame_rate, name=args.midi.stem)
    n_frames = int(round((args.secs or spec.example_secs) * spec.frame_rate))
    return Conditioning("constant", np.full(n_frames, args.f0_hz, np.float32),
                        np.full(n_frames, args.loudness_db, np.float32), np.ones(n_frames, bool))


def windows(cond: Conditioning, n_frames: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pad the contours to whole windows: [n_windows, n_frames] each, and the padded frame count."""
    n_windows = int(np.ceil(cond.n_frames / n_frames))
    pad = n_windows * n_frames - cond.n_frames
    f0 = np.pad(cond.f0_hz, (0, pad), mode="edge").reshape(n_windows, n_frames)
    loudness = np.pad(cond.loudness_db, (0, pad), constant_values=-120.0).reshape(n_windows, n_frames)
    return f0, loudness, n_windows


def generate(args: argparse.Namespace) -> None:
    params = load_params()
    paths = Paths(params, project_root())
    mixture_dir = paths.mixture_dir(args.k)
    if not (mixture_dir / META_FILE).is_file():
        sys.exit(f"generate: no mixture for K={args.k} at {mixture_dir}: run `dvc repro fit_gmm@{args.k}` first")
    gmm = load_mixture(mixture_dir)
    if args.cluster is not None and not 0 <= args.cluster < args.k:
        sys.exit(f"generate: --cluster must be in [0, {args.k}), got {args.cluster}")
    from pipeline.model.decode import load_synthesizer  # deferred: TensorFlow loads only once arguments are valid

    synth = load_synthesizer(paths.model_dir)
    spec = DatasetSpec.load(paths.prepared_dir)
    cond = conditioning_for(args, spec)
    f0, loudness, n_windows = windows(cond, spec.n_frames)
    plan = ClipPlan(args.k, args.method, args.cluster, cond.name)
    whole = Conditioning(cond.name, f0.reshape(-1), loudness.reshape(-1), np.ones(f0.size, bool), cond.onsets)
    z, _ = draw_z(plan, gmm, synth.n_z_frames * n_windows, whole, args.seed, rho=args.rho)
    audio, _, _ = synth.synthesize(f0, loudness, z.reshape(n_windows, synth.n_z_frames, -1).astype(np.float32),
                                   args.seed)
    audio = audio.reshape(-1)[: int(round(cond.n_frames / spec.frame_rate * spec.sample_rate))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, np.clip(audio, -1, 1), spec.sample_rate, subtype="PCM_16")
    png = plot_example(args.out.with_suffix(".png"), audio, spec.sample_rate, cond.f0_hz,
                       cond.voiced.astype(np.float32), cond.loudness_db, spec.frame_rate,
                       f"K={args.k} {args.method} cluster {args.cluster}, {cond.name}")
    print(f"generate: {len(audio) / spec.sample_rate:.1f} s -> {args.out} (spectrogram {png})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gddsp", description="Generative DDSP: play pitch + loudness in timbres sampled from the prior over z.",
        epilog="Run from the project folder (where params.yaml is) after `make run`: the model comes from "
               "train.model_dir, mixtures from gmm.out_dir/k<K>, the data's rates from prepare.out_dir.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_generate_arguments(commands.add_parser("generate", help=GENERATE_HELP, description=GENERATE_HELP))
    return parser


def check_generate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.method != "direct" and args.cluster is None:
        parser.error(f"--cluster is required with --method {args.method}")


COMMANDS = {"generate": (check_generate, generate)}


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check, run = COMMANDS[args.command]
    check(parser, args)
    run(args)


if __name__ == "__main__":
    main()
