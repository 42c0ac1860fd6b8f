"""Issue 11's wiring on known signals: report-scale conditioning, real-contour draws, the conditional
method, anchors, spectral distance to real, per-conditioning tables and the choose_k stage."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import parse_params
from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.evaluation import tables
from pipeline.generation.anchors import anchor_z, plan_anchors
from pipeline.generation.conditioning import (
    Conditioning,
    conditionings_from_params,
    seed_report_scale_preset,
    unscale_f0,
)
from pipeline.generation.fits import fit_conditioning_data, spread_indices
from pipeline.generation.plans import ClipPlan, draw_conditional_z, plan_clips
from pipeline.generation.render import shown_in_report
from pipeline.prior.conditional import fit_joint_mixture, scale_db, scale_f0_hz
from pipeline.report import html

SPEC = DatasetSpec(sample_rate=16000, frame_rate=250, example_secs=1.0, f0_method="swift")


def test_spread_indices_cover_the_split_evenly():
    assert spread_indices(10, 3).tolist() == [0, 4, 9] or spread_indices(10, 3).tolist() == [0, 5, 9]
    assert spread_indices(4, 10).tolist() == [0, 1, 2, 3]
    assert spread_indices(0, 5).tolist() == []


def test_seed_report_scale_is_the_report_pitch_at_the_mapped_loudness():
    cond = seed_report_scale_preset(100, -6.7)
    assert cond.name == "seed_report_scale" and cond.key == "seed_report_scale"
    assert np.allclose(cond.f0_hz, unscale_f0(0.4487863)) and np.allclose(cond.loudness_db, -6.7)
    params = parse_params({"sample": {"conditionings": ["seed_report_scale"]}})
    with pytest.raises(ValueError, match="needs the fitted loudness mapping"):
        conditionings_from_params(params, SPEC, [], None)


def test_conditioning_data_fitted_on_a_synthetic_train_split(tmp_path):
    from pipeline.audio.report_scale import report_loudness_db_v3
    from tests.synthetic import write_synthetic_dataset

    folder = write_synthetic_dataset(tmp_path / "prepared", SPEC, n_train=6, n_eval=2, seed=3)
    data = fit_conditioning_data(folder, SPEC, loudness_n_fft=512, n_audio=4)
    assert np.all(np.diff(data.mapping.v3_db) >= 0) and data.mapping.n_frames > 100
    # the report's -73 dB (1.x) lands inside the 3.x range of the data, far above the literal -48.6 reading's floor
    mapped = report_loudness_db_v3(data.mapping)
    assert min(data.mapping.v3_db) <= mapped <= max(data.mapping.v3_db)
    assert data.envelope.params.floor_db < data.envelope.params.peak_db_loudest
    summary = json.loads(json.dumps(data.summary()))
    assert summary["seed_report_scale"]["loudness_db_v3"] == pytest.approx(mapped)
    params = parse_params({"sample": {"conditionings": ["seed_report_scale", "midi"]}})
    conds = conditionings_from_params(params, SPEC, [], tmp_path, data)
    assert np.allclose(conds["seed_report_scale"].loudness_db, mapped)
    # the MIDI melody's loudness stays within the envelope fitted on the data
    assert conds["midi"].loudness_db.min() >= data.envelope.params.floor_db - 1e-4
    assert conds["midi"].loudness_db.max() <= data.envelope.params.peak_db_loudest + 1e-4


def test_real_plans_draw_clusters_by_weight_and_pair_across_methods():
    weights = np.array([0.9, 0.1])
    plans = plan_clips(2, ["direct", "inverse_transform", "temporal", "conditional"], ["seed", "real"], True,
                       real_examples=range(50), n_draws=4, weights=weights, conditional_weights=np.array([0.5, 0.5]),
                       seed=1)
    real = [p for p in plans if p.conditioning == "real"]
    assert len(real) == 50 * 4 * 5 and len(plans) == len(real) + (1 + 2 * 4)
    assert len({p.clip_id for p in plans}) == len(plans)
    clusters = {}
    for p in real:
        if p.method in ("inverse_transform", "temporal", "temporal_hold"):
            clusters.setdefault((p.example, p.draw), set()).add(p.cluster)
    assert all(len(c) == 1 for c in clusters.values())
    share = np.mean([next(iter(c)) == 0 for c in clusters.values()])
    assert 0.83 < share < 0.97  # 200 draws from weights (0.9, 0.1)
    assert {p.cluster for p in real if p.method == "direct"} == {None}
    assert real[0].clip_id.endswith("_real_e0_d0")
    shown = shown_in_report(1)
    assert shown(ClipPlan(2, "temporal", 0, "seed")) and shown(ClipPlan(2, "temporal", 0, "real", 0, 0))
    assert not shown(ClipPlan(2, "temporal", 0, "real", 0, 1)) and not shown(ClipPlan(2, "temporal", 0, "real", 1, 0))


def test_conditional_draws_follow_the_pitch_when_z_depends_on_it():
    rng = np.random.default_rng(0)
    f0 = rng.uniform(110, 880, 4000)
    loudness = rng.uniform(-60, -10, 4000)
    f0_scaled = scale_f0_hz(f0)
    z = np.stack([4.0 * f0_scaled + rng.normal(0, 0.05, len(f0)), rng.normal(0, 1, len(f0))], axis=1)
    mixture = fit_joint_mixture(z, np.stack([f0_scaled, scale_db(loudness)], axis=1), 1, seed=0)
    n = 2000
    rising = np.geomspace(110, 880, n)
    cond = Conditioning("real", rising.astype(np.float32), np.full(n, -30, np.float32), np.ones(n, bool))
    draw, components = draw_conditional_z(ClipPlan(1, "conditional", 0, "real", 0, 0), mixture, 500, cond, seed=3)
    assert draw.shape == (500, 2) and (components == 0).all()
    expected = 4.0 * scale_f0_hz(rising[np.arange(500) * n // 500])
    assert np.abs(draw[:, 0] - expected).mean() < 0.08  # the conditional mean tracks f0 (noise sd 0.05)
    assert abs(draw[:, 1].std() - 1.0) < 0.15  # the independent dimension keeps its spread
    again, _ = draw_conditional_z(ClipPlan(1, "conditional", 0, "real", 0, 0), mixture, 500, cond, seed=3)
    np.testing.assert_array_equal(draw, again)


def test_spectral_distance_to_real_is_zero_for_the_same_audio_and_grows_with_noise():
    from pipeline.metrics.spectral import spectral_distance_to_real

    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    noise = np.random.default_rng(0).normal(0, 1, len(t))
    assert spectral_distance_to_real(tone, tone) == pytest.approx(0.0, abs=1e-6)
    near = spectral_distance_to_real(tone, tone + 0.001 * noise)
    far = spectral_distance_to_real(tone, tone + 0.1 * noise)
    assert 0 < near < far


class FakeSynth:
    n_z_frames = 8

    def encode(self, audio, f0_hz, loudness_db):
        return np.full((len(audio), self.n_z_frames, 2), float(np.abs(audio).max()))


def test_anchors_plan_mean_z_everywhere_and_resynthesis_on_real_audio():
    n = 10
    seed = Conditioning("seed", np.full(n, 220.0), np.full(n, -20.0), np.ones(n, bool))
    real = Conditioning("real", np.full(n, 220.0), np.full(n, -20.0), np.ones(n, bool), example=2,
                        audio=np.full(160, 0.5, np.float32))
    plans = plan_anchors({seed.key: seed, real.key: real})
    assert [(p.method, p.conditioning_key) for p in plans] == [("mean_z", "seed"), ("mean_z", "real_e2"),
                                                               ("resynthesis", "real_e2")]
    assert plans[2].clip_id == "anchor_resynthesis_real_e2"
    mean = anchor_z(plans[0], seed, FakeSynth(), np.array([1.0, -2.0]))
    assert mean.shape == (8, 2) and np.all(mean == [1.0, -2.0])
    assert np.all(anchor_z(plans[2], real, FakeSynth(), np.zeros(2)) == 0.5)
    with pytest.raises(ValueError, match="needs the real audio"):
        anchor_z(ClipPlan(0, "resynthesis", None, "seed"), seed, FakeSynth(), np.zeros(2))


def _clip(method, k, conditioning, example, draw, distance, hnr=10.0, flatness=0.1):
    return {"method": method, "k": k, "conditioning": conditioning, "example": example, "draw": draw,
            "spectral_distance_to_real": distance, "hnr_db": hnr, "spectral_flatness": flatness, "valid": hnr > 3,
            **{m: math.nan for m in ("f0_rpa", "f0_median_cents", "loudness_l1_db", "timbre_consistency",
                                     "frechet_clip_to_set", "reencode_loglik")}}


def test_paired_units_repeat_each_anchor_for_every_draw_and_k():
    clips = pd.DataFrame([_clip("temporal", k, "real", e, d, 7.0 + e) for k in (2, 4) for e in range(3)
                          for d in range(2)])
    anchors = pd.DataFrame([_clip("mean_z", 0, "real", e, 0, 9.0 + e) for e in range(3)])
    units = tables.paired_units(clips, anchors, [2, 4])
    assert len(units[units["method"] == "mean_z"]) == 3 * 2 * 2
    assert tables.comparison_pairs(units["method"].unique()) == [("temporal", "mean_z")]
    assert tables.comparison_pairs(["direct", "conditional", "mean_z", "resynthesis"]) == [
        ("direct", "mean_z"), ("conditional", "mean_z"), ("direct", "resynthesis"), ("conditional", "resynthesis"),
        ("conditional", "direct")]
    (row,) = tables.comparison_records(tables.paired_comparisons(units, alpha=0.05))
    assert row["n"] == 12 and row["winner"] == "temporal"


def test_seed_experiment_finds_direct_noisier_when_it_is():
    rows = [_clip("direct", k, "seed_report_scale", -1, 0, math.nan, hnr=-2.0 + 0.1 * k, flatness=0.6)
            for k in (4, 8, 16)]
    rows += [_clip("temporal", k, "seed_report_scale", -1, 0, math.nan, hnr=12.0 + 0.1 * c, flatness=0.1)
             for k in (4, 8, 16) for c in range(k)]
    result = tables.seed_experiment(pd.DataFrame(rows), n_resamples=200, seed=0)
    entry = result["seed_report_scale"]
    assert entry["direct_noisier"] is True and "seed" not in result
    assert entry["direct_lower_hnr"] is True and entry["direct_flatter"] is True
    assert html._seed_verdict(entry) == "yes, as in the seed report"
    # hnr agrees with the seed report, flatness does not: the page says which
    rows = [{**row, "spectral_flatness": 0.0} if row["method"] == "direct" else row for row in rows]
    entry = tables.seed_experiment(pd.DataFrame(rows), n_resamples=200, seed=0)["seed_report_scale"]
    assert entry["direct_lower_hnr"] is True and entry["direct_flatter"] is False and not entry["direct_noisier"]
    assert html._seed_verdict(entry).startswith("partly: direct's hnr_db is lower")
    assert entry["direct"]["hnr_db"]["mean"] == pytest.approx(-2.0 + 0.1 * 28 / 3)
    assert entry["per_cluster"]["valid_share"] == 1.0 and entry["direct"]["valid_share"] == 0.0


def test_choose_k_stage_finds_the_interior_optimum(tmp_path, monkeypatch):
    from stages import choose_k
    from tests.test_fit_gmm import write_z_table

    write_z_table(tmp_path / "data/z/z_frames.parquet")  # three well separated clusters
    params = {"seed": 5, "choose_k": {"k_min": 1, "k_max": 8, "step": 1, "max_frames": 1500}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    choose_k.main()
    result = json.loads((tmp_path / "metrics/choose_k.json").read_text())
    assert result["recommended_k"] == 3 and result["recommended_k_at_grid_edge"] is False
    assert result["ks"][:3] == [1, 2, 3] and result["stopped_early"] is True
