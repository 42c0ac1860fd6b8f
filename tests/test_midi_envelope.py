"""MIDI loudness envelope parameters measured from contours with known envelopes, and used by melody_contour."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.corpus.render import Note
from pipeline.generation.conditioning import PEAK_DB_LOUDEST, PEAK_DB_SOFTEST, melody_contour
from pipeline.generation.midi_envelope import (
    DEFAULT_ENVELOPE,
    Contour,
    EnvelopeParams,
    contours_from_examples,
    envelope_from_contours,
    fit_note,
    note_onsets,
    note_segments,
    tuning_from_contours,
)

FR = 250
TRUE = EnvelopeParams(floor_db=-70.0, peak_db_softest=-45.0, peak_db_loudest=-12.0, decay_db_per_sec=6.0,
                      release_db_per_sec=60.0, tuning_cents=7.0)


def random_melody(seed: int, n_notes: int = 8) -> tuple[list[Note], float]:
    """Notes with random pitch, velocity and length, separated by rests long enough to fall to the floor."""
    rng = np.random.default_rng(seed)
    notes, t = [], 0.2
    for _ in range(n_notes):
        length = rng.uniform(0.4, 1.2)
        notes.append(Note(t, t + length, int(rng.integers(48, 72)), int(rng.integers(1, 128))))
        t += length + rng.uniform(1.5, 2.0)
    return notes, t + 0.5


def synthetic_contours(envelope: EnvelopeParams, n_examples: int = 6, noise_db: float = 0.0,
                       noise_cents: float = 0.0) -> list[Contour]:
    contours = []
    for seed in range(n_examples):
        notes, secs = random_melody(seed)
        cond = melody_contour(notes, int(secs * FR), FR, envelope=envelope)
        rng = np.random.default_rng(100 + seed)
        noise = rng.normal(0.0, noise_db, cond.n_frames) if noise_db else 0.0
        jitter = 2.0 ** (rng.normal(0.0, noise_cents, cond.n_frames) / 1200) if noise_cents else 1.0
        contours.append(Contour(cond.loudness_db.astype(np.float64) + noise, cond.voiced, cond.f0_hz * jitter))
    return contours


def test_default_envelope_is_a_drop_in():
    notes, secs = random_melody(0)
    a = melody_contour(notes, int(secs * FR), FR)
    b = melody_contour(notes, int(secs * FR), FR, envelope=DEFAULT_ENVELOPE)
    np.testing.assert_array_equal(a.loudness_db, b.loudness_db)
    assert DEFAULT_ENVELOPE.peak_db(1) == PEAK_DB_SOFTEST and DEFAULT_ENVELOPE.peak_db(127) == PEAK_DB_LOUDEST


def test_tuning_is_the_common_offset_from_equal_temperament():
    # a4 played 12 cents sharp for most frames; a glide and an octave-up outlier do not move it
    sharp = 440.0 * 2 ** (12 / 1200)
    f0 = np.r_[np.full(400, sharp), np.full(300, sharp * 2 ** (7 / 12)), np.geomspace(300.0, 500.0, 100), [1760.0] * 20]
    contour = Contour(np.zeros(len(f0)), np.ones(len(f0), bool), f0)
    assert tuning_from_contours([contour]) == pytest.approx(12.0, abs=0.5)
    flat = Contour(np.zeros(500), np.ones(500, bool), np.full(500, 440.0 * 2 ** (-20 / 1200)))
    assert tuning_from_contours([flat]) == pytest.approx(-20.0, abs=0.2)
    unvoiced = Contour(np.zeros(500), np.zeros(500, bool), np.full(500, 300.0))
    assert tuning_from_contours([unvoiced]) is None


def test_melody_contour_plays_notes_at_the_tuning():
    a4 = Note(0.0, 1.0, 69, 100)
    assert melody_contour([a4], FR, FR).f0_hz[0] == pytest.approx(440.0)
    tuned = melody_contour([a4], FR, FR, envelope=TRUE)
    assert tuned.f0_hz[0] == pytest.approx(440.0 * 2 ** (7 / 1200), rel=1e-6)


def test_melody_contour_uses_the_given_envelope():
    cond = melody_contour([Note(0.0, 1.0, 60, 127), Note(2.0, 2.5, 62, 1)], 4 * FR, FR, envelope=TRUE)
    assert cond.loudness_db[0] == pytest.approx(-12.0)
    assert cond.loudness_db[FR - 1] == pytest.approx(-12.0 - 6.0 * (FR - 1) / FR, abs=1e-4)
    assert cond.loudness_db[2 * FR] == pytest.approx(-45.0)
    assert cond.loudness_db[-1] == pytest.approx(-70.0)


def test_recovers_a_known_envelope():
    fit = envelope_from_contours(synthetic_contours(TRUE), FR, peak_percentiles=(0.0, 100.0))
    p = fit.params
    assert fit.n_notes == 48 and not fit.notes
    assert p.floor_db == pytest.approx(-70.0, abs=0.01)
    assert p.decay_db_per_sec == pytest.approx(6.0, abs=0.01)
    assert p.release_db_per_sec == pytest.approx(60.0, abs=0.5)
    # velocities drawn in 1..127: the extreme peaks are close to the range's ends
    assert p.peak_db_softest == pytest.approx(-45.0, abs=1.5)
    assert p.peak_db_loudest == pytest.approx(-12.0, abs=1.5)
    assert p.tuning_cents == pytest.approx(7.0, abs=0.1)


def test_noisy_contours_still_give_the_envelope():
    fit = envelope_from_contours(synthetic_contours(TRUE, noise_db=1.0, noise_cents=5.0), FR)
    p = fit.params
    assert p.tuning_cents == pytest.approx(7.0, abs=1.0)
    assert p.floor_db == pytest.approx(-70.0, abs=0.2)
    assert p.decay_db_per_sec == pytest.approx(6.0, abs=1.5)
    assert p.release_db_per_sec == pytest.approx(60.0, abs=10.0)
    # default percentiles 10 / 95 of peaks uniform in [-45, -12] (plus the noise's own max)
    assert p.peak_db_softest == pytest.approx(-45.0 + 0.1 * 33.0, abs=3.0)
    assert p.peak_db_loudest == pytest.approx(-12.0 - 0.05 * 33.0, abs=3.0)


def test_midi_clips_land_where_the_training_data_is():
    training = synthetic_contours(TRUE, noise_db=1.0)
    voiced_db = np.concatenate([c.loudness_db[c.voiced] for c in training])
    low, high = np.percentile(voiced_db, [1, 99])
    fit = envelope_from_contours(training, FR)
    notes, secs = random_melody(42)

    def share_inside(envelope):
        cond = melody_contour(notes, int(secs * FR), FR, envelope=envelope)
        held = cond.loudness_db[cond.voiced]
        return np.mean((held >= low) & (held <= high))

    assert share_inside(fit.params) > 0.9
    # the fixed -30..5 dB peaks put every note above velocity ~64 beyond anything in this data
    assert share_inside(DEFAULT_ENVELOPE) < share_inside(fit.params) - 0.3


def test_onsets_from_voicing_pitch_and_loudness_rises():
    # a rest, a legato repeat of the same pitch (found only by its loudness rise), then a pitch jump
    notes = [Note(0.1, 0.6, 60, 100), Note(0.6, 1.0, 60, 120), Note(1.0, 1.6, 64, 50)]
    cond = melody_contour(notes, 3 * FR, FR, envelope=TRUE)
    assert cond.voiced[int(0.1 * FR):int(1.6 * FR)].all()
    contour = Contour(cond.loudness_db.astype(float), cond.voiced, cond.f0_hz)
    assert note_onsets(contour, FR) == [25, 150, 250]
    segments = note_segments(contour, FR, floor_db=TRUE.floor_db)
    assert [s for s, _ in segments] == [25, 150, 250]
    assert segments[0][1] == 150 and segments[1][1] == 250
    # the last note is cut where its release reaches the floor (+3 dB)
    last_end = segments[2][1]
    assert cond.loudness_db[last_end] <= TRUE.floor_db + 3 < cond.loudness_db[last_end - 1]


def test_hinge_fit_finds_decay_and_release():
    t = np.arange(200) / FR
    knee = 120 / FR
    y = -10.0 - 8.0 * t - (90.0 - 8.0) * np.maximum(0.0, t - knee)
    fit = fit_note(y, FR)
    assert fit.decay_db_per_sec == pytest.approx(8.0, abs=1e-6)
    assert fit.release_db_per_sec == pytest.approx(90.0, abs=1e-6)
    assert fit.decay_frames == 120 and fit.release_frames == 80
    straight = fit_note(-10.0 - 8.0 * t, FR)
    assert straight.release_db_per_sec is None and straight.decay_db_per_sec == pytest.approx(8.0)
    assert fit_note(y[:4], FR) is None


def test_few_events_keep_the_defaults_and_say_so():
    cond = melody_contour([Note(0.1, 0.5, 60, 64)], FR, FR, envelope=TRUE)
    fit = envelope_from_contours([Contour(cond.loudness_db.astype(float), cond.voiced, cond.f0_hz)], FR)
    assert fit.params.decay_db_per_sec == DEFAULT_ENVELOPE.decay_db_per_sec
    assert "peak_db" in fit.notes and "only 1 notes" in fit.notes["peak_db"]
    assert fit.as_dict()["n_notes"] == 1


def test_contours_from_examples_thresholds_confidence():
    example = {"loudness_db": np.full(4, -30.0), "f0_confidence": np.array([0.1, 0.6, 0.9, 0.4]),
               "f0_hz": np.full(4, 220.0)}
    (contour,) = contours_from_examples([example])
    np.testing.assert_array_equal(contour.voiced, [False, True, True, False])


def test_bad_params_are_rejected():
    with pytest.raises(ValueError, match="peak_percentiles"):
        envelope_from_contours(synthetic_contours(TRUE, 1), FR, peak_percentiles=(90.0, 10.0))
    with pytest.raises(ValueError, match="no contours"):
        envelope_from_contours([], FR)
    loud_silence = [Contour(np.full(500, -10.0), np.r_[np.zeros(250, bool), np.ones(250, bool)], np.full(500, 220.0))]
    with pytest.raises(ValueError, match="inconsistent"):
        envelope_from_contours(loud_silence, FR, min_events=1)
