"""The loudness envelope of MIDI melodies, with its parameters read from the training data.

:func:`pipeline.conditioning.melody_contour` turns notes into an attack-decay-release loudness
contour: each note starts at a velocity-dependent peak, decays linearly in dB while held, is
released linearly down to a floor. With fixed constants (peaks -30..5 dB) a MIDI clip can ask the
decoder for levels it never saw in training. :func:`envelope_from_contours` measures the same five
numbers on real contours (prepared examples: f0, voicing, ddsp loudness on the frame grid), so a
MIDI clip's target loudness lies where the model was trained:

- notes: a note starts at an onset (a voiced frame after an unvoiced one, or a pitch jump of more
  than half a semitone, :func:`pipeline.conditioning._onsets_from_pitch`) and lasts while voiced,
  until the next onset;
- ``floor_db``: the ``floor_percentile`` of the loudness of *silent* frames, unvoiced frames at
  least ``silence_margin_s`` away from any voiced frame (so release tails do not lift it); never
  below ddsp's -80 dB;
- ``peak_db_softest`` / ``peak_db_loudest``: the ``peak_percentiles`` of note peaks (the loudest
  frame in the first ``attack_s`` of each note); velocity 1 maps to the first, 127 to the second,
  linearly in between, exactly as the fixed constants were used;
- ``decay_db_per_sec``: the median least-squares slope of loudness from each note's peak to its
  end (notes with at least ``min_decay_s`` after the peak), sign flipped;
- ``release_db_per_sec``: the median slope over the first ``release_s`` after each note end
  followed by silence, using frames still above the floor.

A parameter with fewer than ``min_events`` measurements keeps its default, and the fit says so.
:class:`EnvelopeParams` is what ``melody_contour(..., envelope=...)`` accepts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from pipeline.conditioning import (DB_RANGE, DECAY_DB_PER_SEC, FLOOR_DB, PEAK_DB_LOUDEST, PEAK_DB_SOFTEST,
                                   RELEASE_DB_PER_SEC, _onsets_from_pitch)
from pipeline.features import VOICED_THRESHOLD

DEFAULT_PEAK_PERCENTILES = (10.0, 95.0)
DEFAULT_FLOOR_PERCENTILE = 50.0
DEFAULT_ATTACK_S = 0.1
DEFAULT_MIN_DECAY_S = 0.2
DEFAULT_RELEASE_S = 0.1
DEFAULT_SILENCE_MARGIN_S = 1.0  # a release from a loud note down to the floor can take most of a second
DEFAULT_MIN_EVENTS = 5
_ABOVE_FLOOR_DB = 3.0  # release frames closer than this to the floor have stopped falling


@dataclass(frozen=True)
class EnvelopeParams:
    """The five numbers of the attack-decay-release envelope, in ddsp 3.x loudness dB (and dB/s)."""

    floor_db: float = FLOOR_DB
    peak_db_softest: float = PEAK_DB_SOFTEST
    peak_db_loudest: float = PEAK_DB_LOUDEST
    decay_db_per_sec: float = DECAY_DB_PER_SEC
    release_db_per_sec: float = RELEASE_DB_PER_SEC

    def peak_db(self, velocity: int) -> float:
        """A note's peak: velocity 1 -> softest, 127 -> loudest, linear in between."""
        return self.peak_db_softest + (self.peak_db_loudest - self.peak_db_softest) * (velocity - 1) / 126

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULT_ENVELOPE = EnvelopeParams()


@dataclass(frozen=True)
class EnvelopeFit:
    """Fitted parameters, how many events each rests on, and why any kept its default."""

    params: EnvelopeParams
    n_silent_frames: int
    n_notes: int
    n_decays: int
    n_releases: int
    notes: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"params": self.params.as_dict(), "n_silent_frames": self.n_silent_frames, "n_notes": self.n_notes,
                "n_decays": self.n_decays, "n_releases": self.n_releases, "notes": dict(self.notes)}


@dataclass(frozen=True)
class Contour:
    """One example's frame-rate contours [n_frames] each."""

    loudness_db: np.ndarray
    voiced: np.ndarray
    f0_hz: np.ndarray


def contours_from_examples(examples: Iterable[Mapping], voiced_threshold: float = VOICED_THRESHOLD) -> list[Contour]:
    """Contours of prepared examples (dicts with ``f0_hz``, ``f0_confidence``, ``loudness_db``)."""
    return [Contour(np.asarray(e["loudness_db"], np.float64), np.asarray(e["f0_confidence"]) >= voiced_threshold,
                    np.asarray(e["f0_hz"], np.float64)) for e in examples]


def note_segments(contour: Contour) -> list[tuple[int, int]]:
    """(start, end) frame ranges of the notes of one contour: voiced from an onset to the next or to silence."""
    voiced = np.asarray(contour.voiced, bool)
    onsets = [o for o in _onsets_from_pitch(np.asarray(contour.f0_hz), voiced) if voiced[o]]
    segments = []
    for i, start in enumerate(onsets):
        stop = onsets[i + 1] if i + 1 < len(onsets) else len(voiced)
        unvoiced = np.flatnonzero(~voiced[start:stop])
        end = start + int(unvoiced[0]) if len(unvoiced) else stop
        segments.append((start, end))
    return segments


