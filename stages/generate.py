"""Generate a sound from a trained model and a fitted mixture: pitch + loudness + sampled z, no audio in.

Not a DVC stage: the command a user runs after `make run`. Examples:

    python -m stages.generate --k 8 --cluster 3 --method temporal --midi tune.mid --out tune.wav
    python -m stages.generate --k 8 --method direct --f0-hz 220 --loudness-db -30 --secs 4 --out tone.wav
    python -m stages.generate --k 8 --cluster 3 --audio my_singing.wav --out sung.wav

Any length plays as one continuous signal (the decoder's state and the reverb's tail run on from
start to end), its z one continuous draw, so timbre (and, for ``temporal``, its slow drift) carries
through; ``--audio`` plays the pitch and loudness of a recording in the sampled timbre.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.audio import AudioRejected
from pipeline.conditioning import Conditioning
from pipeline.config import PrepareParams, load_params, project_root
from pipeline.generate import ClipPlan
from pipeline.gmm import load_mixture
from pipeline.longform import audio_conditioning, constant_conditioning, long_form_z, midi_conditioning
from pipeline.plots import plot_example
from pipeline.tfrecord import DatasetSpec

METHODS = ("direct", "inverse_transform", "temporal", "temporal_hold")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stages.generate", description=__doc__.split("\n\n")[0],
        epilog="Run from the project folder (where params.yaml is) after `make run`: the model comes from "
               "train.model_dir and the mixture from gmm.out_dir/k<K>.")
    parser.add_argument("--k", type=int, required=True, help="which fitted mixture (a K in gmm.n_components)")
    parser.add_argument("--cluster", type=int, default=None,
                        help="cluster to draw every frame from (required unless --method direct)")
    parser.add_argument("--method", choices=METHODS, default="temporal",
                        help="direct: each frame its own component; inverse_transform: i.i.d. frames from one "
                             "cluster; temporal: AR(1)-smooth frames from one cluster; temporal_hold: one draw per note")
    parser.add_argument("--rho", type=float, default=0.9, help="frame-to-frame correlation for --method temporal")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--midi", type=Path, help="a MIDI file; its top voice is the melody")
    source.add_argument("--f0-hz", type=float, help="a constant pitch in Hz (with --loudness-db and --secs)")
    source.add_argument("--audio", type=Path, help="a recording: its pitch and loudness (prepare's analysis)")
    parser.add_argument("--loudness-db", type=float, default=-30.0, help="constant loudness with --f0-hz")
    parser.add_argument("--secs", type=float, default=None, help="length with --f0-hz (default: one example)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same audio")
    parser.add_argument("--out", type=Path, required=True, help="output WAV; a spectrogram PNG is written beside it")
    args = parser.parse_args(argv)
    if args.method != "direct" and args.cluster is None:
        parser.error(f"--cluster is required with --method {args.method}")
    return args


def conditioning_for(args: argparse.Namespace, spec: DatasetSpec, prepare: PrepareParams) -> Conditioning:
    if args.midi is not None:
        return midi_conditioning(args.midi, spec)
    if args.audio is not None:
        if not args.audio.is_file():
            sys.exit(f"generate: --audio {args.audio}: no such file")
        try:
            return audio_conditioning(args.audio, spec, prepare)
        except AudioRejected as err:
            sys.exit(f"generate: --audio {args.audio}: {err}")
    return constant_conditioning(args.f0_hz, args.loudness_db, args.secs or spec.example_secs, spec)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params()
    root = project_root()
    mixture_dir = root / params.gmm.out_dir / f"k{args.k}"
    if not (mixture_dir / "mixture.json").is_file():
        sys.exit(f"generate: no mixture for K={args.k} at {mixture_dir}: run `dvc repro fit_gmm@{args.k}` first")
    gmm = load_mixture(mixture_dir)
    if args.cluster is not None and not 0 <= args.cluster < args.k:
        sys.exit(f"generate: --cluster must be in [0, {args.k}), got {args.cluster}")
    from pipeline.model.synthesizer import load_synthesizer  # deferred: TensorFlow loads only once arguments are valid

    synth = load_synthesizer(root / params.train.model_dir)
    spec = DatasetSpec.load(root / params.prepare.out_dir)
    cond = conditioning_for(args, spec, params.prepare)
    plan = ClipPlan(args.k, args.method, args.cluster, cond.name)
    z = long_form_z(plan, gmm, cond, spec, synth.n_z_frames, args.seed, args.rho)
    audio, _, _ = synth.decode_long(cond.f0_hz, cond.loudness_db, z, args.seed)
    audio = audio[: int(round(cond.n_frames / spec.frame_rate * spec.sample_rate))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.out, np.clip(audio, -1, 1), spec.sample_rate, subtype="PCM_16")
    png = plot_example(args.out.with_suffix(".png"), audio, spec.sample_rate, cond.f0_hz,
                       cond.voiced.astype(np.float32), cond.loudness_db, spec.frame_rate,
                       f"K={args.k} {args.method} cluster {args.cluster}, {cond.name}")
    print(f"generate: {len(audio) / spec.sample_rate:.1f} s -> {args.out} (spectrogram {png})")


if __name__ == "__main__":
    main()
