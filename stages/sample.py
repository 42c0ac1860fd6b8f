"""DVC stage ``sample@K``: generate clips from the K-component mixture and measure each one.

Run as ``python -m stages.sample --k 8``. Outs: ``sample.out_dir/k<K>`` (clips/*.wav + *.png,
clips.csv: one row per clip with its K, method, cluster, weight, conditioning, seed, rho, paths and
metrics); metrics: ``metrics/samples/k<K>.json`` (means per method).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from pipeline.conditioning import Conditioning, melody_contour, read_midi_notes, real_contour, seed_preset
from pipeline.config import Params, load_params, project_root
from pipeline.corpus import generate_melody
from pipeline.examples import iter_examples
from pipeline.fsutil import staged_dir, write_json_atomic
from pipeline.generate import plan_clips
from pipeline.gmm import load_mixture
from pipeline.metrics import MfccAccumulator, mfcc_frames
from pipeline.sampling import estimate_rho, z_matrix
from pipeline.synthesis import CLIPS_FILE, MeasureSettings, Thresholds, render_mixture
from pipeline.tfrecord import DatasetSpec
from pipeline.tracking import k_run
from pipeline.ztable import read_z_table
from stages.fit_gmm import log_mixture, metrics_path, mixture_dir

METRIC_NAMES = ("f0_rpa", "f0_median_cents", "loudness_l1_db", "hnr_db", "spectral_flatness",
                "timbre_consistency", "frechet_mfcc", "reencode_loglik")
# a melody index the corpus never renders (it renders 0 .. n_files-1), so the MIDI clip is unseen music
UNSEEN_MELODY_INDEX = 1_000_000


def build_conditionings(params: Params, root: Path, spec: DatasetSpec) -> dict[str, Conditioning]:
    cfg = params.sample
    prepared = root / params.prepare.out_dir
    out: dict[str, Conditioning] = {}
    if "seed" in cfg.conditionings:
        out["seed"] = seed_preset(spec.n_frames)
    if "midi" in cfg.conditionings:
        if cfg.midi_file:
            notes = read_midi_notes(root / cfg.midi_file)
        else:
            notes = generate_melody(params.corpus, params.seed, UNSEEN_MELODY_INDEX).notes
        out["midi"] = melody_contour(notes, spec.n_frames, spec.frame_rate)
    if "real" in cfg.conditionings:
        for i, example in enumerate(iter_examples(prepared, "eval", limit=cfg.n_real)):
            out[f"real_{i}"] = real_contour(example, f"real_{i}")
    return out


def reference_mfcc(prepared: Path, sample_rate: int):
    """MFCC statistics of all held-out audio, accumulated so memory stays flat."""
    accumulator = MfccAccumulator()
    for example in iter_examples(prepared, "eval"):
        accumulator.add(mfcc_frames(example["audio"], sample_rate))
    return accumulator.stats()


def cluster_rhos(z_path: Path, gmm, fixed: float | None) -> dict[int, float]:
    if fixed is not None:
        return {k: fixed for k in range(gmm.n_components)}
    frames = read_z_table(z_path, "train")
    labels = gmm.predict(z_matrix(frames))
    return {k: estimate_rho(frames, gmm, k, labels=labels).rho for k in range(gmm.n_components)}


def summarise(clips: pd.DataFrame) -> dict:
    summary = {}
    for method, group in clips.groupby("method"):
        means = group[list(METRIC_NAMES)].mean(numeric_only=True)
        summary[method] = {name: (None if pd.isna(v) else round(float(v), 6)) for name, v in means.items()}
        summary[method]["valid_share"] = round(float(group["valid"].mean()), 4)
        summary[method]["n_clips"] = int(len(group))
    return summary


def main(argv: list[str] | None = None) -> None:
    from pipeline.model.synthesizer import load_synthesizer  # deferred: TensorFlow loads only once params are valid

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, required=True, help="cluster count; must be listed in gmm.n_components")
    args = parser.parse_args(argv)
    params = load_params()
    root = project_root()
    cfg = params.sample
    if args.k not in params.gmm.n_components:
        sys.exit(f"sample: K={args.k} is not in gmm.n_components {params.gmm.n_components}")
    prepared = root / params.prepare.out_dir
    spec = DatasetSpec.load(prepared)
    gmm = load_mixture(root / params.gmm.out_dir / f"k{args.k}")
    synth = load_synthesizer(root / params.train.model_dir)
    conditionings = build_conditionings(params, root, spec)
    plans = plan_clips(args.k, cfg.methods, list(conditionings), cfg.temporal_hold)
    rhos = cluster_rhos(root / params.extract_z.out_path, gmm, cfg.rho)
    measure = MeasureSettings(spec.f0_method, params.prepare.f0.fmin_hz, params.prepare.f0.fmax_hz,
                              params.prepare.loudness_n_fft)
    out_dir = root / cfg.out_dir / f"k{args.k}"
    with staged_dir(out_dir) as staging:
        clips = render_mixture(plans, gmm, synth, conditionings, rhos, params.seed, staging,
                               reference_mfcc(prepared, spec.sample_rate), Thresholds(cfg.min_hnr_db, cfg.min_f0_rpa),
                               measure, batch_size=cfg.batch_size)
        clips.to_csv(staging / CLIPS_FILE, index=False)
    summary = summarise(clips)
    write_json_atomic(root / "metrics/samples" / f"k{args.k}.json", summary)
    invalid = clips[~clips["valid"]]
    print(f"sample: K={args.k}: {len(clips)} clips, {len(invalid)} invalid -> {out_dir}")
    with k_run(args.k, root, params.tracking) as run:
        # the mixture's part again (identical values), so the K run is complete when fit_gmm@K was cached
        log_mixture(run, params, args.k, json.loads(metrics_path(root, params.gmm, args.k).read_text()),
                    mixture_dir(root, params.gmm, args.k))
        run.log_params({"sample": cfg.model_dump()})
        run.log_metrics(summary)  # <method>.<metric>, the keys `dvc metrics show` prints
        run.log_table(clips, "manifest.json")
        run.log_artifact(out_dir / CLIPS_FILE)
        run.log_artifact(out_dir / "clips", "clips")


if __name__ == "__main__":
    main()