def envelope_from_contours(contours: Sequence[Contour], frame_rate: int, *,
                           peak_percentiles: tuple[float, float] = DEFAULT_PEAK_PERCENTILES,
                           floor_percentile: float = DEFAULT_FLOOR_PERCENTILE, attack_s: float = DEFAULT_ATTACK_S,
                           min_decay_s: float = DEFAULT_MIN_DECAY_S, release_s: float = DEFAULT_RELEASE_S,
                           silence_margin_s: float = DEFAULT_SILENCE_MARGIN_S, min_events: int = DEFAULT_MIN_EVENTS,
                           default: EnvelopeParams = DEFAULT_ENVELOPE) -> EnvelopeFit:
    """Measure :class:`EnvelopeParams` on real contours (see the module docstring for each number)."""
    low_pct, high_pct = peak_percentiles
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ValueError(f"peak_percentiles must be increasing within [0, 100], got {peak_percentiles}")
    if not 0.0 <= floor_percentile <= 100.0:
        raise ValueError(f"floor_percentile must be within [0, 100], got {floor_percentile}")
    if not contours:
        raise ValueError("no contours to measure the envelope on")
    attack, min_decay, release, margin = (max(1, int(round(s * frame_rate)))
                                          for s in (attack_s, min_decay_s, release_s, silence_margin_s))
    segments = [note_segments(c) for c in contours]
    notes: dict[str, str] = {}

    silent = np.concatenate([_silent_frames(c, margin) for c in contours])
    if len(silent) >= min_events:
        floor = max(-DB_RANGE, float(np.percentile(silent, floor_percentile)))
    else:
        floor = default.floor_db
        notes["floor_db"] = f"only {len(silent)} silent frames (need {min_events}); default kept"

    peaks = np.array([c.loudness_db[s:min(e, s + attack)].max() for c, segs in zip(contours, segments)
                      for s, e in segs])
    if len(peaks) >= min_events:
        softest, loudest = (float(v) for v in np.percentile(peaks, [low_pct, high_pct]))
    else:
        softest, loudest = default.peak_db_softest, default.peak_db_loudest
        notes["peak_db"] = f"only {len(peaks)} notes (need {min_events}); defaults kept"

    decays = []
    for c, segs in zip(contours, segments):
        for s, e in segs:
            peak = s + int(np.argmax(c.loudness_db[s:min(e, s + attack)]))
            if e - peak >= min_decay:
                decays.append(-_slope(c.loudness_db[peak:e], frame_rate))
    if len(decays) >= min_events:
        decay = max(0.0, float(np.median(decays)))
    else:
        decay = default.decay_db_per_sec
        notes["decay_db_per_sec"] = f"only {len(decays)} notes long enough (need {min_events}); default kept"

    releases = []
    for c, segs in zip(contours, segments):
        for _, e in segs:
            tail = _release_tail(c, e, release, floor)
            if tail is not None:
                releases.append(-_slope(tail, frame_rate))
    if len(releases) >= min_events:
        release_rate = max(0.0, float(np.median(releases)))
    else:
        release_rate = default.release_db_per_sec
        notes["release_db_per_sec"] = f"only {len(releases)} releases (need {min_events}); default kept"

    if not floor < softest <= loudest:
        raise ValueError(f"measured envelope is inconsistent: floor {floor:.1f} dB, peaks {softest:.1f}..{loudest:.1f} "
                         "dB (is the voicing threshold right for this data?)")
    params = EnvelopeParams(floor, softest, loudest, decay, release_rate)
    return EnvelopeFit(params, len(silent), len(peaks), len(decays), len(releases), notes)


def _silent_frames(contour: Contour, margin: int) -> np.ndarray:
    """Loudness of unvoiced frames at least ``margin`` frames from every voiced frame."""
    loudness = np.asarray(contour.loudness_db, np.float64)
    voiced_at = np.flatnonzero(np.asarray(contour.voiced, bool))
    if not len(voiced_at):
        return loudness
    frames = np.arange(len(loudness))
    right = np.searchsorted(voiced_at, frames)
    to_next = np.where(right < len(voiced_at), voiced_at[np.minimum(right, len(voiced_at) - 1)] - frames, np.inf)
    to_prev = np.where(right > 0, frames - voiced_at[np.maximum(right - 1, 0)], np.inf)
    return loudness[np.minimum(to_next, to_prev) >= margin]


def _release_tail(contour: Contour, end: int, length: int, floor: float) -> np.ndarray | None:
    """Loudness from the last held frame over ``length`` unvoiced frames, while above the floor (≥ 3 frames)."""
    voiced = np.asarray(contour.voiced, bool)
    if end >= len(voiced) or end < 1 or voiced[end]:
        return None  # the clip ends, or a new note follows at once: no release to see
    stop = min(len(voiced), end + length)
    following_voiced = np.flatnonzero(voiced[end:stop])
    if len(following_voiced):
        stop = end + int(following_voiced[0])
    tail = np.asarray(contour.loudness_db[end - 1:stop], np.float64)
    above = np.flatnonzero(tail <= floor + _ABOVE_FLOOR_DB)
    if len(above):
        tail = tail[:int(above[0])]
    return tail if len(tail) >= 3 else None


def _slope(values: np.ndarray, frame_rate: int) -> float:
    """Least-squares slope of ``values`` [n] against time, in units per second."""
    t = np.arange(len(values)) / frame_rate
    return float(np.polyfit(t, values, 1)[0])
