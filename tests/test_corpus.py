"""The default corpus: seeded melodies, real rendered sound, aligned ground truth, atomic output."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipeline.config import CorpusParams
from pipeline.corpus import render as corpus
from pipeline.corpus.render import (
    Note,
    file_frames,
    generate_melody,
    ground_truth_frames,
    ground_truth_path,
    load_ground_truth,
    normalise,
    render_corpus,
    render_notes,
    resolve_soundfont,
)

TINY = CorpusParams(n_files=2, file_secs=3.0)


@pytest.fixture(scope="module")
def soundfont() -> bytes:
    return resolve_soundfont("pretty_midi").read_bytes()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("render") / "corpus"
    manifest = render_corpus(TINY, seed=7, out_dir=out_dir, progress=False)
    return out_dir, manifest


def _wav(out_dir, name) -> tuple[np.ndarray, int]:
    return sf.read(out_dir / name, dtype="float32")


# ---------------------------------------------------------------- melodies

def test_same_seed_same_melody_and_different_seeds_differ():
    assert generate_melody(TINY, 3, 0) == generate_melody(TINY, 3, 0)
    assert generate_melody(TINY, 3, 0) != generate_melody(TINY, 4, 0)
    assert generate_melody(TINY, 3, 0) != generate_melody(TINY, 3, 1)


@pytest.mark.parametrize("params", [
    CorpusParams(),
    CorpusParams(pitch_low=60, pitch_high=64, velocity_low=80, velocity_high=90, tempo_bpm_low=200,
                 tempo_bpm_high=220, rest_prob=0.5),
    CorpusParams(pitch_low=61, pitch_high=61, velocity_low=64, velocity_high=64, file_secs=2.0),
])
def test_melodies_are_monophonic_and_within_ranges(params):
    for index in range(20):
        melody = generate_melody(params, 0, index)
        notes = melody.notes
        assert notes, "a melody has notes"
        assert params.tempo_bpm_low <= melody.tempo_bpm <= params.tempo_bpm_high
        for note, following in zip(notes, notes[1:]):
            assert note.end_s <= following.start_s, "notes overlap"
        for note in notes:
            assert params.pitch_low <= note.pitch <= params.pitch_high
            assert params.velocity_low <= note.velocity <= params.velocity_high
            assert 0 < note.start_s < note.end_s <= params.file_secs


def test_melodies_move_mostly_by_step_and_vary():
    params = CorpusParams()
    intervals, velocities, tempi = [], [], set()
    for index in range(20):
        melody = generate_melody(params, 0, index)
        pitches = [n.pitch for n in melody.notes]
        intervals += list(np.abs(np.diff(pitches)))
        velocities += [n.velocity for n in melody.notes]
        tempi.add(melody.tempo_bpm)
    intervals = np.array(intervals)
    assert np.mean(intervals <= 2) > 0.5, "mostly steps (or repeats)"
    assert np.mean(intervals >= 5) > 0.02, "with occasional leaps"
    assert np.std(velocities) > 5 and len(tempi) == 20


def test_rests_follow_rest_prob():
    def mean_gap(rest_prob):
        gaps = []
        for index in range(20):
            notes = generate_melody(CorpusParams(rest_prob=rest_prob), 0, index).notes
            gaps += [b.start_s - a.end_s for a, b in zip(notes, notes[1:])]
        return np.mean(gaps)

    assert mean_gap(0.5) > 2 * mean_gap(0.0)


# ---------------------------------------------------------------- ground truth

def test_ground_truth_frames_follow_notes():
    notes = [Note(0.1, 0.5, 69, 100), Note(0.5, 0.8, 57, 90)]
    table = ground_truth_frames(notes, n_frames=250, frame_rate=250)
    assert list(table.columns) == ["time_s", "f0_hz", "voiced", "midi"]
    at = lambda t: table.iloc[round(t * 250)]  # noqa: E731
    assert at(0.0).voiced == 0 and at(0.0).f0_hz == 0
    assert at(0.1).voiced == 1 and at(0.1).f0_hz == pytest.approx(440.0)
    assert at(0.5).midi == 57 and at(0.5).f0_hz == pytest.approx(220.0)
    assert at(0.8).voiced == 0 and at(0.99).voiced == 0


def test_ground_truth_csv_aligns_with_audio_and_notes(rendered):
    out_dir, manifest = rendered
    for name in manifest["file"]:
        audio, sr = _wav(out_dir, name)
        times, f0_hz, voiced = load_ground_truth(out_dir / name)
        assert sr == TINY.sample_rate and len(audio) == round(TINY.file_secs * sr)
        assert len(times) == file_frames(TINY) == math.ceil(TINY.file_secs * TINY.frame_rate)
        np.testing.assert_allclose(times, np.arange(len(times)) / TINY.frame_rate, atol=1e-6)
        table = pd.read_csv(ground_truth_path(out_dir / name))
        np.testing.assert_allclose(f0_hz[voiced], 440 * 2 ** ((table["midi"][voiced] - 69) / 12), rtol=1e-6)
        assert (f0_hz[~voiced] == 0).all() and 0.3 < voiced.mean() < 0.95


def test_midi_score_matches_the_melody(rendered):
    import pretty_midi

    out_dir, manifest = rendered
    score = pretty_midi.PrettyMIDI(str(out_dir / "melody_000.mid"))
    notes = score.instruments[0].notes
    melody = generate_melody(TINY, 7, 0)
    assert [n.pitch for n in notes] == [n.pitch for n in melody.notes]
    assert notes[0].start == pytest.approx(melody.notes[0].start_s, abs=0.01)
    assert manifest.loc[0, "n_notes"] == len(melody.notes)


# ---------------------------------------------------------------- audio

def test_rendering_is_deterministic_and_seeded(rendered, tmp_path):
    out_dir, _ = rendered
    again = render_corpus(TINY, seed=7, out_dir=tmp_path / "again", progress=False)
    for name in again["file"]:
        assert (tmp_path / "again" / name).read_bytes() == (out_dir / name).read_bytes()
    other = render_corpus(TINY.model_copy(update={"n_files": 1}), seed=8, out_dir=tmp_path / "other",
                          progress=False)
    assert (tmp_path / "other" / other["file"][0]).read_bytes() != (out_dir / "melody_000.wav").read_bytes()


def test_audio_is_real_sound_where_the_notes_are(rendered):
    out_dir, manifest = rendered
    for index, name in enumerate(manifest["file"]):
        audio, sr = _wav(out_dir, name)
        notes = generate_melody(TINY, 7, index).notes
        assert 0.85 < np.abs(audio).max() <= 0.91
        assert np.sqrt(np.mean(audio ** 2)) > 0.02
        assert np.abs(audio[: int(notes[0].start_s * sr)]).max() < 1e-3, "silence before the first note"
        for note in notes:
            onset = audio[int(note.start_s * sr): int(note.start_s * sr) + int(0.05 * sr)]
            assert np.sqrt(np.mean(onset ** 2)) > 0.01, f"no sound at {note}"


@pytest.mark.parametrize("pitch", [48, 60, 69, 76])
def test_a_long_note_sounds_at_its_pitch(soundfont, pitch):
    from pipeline.audio.features import estimate_f0

    sr, frame_rate = 16000, 250
    audio = normalise(render_notes([Note(0.1, 1.6, pitch, 100)], soundfont, 0, sr, 2 * sr))
    f0_hz, confidence = estimate_f0(audio, sr, frame_rate, 2 * frame_rate, method="swift")
    held = slice(round(0.3 * frame_rate), round(1.4 * frame_rate))
    expected = 440 * 2 ** ((pitch - 69) / 12)
    assert abs(1200 * np.log2(np.median(f0_hz[held]) / expected)) < 30
    assert np.median(confidence[held]) > 0.5


def test_a_rendered_melody_tracks_its_ground_truth(rendered):
    from pipeline.audio.features import estimate_f0

    out_dir, manifest = rendered
    audio, sr = _wav(out_dir, manifest["file"][0])
    _, f0_true, voiced = load_ground_truth(out_dir / manifest["file"][0])
    f0_est, _ = estimate_f0(audio, sr, TINY.frame_rate, len(f0_true), method="swift")
    cents = 1200 * np.abs(np.log2(np.maximum(f0_est[voiced], 1e-3) / f0_true[voiced]))
    assert np.mean(cents < 50) > 0.75


# ---------------------------------------------------------------- files and errors

def test_outputs_and_manifest(rendered):
    out_dir, manifest = rendered
    assert not out_dir.with_name(out_dir.name + ".partial").exists()
    assert list(manifest.columns) == ["file", "seconds", "n_notes", "tempo_bpm", "key", "program", "seed"]
    assert pd.read_csv(out_dir / "manifest.csv").equals(manifest)
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(["manifest.csv"] + [f"melody_00{i}{ext}" for i in range(2)
                                               for ext in (".wav", ".f0.csv", ".mid")])


def test_stale_partial_and_old_output_are_replaced(tmp_path):
    out_dir = tmp_path / "corpus"
    partial = tmp_path / "corpus.partial"
    for folder in (out_dir, partial):
        folder.mkdir()
        (folder / "stale.wav").write_bytes(b"old")
    render_corpus(TINY.model_copy(update={"n_files": 1}), 0, out_dir, progress=False)
    assert not partial.exists()
    assert not (out_dir / "stale.wav").exists() and (out_dir / "melody_000.wav").is_file()


def test_a_failed_run_leaves_no_corpus(tmp_path, monkeypatch):
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return original(*args, **kwargs)

    original = corpus._render_file
    monkeypatch.setattr(corpus, "_render_file", fail_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        render_corpus(TINY, 0, tmp_path / "corpus", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_soundfont_is_a_clear_error(tmp_path):
    params = TINY.model_copy(update={"soundfont": "fonts/missing.sf2"})
    with pytest.raises(FileNotFoundError, match=r"corpus\.soundfont.*missing\.sf2|missing\.sf2.*corpus\.soundfont"):
        render_corpus(params, 0, tmp_path / "corpus", progress=False, base_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_relative_soundfont_resolves_against_base_dir(tmp_path):
    font = resolve_soundfont("pretty_midi")
    (tmp_path / "fonts").mkdir()
    (tmp_path / "fonts" / "gm.sf2").write_bytes(font.read_bytes())
    assert resolve_soundfont("fonts/gm.sf2", tmp_path) == tmp_path / "fonts" / "gm.sf2"


def test_stage_writes_corpus_and_metrics(tmp_path, monkeypatch, capsys):
    from stages import corpus as stage

    (tmp_path / "params.yaml").write_text(
        "seed: 1\ncorpus:\n  out_dir: data/corpus\n  n_files: 2\n  file_secs: 2.0\n")
    work = tmp_path / "sub"
    work.mkdir()
    monkeypatch.chdir(work)  # params.yaml is found in a parent; paths resolve against it
    stage.main()
    metrics = json.loads((tmp_path / "metrics" / "corpus.json").read_text())
    assert metrics["n_files"] == 2 and metrics["total_secs"] == pytest.approx(4.0) and metrics["n_notes"] > 2
    assert (tmp_path / "data" / "corpus" / "manifest.csv").is_file()
    assert "2 files" in capsys.readouterr().out
