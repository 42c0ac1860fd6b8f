"""Pitch and loudness contours that drive the decoder when there is no input audio.

Three kinds, all on the model's frame grid (frame i at i / frame_rate):
- ``seed``: the report's constants, scaled f0 0.4487863 and scaled loudness 0.39189076, converted
  back with ddsp's own scaling (f0_scaled = midi / 127, ld_scaled = dB / 80 + 1), i.e. A3 at -48.6 dB.
- ``seed_report_scale``: the same experiment on the scale the report used: its loudness constant read
  on ddsp 1.x's 120 dB scale and mapped to 3.x dB by the monotone map fitted on this corpus
  (:mod:`pipeline.audio.report_scale`, fitted by :mod:`pipeline.generation.fits`).
- ``real``: f0 and loudness contours of held-out examples, one conditioning over all of them; each
  clip keeps its example index (``Conditioning.example``) and the example's audio is the reference.
- ``midi``: any monophonic melody (a MIDI file, or notes) -> a held f0 contour and a piano-like
  loudness envelope (attack at a velocity-dependent peak, decay while held, fast release).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from pipeline.audio.features import VOICED_THRESHOLD
from pipeline.config import Params
from pipeline.corpus.render import Note, generate_melody
from pipeline.dataset.tfrecord import DatasetSpec

if TYPE_CHECKING:
    from pipeline.generation.midi_envelope import EnvelopeParams

# ddsp.spectral_ops.DB_RANGE and ddsp.core's F0_RANGE (checked against ddsp in the tests)
DB_RANGE = 80.0
F0_RANGE = 127.0
SEED_F0_SCALED = 0.4487863
SEED_LOUDNESS_SCALED = 0.39189076

# a melody index the corpus never renders (it renders 0 .. n_files-1), so the MIDI clip is unseen music
UNSEEN_MELODY_INDEX = 1_000_000

# loudness envelope of a synthetic note, in ddsp's loudness dB (see metrics/prepare.json's corpus)
FLOOR_DB = -80.0
PEAK_DB_SOFTEST, PEAK_DB_LOUDEST = -30.0, 5.0
DECAY_DB_PER_SEC = 10.0
RELEASE_DB_PER_SEC = 120.0


@dataclass(frozen=True)
class Conditioning:
    """f0 and loudness for one clip, plus which frames are meant to sound (for metrics)."""

    name: str
    f0_hz: np.ndarray
    loudness_db: np.ndarray
    voiced: np.ndarray
    onsets: tuple[int, ...] = (0,)  # note-start frames, for the hold-per-note sampler
    example: int = -1  # the held-out example of a ``real`` conditioning, -1 for the others
    audio: np.ndarray | None = None  # the real example's audio [n_samples]: the reference of its clips

    @property
    def key(self) -> str:
        """Unique per conditioning and example: ``seed``, ``real_e3``."""
        return self.name if self.example < 0 else f"{self.name}_e{self.example}"

    @property
    def n_frames(self) -> int:
        return len(self.f0_hz)


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, np.float64) - 69.0) / 12.0)


def unscale_f0(f0_scaled: float) -> float:
    return float(midi_to_hz(f0_scaled * F0_RANGE))


def unscale_loudness(ld_scaled: float) -> float:
    return float((ld_scaled - 1.0) * DB_RANGE)


def seed_preset(n_frames: int) -> Conditioning:
    f0 = np.full(n_frames, unscale_f0(SEED_F0_SCALED), np.float32)
    loudness = np.full(n_frames, unscale_loudness(SEED_LOUDNESS_SCALED), np.float32)
    return Conditioning("seed", f0, loudness, np.ones(n_frames, bool))


def seed_report_scale_preset(n_frames: int, loudness_db: float) -> Conditioning:
    """The report's pitch (A3) at ``loudness_db``: the report's loudness mapped to ddsp 3.x dB."""
    f0 = np.full(n_frames, unscale_f0(SEED_F0_SCALED), np.float32)
    return Conditioning("seed_report_scale", f0, np.full(n_frames, loudness_db, np.float32), np.ones(n_frames, bool))


def real_contour(example: dict, name: str = "real", index: int = -1) -> Conditioning:
    """Contours (and audio, when present) of a prepared example (as read by pipeline.dataset.reader.iter_examples)."""
    voiced = np.asarray(example["f0_confidence"]) >= VOICED_THRESHOLD
    onsets = _onsets_from_pitch(np.asarray(example["f0_hz"]), voiced)
    audio = np.asarray(example["audio"], np.float32) if "audio" in example else None
    return Conditioning(name, np.asarray(example["f0_hz"], np.float32), np.asarray(example["loudness_db"], np.float32),
                        voiced, onsets, index, audio)


def _onsets_from_pitch(f0_hz: np.ndarray, voiced: np.ndarray, semitone_jump: float = 0.5) -> tuple[int, ...]:
    midi = 69 + 12 * np.log2(np.maximum(f0_hz, 1e-3) / 440.0)
    change = np.abs(np.diff(midi)) > semitone_jump
    starts = np.flatnonzero((change & voiced[1:]) | (voiced[1:] & ~voiced[:-1])) + 1
    return tuple(int(i) for i in np.concatenate([[0], starts]))


def melody_contour(notes: Sequence[Note], n_frames: int, frame_rate: int, name: str = "midi",
                   envelope: EnvelopeParams | None = None) -> Conditioning:
    """A held f0 contour and an attack-decay-release loudness envelope from monophonic notes.

    ``envelope`` (:class:`pipeline.generation.midi_envelope.EnvelopeParams`, e.g. measured on the training
    data) sets the floor, velocity -> peak range, decay and release, and the tuning of the pitches; None
    keeps this module's constants (and A4 = 440 Hz).
    """
    if envelope is None:
        from pipeline.generation.midi_envelope import DEFAULT_ENVELOPE  # that module builds on this one

        envelope = DEFAULT_ENVELOPE
    times = np.arange(n_frames) / frame_rate
    notes = sorted(notes, key=lambda n: n.start_s)
    if not notes:
        raise ValueError("the melody has no notes")
    detune = envelope.tuning_cents / 100.0
    f0 = np.full(n_frames, midi_to_hz(notes[0].pitch + detune), np.float64)
    loudness = np.full(n_frames, envelope.floor_db)
    voiced = np.zeros(n_frames, bool)
    onsets = []
    for i, note in enumerate(notes):
        next_start = notes[i + 1].start_s if i + 1 < len(notes) else np.inf
        sounding = (times >= note.start_s) & (times < next_start)
        if not sounding.any():
            continue
        onsets.append(int(np.argmax(sounding)))
        f0[times >= note.start_s] = midi_to_hz(note.pitch + detune)  # held into the following rest
        held = sounding & (times < note.end_s)
        peak = envelope.peak_db(note.velocity)
        level_at_end = peak - envelope.decay_db_per_sec * (note.end_s - note.start_s)
        loudness[held] = peak - envelope.decay_db_per_sec * (times[held] - note.start_s)
        released = sounding & (times >= note.end_s)
        loudness[released] = np.maximum(envelope.floor_db, level_at_end - envelope.release_db_per_sec
                                        * (times[released] - note.end_s))
        voiced |= held
    return Conditioning(name, f0.astype(np.float32), loudness.astype(np.float32), voiced,
                        tuple(sorted(set([0] + onsets))))


def read_midi_notes(path: str | Path) -> list[Note]:
    """Monophonic notes of a MIDI file: the highest sounding note of all non-drum tracks (skyline)."""
    import pretty_midi

    path = Path(path)
    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as err:
        raise ValueError(f"{path}: not a readable MIDI file ({err})") from None
    raw = sorted((n for inst in midi.instruments if not inst.is_drum for n in inst.notes),
                 key=lambda n: (n.start, -n.pitch))
    notes: list[Note] = []
    for n in raw:
        if notes and n.start < notes[-1].end_s:
            if n.pitch <= notes[-1].pitch:
                continue  # a lower voice under a sounding note
            last = notes[-1]
            notes[-1] = Note(last.start_s, n.start, last.pitch, last.velocity)
        notes.append(Note(float(n.start), float(n.end), int(n.pitch), int(n.velocity)))
    if not notes:
        raise ValueError(f"{path}: no pitched notes")
    return [n for n in notes if n.end_s > n.start_s]


def conditionings_from_params(params: Params, spec: DatasetSpec, real_examples: Sequence[dict],
                              root: Path, data=None) -> dict[str, Conditioning]:
    """The conditionings ``sample.conditionings`` asks for, by key (:attr:`Conditioning.key`): ``seed``,
    ``seed_report_scale``, ``midi`` and ``real_e<i>`` per held-out example in ``real_examples``.

    ``data`` (:class:`pipeline.generation.fits.ConditioningData`) holds what was fitted on the train
    split: the loudness mapping (needed for ``seed_report_scale``) and the MIDI envelope (used when
    ``sample.midi_envelope`` is ``data``).
    """
    cfg = params.sample
    out: dict[str, Conditioning] = {}
    if "seed" in cfg.conditionings:
        out["seed"] = seed_preset(spec.n_frames)
    if "seed_report_scale" in cfg.conditionings:
        if data is None or data.mapping is None:
            raise ValueError("conditioning seed_report_scale needs the fitted loudness mapping")
        from pipeline.audio.report_scale import report_loudness_db_v3

        out["seed_report_scale"] = seed_report_scale_preset(spec.n_frames, report_loudness_db_v3(data.mapping))
    if "midi" in cfg.conditionings:
        if cfg.midi_file:
            notes = read_midi_notes(root / cfg.midi_file)
        else:
            notes = generate_melody(params.corpus, params.seed, UNSEEN_MELODY_INDEX).notes
        envelope = None
        if cfg.midi_envelope == "data":
            if data is None or data.envelope is None:
                raise ValueError("sample.midi_envelope 'data' needs the envelope fitted on the train split")
            envelope = data.envelope.params
        out["midi"] = melody_contour(notes, spec.n_frames, spec.frame_rate, envelope=envelope)
    if "real" in cfg.conditionings:
        for i, example in enumerate(real_examples):
            cond = real_contour(example, "real", i)
            out[cond.key] = cond
    return out
