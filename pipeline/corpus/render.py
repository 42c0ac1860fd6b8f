"""The default corpus: monophonic melodies rendered offline from a General MIDI soundfont.

Every file is a seeded, musically plausible melody (a key and mode, a register, mostly stepwise
motion, phrases with dynamics, rests) rendered with tinysoundfont. Next to each ``<name>.wav`` sit
its score (``<name>.mid``) and frame-level ground truth (``<name>.f0.csv``: ``time_s, f0_hz,
voiced, midi`` with frame ``i`` at ``i / frame_rate``, the feature grid of :mod:`pipeline.audio.features`),
so f0 trackers and the autoencoder can be measured against known pitch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from pipeline.config import CorpusParams
from pipeline.publish import staged_dir

MANIFEST = "manifest.csv"
GROUND_TRUTH_SUFFIX = ".f0.csv"
PEAK = 0.9
CHANNEL = 0

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
MODE_WEIGHTS = (0.35, 0.3, 0.1, 0.125, 0.125)
# a melody keeps to about an octave and a fifth, as a singer or a single hand would
REGISTER_SPAN = 19
# motion in scale degrees: mostly steps, some thirds, rare leaps up to an octave
MOTIONS = np.array([0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 7, -7])
MOTION_WEIGHTS = np.array([0.07, 0.26, 0.26, 0.11, 0.11, 0.045, 0.045, 0.03, 0.03, 0.015, 0.015, 0.01, 0.01])
LEAP = 3
# note values in beats: eighth, quarter, dotted quarter, half, dotted half
RHYTHM_BEATS = np.array([0.5, 1.0, 1.5, 2.0, 3.0])
RHYTHM_WEIGHTS = np.array([0.3, 0.35, 0.12, 0.15, 0.08])
MIN_NOTE_SECS = 0.08
# velocity boost, as a share of the velocity range, by metric weight (off the beat, beat, downbeat)
ACCENT_BOOST = (0.0, 0.04, 0.1)


@dataclass(frozen=True)
class Note:
    start_s: float
    end_s: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class Melody:
    notes: tuple[Note, ...]
    tempo_bpm: float
    key: str


@dataclass(frozen=True)
class _Slot:
    """One rhythmic position of a phrase, before it becomes a note or a rest."""

    onset: float  # beats from the melody's start
    beats: float
    phrase: int
    arc: float  # position inside the phrase, 0..1, shapes its dynamics
    accent: int  # 2 downbeat, 1 other beat, 0 off the beat
    phrase_start: bool
    phrase_end: bool


# ---------------------------------------------------------------- melody generation

def file_samples(params: CorpusParams) -> int:
    return round(params.file_secs * params.sample_rate)


def file_frames(params: CorpusParams) -> int:
    """Frames covering the file on the feature grid (same rule as ``features.estimate_f0``)."""
    return math.ceil(file_samples(params) * params.frame_rate / params.sample_rate)


def _release_secs(params: CorpusParams) -> float:
    """Silence kept at the end so the last note's release rings out inside the file."""
    return min(1.0, 0.2 * params.file_secs)


def _register(params: CorpusParams, rng: np.random.Generator) -> tuple[int, int]:
    if params.pitch_high - params.pitch_low <= REGISTER_SPAN:
        return params.pitch_low, params.pitch_high
    low = int(rng.integers(params.pitch_low, params.pitch_high - REGISTER_SPAN + 1))
    return low, low + REGISTER_SPAN


def _scale_pitches(tonic: int, mode: tuple[int, ...], low: int, high: int) -> np.ndarray:
    pitches = np.array([p for p in range(low, high + 1) if (p - tonic) % 12 in mode])
    # a register too narrow to hold a scale note still has to sound something
    return pitches if len(pitches) else np.arange(low, high + 1)


def _bar_rhythm(rng: np.random.Generator, weights: np.ndarray, beats_per_bar: int) -> list[float]:
    values, left = [], float(beats_per_bar)
    while left > 0:
        position = beats_per_bar - left
        fits = RHYTHM_BEATS <= left
        w = np.where(fits, weights, 0.0)
        if position % 1:  # off the beat: mostly an eighth to land back on it
            w = np.where(RHYTHM_BEATS == 0.5, w * 6, w)
        value = float(rng.choice(RHYTHM_BEATS, p=w / w.sum()))
        values.append(value)
        left -= value
    return values


