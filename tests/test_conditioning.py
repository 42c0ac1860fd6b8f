"""Conditioning contours and the clip plan: the report's preset, MIDI melodies, per-clip streams."""
from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from pipeline.corpus.render import Note
from pipeline.generation.conditioning import (
    FLOOR_DB,
    melody_contour,
    read_midi_notes,
    real_contour,
    seed_preset,
    unscale_f0,
    unscale_loudness,
)
from pipeline.generation.plans import ClipPlan, draw_z, plan_clips, z_onsets
from pipeline.prior.mixture import fit_mixture


def test_seed_preset_uses_ddsp_scaling():
    from pipeline.compat import import_ddsp

    ddsp = import_ddsp()
    cond = seed_preset(1000)
    f0_scaled = float(ddsp.core.hz_to_midi(cond.f0_hz[:1]).numpy()[0]) / ddsp.spectral_ops.F0_RANGE
    assert f0_scaled == pytest.approx(0.4487863, abs=1e-6)
    assert cond.loudness_db[0] / ddsp.spectral_ops.DB_RANGE + 1.0 == pytest.approx(0.39189076, abs=1e-6)
    assert unscale_f0(0.4487863) == pytest.approx(220.0, rel=1e-3)  # the report's pitch is A3
    assert unscale_loudness(0.39189076) == pytest.approx(-48.65, abs=0.01)
    assert cond.voiced.all() and cond.n_frames == 1000


def test_melody_contour_follows_the_notes():
    notes = [Note(0.0, 0.5, 60, 100), Note(0.5, 1.0, 64, 40), Note(1.5, 2.0, 67, 127)]
    cond = melody_contour(notes, n_frames=625, frame_rate=250)
    at = lambda s: int(s * 250)  # noqa: E731
    assert cond.f0_hz[at(0.25)] == pytest.approx(261.63, rel=1e-3)
    assert cond.f0_hz[at(0.75)] == pytest.approx(329.63, rel=1e-3)
    assert cond.f0_hz[at(1.25)] == pytest.approx(329.63, rel=1e-3), "pitch is held through a rest"
    assert cond.voiced[at(0.25)] and not cond.voiced[at(1.25)] and cond.voiced[at(1.75)]
    assert cond.loudness_db[at(0.0)] > cond.loudness_db[at(0.4)], "a held note decays"
    assert cond.loudness_db[at(0.5)] < cond.loudness_db[at(1.5)], "velocity sets the peak"
    assert cond.loudness_db[at(1.49)] == FLOOR_DB, "released notes fall to the floor"
    assert cond.onsets == (0, at(0.5), at(1.5))


def test_read_midi_takes_the_top_voice(tmp_path):
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [pretty_midi.Note(90, 60, 0.0, 1.0), pretty_midi.Note(80, 48, 0.0, 1.0),
                    pretty_midi.Note(70, 64, 0.5, 1.5)]
    midi.instruments.append(piano)
    path = tmp_path / "m.mid"
    midi.write(str(path))
    notes = read_midi_notes(path)
    assert [(n.pitch, round(n.start_s, 3), round(n.end_s, 3)) for n in notes] == [(60, 0.0, 0.5), (64, 0.5, 1.5)]
    (tmp_path / "bad.mid").write_text("not midi")
    with pytest.raises(ValueError, match="bad.mid: not a readable MIDI file"):
        read_midi_notes(tmp_path / "bad.mid")


def test_real_contour_marks_voicing():
    example = {"f0_hz": np.r_[np.full(50, 220.0), np.full(50, 330.0)], "f0_confidence": np.r_[np.ones(90), np.zeros(10)],
               "loudness_db": np.zeros(100)}
    cond = real_contour(example, "real_0")
    assert cond.voiced.sum() == 90 and cond.onsets == (0, 50)


@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(m, 0.3, (300, 2)) for m in (-3, 0, 3)])
    return fit_mixture(z, 3, "full", seed=0)


def test_plan_counts_one_clip_per_cluster_and_conditioning():
    plans = plan_clips(4, ["direct", "inverse_transform", "temporal"], ["seed", "midi"], hold_variant=True)
    by_method = {m: sum(p.method == m for p in plans) for m in ("direct", "inverse_transform", "temporal", "temporal_hold")}
    assert by_method == {"direct": 2, "inverse_transform": 8, "temporal": 8, "temporal_hold": 8}
    assert len({p.clip_id for p in plans}) == len(plans)


def test_draws_are_seeded_per_clip_and_hold_follows_onsets(mixture):
    cond = melody_contour([Note(0.0, 1.0, 60, 90), Note(1.0, 2.0, 62, 90), Note(2.0, 4.0, 64, 90)], 1000, 250)
    plan = ClipPlan(3, "temporal_hold", 1, "midi")
    z1, comp = draw_z(plan, mixture, 125, cond, seed=9)
    z2, _ = draw_z(plan, mixture, 125, cond, seed=9)
    np.testing.assert_array_equal(z1, z2)
    assert (comp == 1).all()
    assert z_onsets(cond, 125) == [0, 31, 62]
    assert len(np.unique(z1, axis=0)) == 3
    other, _ = draw_z(ClipPlan(3, "temporal_hold", 2, "midi"), mixture, 125, cond, seed=9)
    assert not np.array_equal(z1, other)
    direct, components = draw_z(ClipPlan(3, "direct", None, "seed"), mixture, 125, seed_preset(1000), seed=9)
    assert direct.shape == (125, 2) and len(set(components)) == 3
