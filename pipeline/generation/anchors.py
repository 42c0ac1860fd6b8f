"""The anchors: the same contours decoded with z that is not sampled, so sampled timbres have a scale.

- ``resynthesis``: z from the encoder on the real example itself (conditioning ``real`` only): what
  the autoencoder reaches with the right timbre, the ceiling of any prior.
- ``mean_z``: the training z mean held on every frame (every conditioning): one plain timbre that
  sampling must beat to be worth its variety.

They do not depend on K, so the anchors stage renders them once per conditioning (and real example),
measured exactly as sample@K measures its clips (:func:`pipeline.generation.render.render_clips`),
and keeps a copy of each real example's audio (``real/real_e<i>.wav``): the reference set of the
set-level distances that evaluate computes.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from pipeline.config import Params
from pipeline.dataset.reader import iter_examples
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.generation.conditioning import Conditioning
from pipeline.generation.plans import ANCHOR_K, ClipPlan
from pipeline.generation.render import (
    MeasureSettings,
    Synthesizer,
    Thresholds,
    conditioning_inputs,
    render_clips,
    shown_in_report,
)
from pipeline.latent.ztable import z_frames
from pipeline.metrics.clip import reference_mfcc_stats
from pipeline.paths import CLIPS_FILE, CONDITIONINGS_FILE, REAL_DIR, Paths
from pipeline.publish import write_json_atomic
from pipeline.vocab import MEAN_Z, RESYNTHESIS


def plan_anchors(conditionings: dict[str, Conditioning]) -> list[ClipPlan]:
    """mean_z on every conditioning, resynthesis on those with real audio, in conditioning order."""
    plans = []
    for cond in conditionings.values():
        plans.append(ClipPlan(ANCHOR_K, MEAN_Z, None, cond.name, cond.example))
        if cond.audio is not None:
            plans.append(ClipPlan(ANCHOR_K, RESYNTHESIS, None, cond.name, cond.example))
    return plans


def anchor_z(plan: ClipPlan, cond: Conditioning, synth: Synthesizer, mean_z: np.ndarray) -> np.ndarray:
    """z [n_z_frames, d] of one anchor clip."""
    if plan.method == MEAN_Z:
        return np.broadcast_to(np.asarray(mean_z, np.float64), (synth.n_z_frames, len(mean_z))).copy()
    if plan.method == RESYNTHESIS:
        if cond.audio is None:
            raise ValueError(f"resynthesis needs the real audio of conditioning {cond.key}")
        return synth.encode(cond.audio[None], cond.f0_hz[None], cond.loudness_db[None])[0].astype(np.float64)
    raise ValueError(f"unknown anchor {plan.method!r}; choose from {(RESYNTHESIS, MEAN_Z)}")


def write_real_audio(conditionings: dict[str, Conditioning], folder: Path, sample_rate: int) -> list[Path]:
    """The real examples' audio as ``real_e<i>.wav`` (16-bit, like the clips)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for cond in conditionings.values():
        if cond.audio is not None:
            written.append(folder / f"{cond.key}.wav")
            sf.write(written[-1], np.clip(cond.audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
    return written


def render_anchors(params: Params, paths: Paths, out_dir: Path, synth: Synthesizer) -> pd.DataFrame:
    """Every anchor clip under ``out_dir`` (clips/, clips.csv, real/, conditionings.json); the manifest."""
    cfg = params.sample
    spec = DatasetSpec.load(paths.prepared_dir)
    conditionings, fitted = conditioning_inputs(params, paths, spec)
    mean_z = z_frames(paths.z_table, "train").mean(axis=0)
    plans = plan_anchors(conditionings)
    reference = reference_mfcc_stats((example["audio"] for example in iter_examples(paths.prepared_dir, "eval")),
                                     spec.sample_rate)
    measure = MeasureSettings(spec.f0_method, params.prepare.f0.fmin_hz, params.prepare.f0.fmax_hz,
                              params.prepare.loudness_n_fft)
    clips = render_clips(plans, lambda plan, cond: (anchor_z(plan, cond, synth, mean_z), np.zeros(synth.n_z_frames)),
                         synth, conditionings, params.seed, out_dir, reference,
                         Thresholds(cfg.min_hnr_db, cfg.min_f0_rpa), measure, batch_size=cfg.batch_size,
                         plot=shown_in_report(cfg.plot_real_examples), noise_key="anchors")
    clips = clips.assign(rho=0.0, cluster_weight=math.nan)
    write_real_audio(conditionings, out_dir / REAL_DIR, spec.sample_rate)
    clips.to_csv(out_dir / CLIPS_FILE, index=False)
    write_json_atomic(out_dir / CONDITIONINGS_FILE, fitted)
    return clips