def _phrase_slots(rng: np.random.Generator, weights: np.ndarray, beats_per_bar: int,
                  onset: float, phrase: int) -> list[_Slot]:
    n_bars = int(rng.choice([2, 4], p=[0.4, 0.6]))
    values = [v for _ in range(n_bars) for v in _bar_rhythm(rng, weights, beats_per_bar)]
    # phrases close on a held note: merge the last bar's tail into one value of at least a beat
    while len(values) > 1 and values[-1] < 1.0:
        values[-2] += values.pop()
    total = float(sum(values))
    slots, position = [], 0.0
    for i, value in enumerate(values):
        bar_position = position % beats_per_bar
        accent = 2 if bar_position == 0 else 1 if bar_position % 1 == 0 else 0
        slots.append(_Slot(onset + position, value, phrase, position / total, accent,
                           phrase_start=i == 0, phrase_end=i == len(values) - 1))
        position += value
    return slots


def _rhythm(rng: np.random.Generator, n_beats: float) -> list[_Slot]:
    """Phrases of 2 or 4 bars until ``n_beats``; rhythmic taste varies per file."""
    beats_per_bar = int(rng.choice([4, 3], p=[0.7, 0.3]))
    weights = rng.dirichlet(RHYTHM_WEIGHTS * 20)
    slots: list[_Slot] = []
    onset, phrase = 0.0, 0
    while onset < n_beats:
        slots += _phrase_slots(rng, weights, beats_per_bar, onset, phrase)
        onset, phrase = slots[-1].onset + slots[-1].beats, phrase + 1
    return slots


def _nearest_stable(pitches: np.ndarray, index: int, tonic: int, mode: tuple[int, ...]) -> int:
    """Index of the closest tonic-triad note: phrase endings sound resolved."""
    stable = {(tonic + mode[d]) % 12 for d in (0, 2, 4)}
    candidates = [i for i, p in enumerate(pitches) if p % 12 in stable]
    return min(candidates, key=lambda i: abs(i - index)) if candidates else index


