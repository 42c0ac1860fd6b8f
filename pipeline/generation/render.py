"""Generate and measure every clip of one mixture: z -> decoder + synthesiser -> WAV, PNG, metrics.

The trained model is reached through :class:`Synthesizer`, so this module depends on what a
decoder does (controls in, audio out), not on how ddsp builds it. Clips are synthesised in batches:
the decoder's RNN and the synthesiser run far faster per clip on a batch than one by one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

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
from pipeline.generation.fits import fit_conditioning_data
from pipeline.generation.plans import CONDITIONAL, ClipPlan, draw_conditional_z, draw_z, plan_clips
from pipeline.latent.ztable import read_z_table
from pipeline.metrics.clip import MfccStats, clip_metrics, is_valid, reference_mfcc_stats
from pipeline.metrics.spectral import spectral_distance_to_real
from pipeline.paths import CLIP_DIR, CLIPS_FILE, CONDITIONINGS_FILE, Paths
from pipeline.prior.conditional import conditional_cluster_rhos, load_conditional
from pipeline.prior.mixture import load_mixture
from pipeline.prior.samplers import cluster_rhos, make_rng
from pipeline.publish import write_json_atomic
from pipeline.vocab import CLIP_METRICS, REAL, SPECTRAL_DISTANCE_TO_REAL, TEMPORAL_METHODS, VALID_SHARE


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


ZFunction = Callable[[ClipPlan, Conditioning], tuple[np.ndarray, np.ndarray]]


def render_clips(plans: list[ClipPlan], z_of: ZFunction, synth: Synthesizer, conditionings: dict[str, Conditioning],
                 seed: int, out_dir: Path, reference: MfccStats, thresholds: Thresholds, measure: MeasureSettings,
                 batch_size: int = 8, progress: bool = True, plot: Callable[[ClipPlan], bool] = lambda plan: True,
                 extra: Callable[[ClipPlan, np.ndarray, np.ndarray], dict] | None = None,
                 noise_key: str | int = 0) -> pd.DataFrame:
    """Decode, write and measure every plan (z from ``z_of(plan, conditioning)`` -> (z, components)).

    A clip whose conditioning has reference audio (``real``) also gets ``spectral_distance_to_real``.
    ``plot(plan)`` says which clips get a spectrogram (``png`` is empty for the others); ``extra(plan, z,
    reencoded z)`` adds columns (e.g. the mixture's ``reencode_loglik``). Returns one row per clip.
    """
    (out_dir / CLIP_DIR).mkdir(parents=True, exist_ok=True)
    rows = []
    bar = tqdm(total=len(plans), desc=f"render {noise_key}", unit="clip", disable=not progress)
    for batch_index, batch in enumerate(_batches(plans, batch_size)):
        conds = [conditionings[p.conditioning_key] for p in batch]
        draws = [z_of(p, c) for p, c in zip(batch, conds)]
        f0 = np.stack([c.f0_hz for c in conds])
        loudness = np.stack([c.loudness_db for c in conds])
        noise_seed = int(make_rng(seed, "noise", noise_key, batch_index).integers(2**31))
        audio, harmonic, noise = synth.synthesize(f0, loudness, np.stack([z for z, _ in draws]).astype(np.float32),
                                                  noise_seed)
        reencoded = synth.encode(audio, f0, loudness) if extra is not None else None
        for i, (plan, cond) in enumerate(zip(batch, conds)):
            row = _write_clip(plan, cond, audio[i], out_dir, synth, plot(plan))
            metrics = clip_metrics(audio[i], synth.sample_rate, synth.frame_rate, cond.f0_hz, cond.loudness_db,
                                   reference, harmonic_audio=harmonic[i], noise_audio=noise[i],
                                   target_voiced=cond.voiced, f0_method=measure.f0_method, fmin_hz=measure.fmin_hz,
                                   fmax_hz=measure.fmax_hz, loudness_n_fft=measure.loudness_n_fft)
            metrics[SPECTRAL_DISTANCE_TO_REAL] = (math.nan if cond.audio is None
                                                  else spectral_distance_to_real(cond.audio, audio[i]))
            metrics["reencode_loglik"] = math.nan
            if extra is not None:
                metrics.update(extra(plan, draws[i][0], reencoded[i]))
            valid, reason = is_valid(metrics, thresholds.min_hnr_db, thresholds.min_f0_rpa)
            components = draws[i][1]
            rows.append({**row, **metrics, "valid": valid, "invalid_reason": "" if valid else reason,
                         "component_switches": int((np.diff(components) != 0).sum()), "seed": seed})
        bar.update(len(batch))
    bar.close()
    return pd.DataFrame(rows)


def render_mixture(plans: list[ClipPlan], gmm: GaussianMixture, synth: Synthesizer,
                   conditionings: dict[str, Conditioning], rhos: dict[int, float], seed: int, out_dir: Path,
                   reference: MfccStats, thresholds: Thresholds, measure: MeasureSettings,
                   batch_size: int = 8, progress: bool = True, plot: Callable[[ClipPlan], bool] = lambda plan: True,
                   conditional=None, conditional_rhos: dict[int, float] | None = None) -> pd.DataFrame:
    """Write every planned clip under ``out_dir/clips`` and return one row per clip (the manifest).

    ``conditional`` (:class:`pipeline.prior.conditional.ConditionalMixture`) and its per-cluster
    ``conditional_rhos`` serve the ``conditional`` method's plans."""
    conditional_rhos = conditional_rhos or {}

    def z_of(plan: ClipPlan, cond: Conditioning):
        if plan.method == CONDITIONAL:
            return draw_conditional_z(plan, conditional, synth.n_z_frames, cond, seed,
                                      conditional_rhos.get(plan.cluster, 0.0))
        return draw_z(plan, gmm, synth.n_z_frames, cond, seed, rhos.get(plan.cluster, 0.0))

    def extra(plan: ClipPlan, z: np.ndarray, reencoded: np.ndarray) -> dict:
        weights = conditional.weights if plan.method == CONDITIONAL else gmm.weights_
        rho_of = conditional_rhos if plan.method == CONDITIONAL else rhos
        return {"reencode_loglik": float(gmm.score_samples(reencoded.astype(np.float64)).mean()),
                "rho": rho_of.get(plan.cluster, 0.0) if plan.method in TEMPORAL_METHODS else 0.0,
                "cluster_weight": math.nan if plan.cluster is None else float(weights[plan.cluster])}

    k = plans[0].k if plans else 0
    return render_clips(plans, z_of, synth, conditionings, seed, out_dir, reference, thresholds, measure,
                        batch_size=batch_size, progress=progress, plot=plot, extra=extra, noise_key=k)


def _write_clip(plan: ClipPlan, cond: Conditioning, audio: np.ndarray, out_dir: Path, synth: Synthesizer,
                with_png: bool = True) -> dict:
    wav = Path(CLIP_DIR) / f"{plan.clip_id}.wav"
    png = Path(CLIP_DIR) / f"{plan.clip_id}.png"
    sf.write(out_dir / wav, np.clip(audio, -1.0, 1.0), synth.sample_rate, subtype="PCM_16")
    if with_png:
        cluster = "all clusters (direct)" if plan.cluster is None else f"cluster {plan.cluster}"
        title = (f"{plan.method}, {cond.key} conditioning" if plan.k == 0 else
                 f"K={plan.k} {plan.method} {cluster}, {cond.key} conditioning")
        plot_example(out_dir / png, audio, synth.sample_rate, cond.f0_hz, cond.voiced.astype(np.float32),
                     cond.loudness_db, synth.frame_rate, title)
    return {**{k: v for k, v in asdict(plan).items()}, "cluster": -1 if plan.cluster is None else plan.cluster,
            "clip_id": plan.clip_id, "wav": wav.as_posix(), "png": png.as_posix() if with_png else ""}


def shown_in_report(plot_real_examples: int) -> Callable[[ClipPlan], bool]:
    """Spectrograms for the clips the report shows: every non-real clip, real ones of the first examples."""
    return lambda plan: plan.example < 0 or (plan.example < plot_real_examples and plan.draw == 0)


def conditioning_inputs(params: Params, paths: Paths, spec: DatasetSpec) -> tuple[dict[str, Conditioning], dict]:
    """The conditionings ``sample.conditionings`` asks for (keyed by ``Conditioning.key``) and what was
    fitted on the train split for them (a JSON-safe summary). Shared by sample@K and anchors, so both
    decode the same contours."""
    cfg = params.sample
    data = fit_conditioning_data(paths.prepared_dir, spec, loudness_n_fft=params.prepare.loudness_n_fft,
                                 n_audio=cfg.report_scale_examples, mapping_method=cfg.report_scale_method,
                                 want_mapping="seed_report_scale" in cfg.conditionings,
                                 want_envelope="midi" in cfg.conditionings and cfg.midi_envelope == "data")
    real = list(iter_examples(paths.prepared_dir, "eval", limit=cfg.n_real)) if REAL in cfg.conditionings else []
    return conditionings_from_params(params, spec, real, paths.root, data), data.summary()


def sample_mixture(params: Params, paths: Paths, key: int | str, out_dir: Path, synth: Synthesizer) -> pd.DataFrame:
    """Everything sample@K makes for the mixture in ``paths.mixture_dir(key)`` (K, or ``recommended``):
    every planned clip written under ``out_dir`` (WAV + PNG in ``clips/``, the manifest ``clips.csv``,
    what the conditionings were fitted to in ``conditionings.json``); returns the manifest."""
    cfg = params.sample
    spec = DatasetSpec.load(paths.prepared_dir)
    gmm = load_mixture(paths.mixture_dir(key))
    k = int(gmm.n_components)
    conditionings, fitted = conditioning_inputs(params, paths, spec)
    examples = sorted({c.example for c in conditionings.values() if c.example >= 0})
    frames = read_z_table(paths.z_table, "train")
    conditional, conditional_rhos = None, {}
    if CONDITIONAL in cfg.methods:
        conditional = load_conditional(paths.conditional_dir(key))
        conditional_rhos = conditional_cluster_rhos(frames, conditional, cfg.rho)
    plans = plan_clips(k, cfg.methods, [c for c in cfg.conditionings], cfg.temporal_hold, real_examples=examples,
                       n_draws=cfg.n_draws, weights=gmm.weights_,
                       conditional_weights=None if conditional is None else conditional.weights, seed=params.seed)
    rhos = cluster_rhos(frames, gmm, cfg.rho)
    reference = reference_mfcc_stats((example["audio"] for example in iter_examples(paths.prepared_dir, "eval")),
                                     spec.sample_rate)
    measure = MeasureSettings(spec.f0_method, params.prepare.f0.fmin_hz, params.prepare.f0.fmax_hz,
                              params.prepare.loudness_n_fft)
    clips = render_mixture(plans, gmm, synth, conditionings, rhos, params.seed, out_dir, reference,
                           Thresholds(cfg.min_hnr_db, cfg.min_f0_rpa), measure, batch_size=cfg.batch_size,
                           plot=shown_in_report(cfg.plot_real_examples), conditional=conditional,
                           conditional_rhos=conditional_rhos)
    clips.to_csv(out_dir / CLIPS_FILE, index=False)
    write_json_atomic(out_dir / CONDITIONINGS_FILE, fitted)
    return clips


def summarise_clips(clips: pd.DataFrame) -> dict:
    """Per conditioning and method (never pooled over conditionings): the mean of every clip metric,
    the valid share and the clip count (sample@K's metrics, ``<conditioning>.<method>.<metric>``)."""
    summary: dict = {}
    for (conditioning, method), group in clips.groupby(["conditioning", "method"]):
        means = group[list(CLIP_METRICS)].mean(numeric_only=True)
        entry = {name: (None if pd.isna(v) else round(float(v), 6)) for name, v in means.items()}
        entry[VALID_SHARE] = round(float(group["valid"].mean()), 4)
        entry["n_clips"] = int(len(group))
        summary.setdefault(conditioning, {})[method] = entry
    return summary
