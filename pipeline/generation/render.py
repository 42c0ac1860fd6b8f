"""Generate and measure every clip of one mixture: z -> decoder + synthesiser -> WAV, PNG, metrics.

The trained model is reached through :class:`Synthesizer`, so this module depends on what a
decoder does (controls in, audio out), not on how ddsp builds it. Clips are synthesised in batches:
the decoder's RNN and the synthesiser run far faster per clip on a batch than one by one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np
import pandas as pd
import soundfile as sf
from sklearn.mixture import GaussianMixture
from tqdm import tqdm

from pipeline.audio.plots import plot_example
from pipeline.config import Params
from pipeline.dataset.reader import iter_examples
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.generation.conditioning import Conditioning, conditionings_from_params
from pipeline.generation.plans import ClipPlan, draw_z, plan_clips
from pipeline.latent.ztable import read_z_table
from pipeline.metrics.clip import MfccStats, clip_metrics, is_valid, reference_mfcc_stats
from pipeline.paths import CLIP_DIR, CLIPS_FILE, Paths
from pipeline.prior.mixture import load_mixture
from pipeline.prior.samplers import cluster_rhos, make_rng
from pipeline.vocab import CLIP_METRICS, TEMPORAL_METHODS, VALID_SHARE


class Synthesizer(Protocol):
    sample_rate: int
    frame_rate: int
    n_z_frames: int

    def synthesize(self, f0_hz: np.ndarray, loudness_db: np.ndarray, z: np.ndarray, seed: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[b, n_frames] controls + z [b, n_z_frames, d] -> (audio, harmonic, noise), each [b, n_samples].

        ``seed`` fixes the synthesiser's own noise source, so the same inputs give the same audio."""

    def encode(self, audio: np.ndarray, f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
        """[b, n_samples] audio + its controls -> z [b, n_z_frames, d]."""


@dataclass(frozen=True)
class Thresholds:
    min_hnr_db: float
    min_f0_rpa: float


@dataclass(frozen=True)
class MeasureSettings:
    f0_method: str
    fmin_hz: float
    fmax_hz: float
    loudness_n_fft: int


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def render_mixture(plans: list[ClipPlan], gmm: GaussianMixture, synth: Synthesizer,
                   conditionings: dict[str, Conditioning], rhos: dict[int, float], seed: int, out_dir: Path,
                   reference: MfccStats, thresholds: Thresholds, measure: MeasureSettings,
                   batch_size: int = 8, progress: bool = True) -> pd.DataFrame:
    """Write every planned clip under ``out_dir/clips`` and return one row per clip (the manifest)."""
    (out_dir / CLIP_DIR).mkdir(parents=True, exist_ok=True)
    rows = []
    bar = tqdm(total=len(plans), desc=f"sample K={plans[0].k if plans else '?'}", unit="clip", disable=not progress)
    for batch_index, batch in enumerate(_batches(plans, batch_size)):
        conds = [conditionings[p.conditioning] for p in batch]
        draws = [draw_z(p, gmm, synth.n_z_frames, c, seed, rhos.get(p.cluster, 0.0)) for p, c in zip(batch, conds)]
        f0 = np.stack([c.f0_hz for c in conds])
        loudness = np.stack([c.loudness_db for c in conds])
        noise_seed = int(make_rng(seed, "noise", plans[0].k, batch_index).integers(2**31))
        audio, harmonic, noise = synth.synthesize(f0, loudness, np.stack([z for z, _ in draws]).astype(np.float32),
                                                  noise_seed)
        reencoded = synth.encode(audio, f0, loudness)
        for i, (plan, cond) in enumerate(zip(batch, conds)):
            row = _write_clip(plan, cond, audio[i], out_dir, synth)
            metrics = clip_metrics(audio[i], synth.sample_rate, synth.frame_rate, cond.f0_hz, cond.loudness_db,
                                   reference, harmonic_audio=harmonic[i], noise_audio=noise[i],
                                   target_voiced=cond.voiced, f0_method=measure.f0_method, fmin_hz=measure.fmin_hz,
                                   fmax_hz=measure.fmax_hz, loudness_n_fft=measure.loudness_n_fft)
            metrics["reencode_loglik"] = float(gmm.score_samples(reencoded[i].astype(np.float64)).mean())
            valid, reason = is_valid(metrics, thresholds.min_hnr_db, thresholds.min_f0_rpa)
            components = draws[i][1]
            rows.append({**row, **metrics, "valid": valid, "invalid_reason": "" if valid else reason,
                         "rho": rhos.get(plan.cluster, 0.0) if plan.method in TEMPORAL_METHODS else 0.0,
                         "cluster_weight": math.nan if plan.cluster is None else float(gmm.weights_[plan.cluster]),
                         "component_switches": int((np.diff(components) != 0).sum()), "seed": seed})
        bar.update(len(batch))
    bar.close()
    return pd.DataFrame(rows)


def _write_clip(plan: ClipPlan, cond: Conditioning, audio: np.ndarray, out_dir: Path, synth: Synthesizer) -> dict:
    wav = Path(CLIP_DIR) / f"{plan.clip_id}.wav"
    png = Path(CLIP_DIR) / f"{plan.clip_id}.png"
    sf.write(out_dir / wav, np.clip(audio, -1.0, 1.0), synth.sample_rate, subtype="PCM_16")
    cluster = "all clusters (direct)" if plan.cluster is None else f"cluster {plan.cluster}"
    plot_example(out_dir / png, audio, synth.sample_rate, cond.f0_hz, cond.voiced.astype(np.float32),
                 cond.loudness_db, synth.frame_rate, f"K={plan.k} {plan.method} {cluster}, {cond.name} conditioning")
    return {**{k: v for k, v in asdict(plan).items()}, "cluster": -1 if plan.cluster is None else plan.cluster,
            "clip_id": plan.clip_id, "wav": wav.as_posix(), "png": png.as_posix()}


def sample_mixture(params: Params, paths: Paths, k: int, out_dir: Path, synth: Synthesizer) -> pd.DataFrame:
    """Everything sample@K makes for the K-component mixture: every planned clip written under
    ``out_dir`` (WAV + PNG in ``clips/``, the manifest ``clips.csv``); returns the manifest."""
    cfg = params.sample
    spec = DatasetSpec.load(paths.prepared_dir)
    gmm = load_mixture(paths.mixture_dir(k))
    real = list(iter_examples(paths.prepared_dir, "eval", limit=cfg.n_real)) if "real" in cfg.conditionings else []
    conditionings = conditionings_from_params(params, spec, real, paths.root)
    plans = plan_clips(k, cfg.methods, list(conditionings), cfg.temporal_hold)
    rhos = cluster_rhos(read_z_table(paths.z_table, "train"), gmm, cfg.rho)
    reference = reference_mfcc_stats((example["audio"] for example in iter_examples(paths.prepared_dir, "eval")),
                                     spec.sample_rate)
    measure = MeasureSettings(spec.f0_method, params.prepare.f0.fmin_hz, params.prepare.f0.fmax_hz,
                              params.prepare.loudness_n_fft)
    clips = render_mixture(plans, gmm, synth, conditionings, rhos, params.seed, out_dir, reference,
                           Thresholds(cfg.min_hnr_db, cfg.min_f0_rpa), measure, batch_size=cfg.batch_size)
    clips.to_csv(out_dir / CLIPS_FILE, index=False)
    return clips


def summarise_clips(clips: pd.DataFrame) -> dict:
    """Per method: the mean of every clip metric, the valid share and the clip count (sample@K's metrics)."""
    summary = {}
    for method, group in clips.groupby("method"):
        means = group[list(CLIP_METRICS)].mean(numeric_only=True)
        summary[method] = {name: (None if pd.isna(v) else round(float(v), 6)) for name, v in means.items()}
        summary[method][VALID_SHARE] = round(float(group["valid"].mean()), 4)
        summary[method]["n_clips"] = int(len(group))
    return summary