def _pitch_walk(rng: np.random.Generator, pitches: np.ndarray, slots: list[_Slot],
                tonic: int, mode: tuple[int, ...]) -> list[int]:
    top = len(pitches) - 1
    index = _nearest_stable(pitches, top // 2, tonic, mode)
    last_motion, walk = 0, []
    for n, slot in enumerate(slots):
        if n:
            if abs(last_motion) >= LEAP and rng.random() < 0.7:
                motion = -int(np.sign(last_motion))  # fill the gap a leap leaves, stepping back
            else:
                motion = int(rng.choice(MOTIONS, p=MOTION_WEIGHTS / MOTION_WEIGHTS.sum()))
            if not 0 <= index + motion <= top:
                motion = -motion
            index = int(np.clip(index + motion, 0, top))
            last_motion = motion
        if slot.phrase_end:
            index = _nearest_stable(pitches, index, tonic, mode)
        walk.append(int(pitches[index]))
    return walk


def _velocities(rng: np.random.Generator, params: CorpusParams, slots: list[_Slot]) -> list[int]:
    """Each phrase has its own level and swells to its middle; downbeats are accented."""
    low, high = params.velocity_low, params.velocity_high
    span = high - low
    phrase_level = {s.phrase: rng.uniform(low + 0.1 * span, low + 0.6 * span) for s in slots if s.phrase_start}
    velocities = []
    for slot in slots:
        value = (phrase_level[slot.phrase] + 0.2 * span * math.sin(math.pi * slot.arc)
                 + ACCENT_BOOST[slot.accent] * span + rng.normal(0, 0.04 * span))
        velocities.append(int(np.clip(round(value), low, high)))
    return velocities


def generate_melody(params: CorpusParams, seed: int, index: int) -> Melody:
    """The melody of file ``index``: a pure function of (params, seed, index)."""
    rng = np.random.default_rng([seed, index])
    tempo_bpm = float(rng.uniform(params.tempo_bpm_low, params.tempo_bpm_high))
    beat_s = 60.0 / tempo_bpm
    tonic = int(rng.integers(12))
    mode_name = str(rng.choice(list(MODES), p=MODE_WEIGHTS))
    mode = MODES[mode_name]
    pitches = _scale_pitches(tonic, mode, *_register(params, rng))

    lead_in_s = float(rng.uniform(0.1, 0.4))
    last_end_s = params.file_secs - _release_secs(params)
    slots = _rhythm(rng, (last_end_s - lead_in_s) / beat_s)
    is_rest = [rng.random() < params.rest_prob and not (s.phrase_start or s.phrase_end) for s in slots]
    sounding = [s for s, rest in zip(slots, is_rest) if not rest]
    walk = _pitch_walk(rng, pitches, sounding, tonic, mode)
    velocities = _velocities(rng, params, sounding)

    legato = rng.uniform(0.8, 0.97)  # the file's articulation, from detached to nearly legato
    notes = []
    for slot, pitch, velocity in zip(sounding, walk, velocities):
        start_s = lead_in_s + slot.onset * beat_s
        held = float(np.clip(legato + rng.normal(0, 0.02), 0.7, 0.98)) * (0.85 if slot.phrase_end else 1.0)
        end_s = min(start_s + slot.beats * beat_s * held, last_end_s)
        if end_s - start_s < MIN_NOTE_SECS:
            break
        notes.append(Note(round(start_s, 6), round(end_s, 6), pitch, velocity))
    return Melody(tuple(notes), round(tempo_bpm, 2), f"{NOTE_NAMES[tonic]} {mode_name}")


# ---------------------------------------------------------------- rendering

def resolve_soundfont(spec: str, base_dir: Path | None = None) -> Path:
    """``'pretty_midi'`` is TimGM6mb inside pretty_midi's wheel; anything else is a path."""
    if spec == "pretty_midi":
        import pretty_midi

        path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    else:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    if not path.is_file():
        raise FileNotFoundError(f"soundfont {path} does not exist: set corpus.soundfont to 'pretty_midi' "
                                f"or to an existing .sf2 file (got {spec!r})")
    return path


def _synth(soundfont: bytes, program: int, sample_rate: int):
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(soundfont)
    try:
        synth.program_select(CHANNEL, sfid, 0, program)
    except RuntimeError as err:
        raise ValueError(f"corpus.program {program} is not a preset of the soundfont") from err
    return synth


def _events(notes: Sequence[Note], sample_rate: int) -> list[tuple[int, int, int, int]]:
    """(sample, order, pitch, velocity) sorted so a note-off precedes a note-on at the same sample."""
    events = []
    for note in notes:
        events.append((round(note.start_s * sample_rate), 1, note.pitch, note.velocity))
        events.append((round(note.end_s * sample_rate), 0, note.pitch, 0))
    return sorted(events)


def render_notes(notes: Sequence[Note], soundfont: bytes, program: int,
                 sample_rate: int, n_samples: int) -> np.ndarray:
    """Mono float32 audio of exactly ``n_samples``, not normalised; events past the end are dropped."""
    synth = _synth(soundfont, program, sample_rate)
    blocks, position = [], 0
    for sample, is_on, pitch, velocity in _events(notes, sample_rate):
        sample = min(sample, n_samples)
        if sample > position:
            blocks.append(np.frombuffer(synth.generate(sample - position), np.float32))
            position = sample
        if is_on:
            synth.noteon(CHANNEL, pitch, velocity)
        else:
            synth.noteoff(CHANNEL, pitch)
    if n_samples > position:
        blocks.append(np.frombuffer(synth.generate(n_samples - position), np.float32))
    stereo = np.concatenate(blocks).reshape(-1, 2) if blocks else np.zeros((0, 2), np.float32)
    return stereo.mean(axis=1, dtype=np.float32)


def normalise(audio: np.ndarray, peak: float = PEAK) -> np.ndarray:
    top = float(np.max(np.abs(audio), initial=0.0))
    if top == 0.0:
        raise RuntimeError("the soundfont rendered silence: check corpus.soundfont and corpus.program")
    return (audio * (peak / top)).astype(np.float32)


# ---------------------------------------------------------------- ground truth and files

def ground_truth_frames(notes: Sequence[Note], n_frames: int, frame_rate: int) -> pd.DataFrame:
    """Frame ``i`` (at ``i / frame_rate``) is voiced when a note is held: note-on <= t < note-off."""
    times = np.arange(n_frames) / frame_rate
    midi = np.zeros(n_frames, np.int64)
    voiced = np.zeros(n_frames, bool)
    for note in notes:
        first, stop = np.searchsorted(times, [note.start_s, note.end_s], side="left")
        midi[first:stop] = note.pitch
        voiced[first:stop] = True
    f0_hz = np.where(voiced, 440.0 * 2.0 ** ((midi - 69) / 12.0), 0.0)
    return pd.DataFrame({"time_s": times, "f0_hz": f0_hz, "voiced": voiced.astype(np.int64), "midi": midi})


def ground_truth_path(wav_path: str | Path) -> Path:
    wav_path = Path(wav_path)
    return wav_path.with_name(wav_path.stem + GROUND_TRUTH_SUFFIX)


def load_ground_truth(wav_path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, f0_hz, voiced) from the csv beside ``wav_path``; voiced is boolean."""
    path = ground_truth_path(wav_path)
    if not path.is_file():
        raise FileNotFoundError(f"no ground truth {path} beside {wav_path}")
    table = pd.read_csv(path)
    return table["time_s"].to_numpy(), table["f0_hz"].to_numpy(), table["voiced"].to_numpy().astype(bool)


def _write_midi(path: Path, melody: Melody, program: int) -> None:
    import pretty_midi

    score = pretty_midi.PrettyMIDI(initial_tempo=melody.tempo_bpm)
    instrument = pretty_midi.Instrument(program=program, name=melody.key)
    instrument.notes = [pretty_midi.Note(velocity=n.velocity, pitch=n.pitch, start=n.start_s, end=n.end_s)
                        for n in melody.notes]
    score.instruments.append(instrument)
    score.write(str(path))


def _render_file(folder: Path, name: str, melody: Melody, soundfont: bytes, params: CorpusParams) -> None:
    audio = normalise(render_notes(melody.notes, soundfont, params.program, params.sample_rate,
                                   file_samples(params)))
    wav_path = folder / f"{name}.wav"
    sf.write(wav_path, audio, params.sample_rate, subtype="PCM_16")
    ground_truth_frames(melody.notes, file_frames(params), params.frame_rate).to_csv(
        ground_truth_path(wav_path), index=False, float_format="%.6f")
    _write_midi(folder / f"{name}.mid", melody, params.program)


def render_corpus(params: CorpusParams, seed: int, out_dir: str | Path, progress: bool = True,
                  base_dir: Path | None = None) -> pd.DataFrame:
    """Render ``params.n_files`` melodies into ``out_dir`` and return the manifest.

    The files appear all at once: they are rendered into ``<out_dir>.partial`` and renamed at the
    end, so an interrupted run never leaves a complete-looking corpus. ``base_dir`` resolves a
    relative ``soundfont`` path.
    """
    out_dir = Path(out_dir)
    soundfont = resolve_soundfont(params.soundfont, base_dir).read_bytes()
    with staged_dir(out_dir) as partial:
        rows = []
        for index in tqdm(range(params.n_files), desc="corpus", unit="file", disable=not progress):
            name = f"melody_{index:03d}"
            melody = generate_melody(params, seed, index)
            _render_file(partial, name, melody, soundfont, params)
            rows.append({"file": f"{name}.wav", "seconds": file_samples(params) / params.sample_rate,
                         "n_notes": len(melody.notes), "tempo_bpm": melody.tempo_bpm, "key": melody.key,
                         "program": params.program, "seed": seed})
        manifest = pd.DataFrame(rows)
        manifest.to_csv(partial / MANIFEST, index=False)
    return manifest


NOT_RENDERED_NOTE = "NOT_RENDERED.txt"


def corpus_is_used(audio_dir: Path, corpus_dir: Path) -> bool:
    """Whether prepare reads the default corpus (``prepare.audio_dir`` is the corpus folder)."""
    return Path(audio_dir).resolve() == Path(corpus_dir).resolve()


def write_not_rendered(out_dir: Path, audio_dir: str, corpus_dir: str) -> None:
    """The corpus out when the user's own folder is prepared instead: only a note saying why."""
    with staged_dir(out_dir) as staging:
        (staging / NOT_RENDERED_NOTE).write_text(
            f"The default corpus was not rendered: prepare.audio_dir = {audio_dir} is not corpus.out_dir = "
            f"{corpus_dir}.\n", encoding="utf-8")
