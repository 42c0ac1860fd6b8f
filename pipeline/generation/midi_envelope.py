"""The loudness envelope and tuning of MIDI melodies, with their parameters read from the training data.

:func:`pipeline.generation.conditioning.melody_contour` turns notes into an attack-decay-release loudness
contour: each note starts at a velocity-dependent peak, decays linearly in dB while held, is
released linearly (from the note-off) down to a floor. With fixed constants (peaks -30..5 dB) a
MIDI clip can ask the decoder for levels it never saw in training. :func:`envelope_from_contours`
measures the same five numbers on real contours (prepared examples: f0, voicing, ddsp loudness on
the frame grid), so a MIDI clip's target loudness lies where the model was trained:

- ``floor_db``: the ``floor_percentile`` of the loudness of *silent* frames, unvoiced frames at
  least ``silence_margin_s`` from any voiced frame (so release tails do not lift it). Music with
  short rests has few such frames; then the ``floor_fallback_percentile`` of all unvoiced frames
  (the level the releases reach before the next note). Never below ddsp's -80 dB.
- notes (:func:`note_segments`): a note starts at an onset, a voiced frame after an unvoiced one,
  a pitch jump of more than half a semitone (:func:`pipeline.generation.conditioning._onsets_from_pitch`), or
  a loudness rise of ``onset_rise_db`` within ``rise_window_s`` (a repeated note at the same pitch);
  it lasts until the next onset, cut where the loudness has fallen to the floor (+3 dB).
- ``peak_db_softest`` / ``peak_db_loudest``: the ``peak_percentiles`` of note peaks (the loudest
  frame in the first ``attack_s``); velocity 1 maps to the first, 127 to the second, linearly in
  between, as the fixed constants were used.
- ``decay_db_per_sec`` and ``release_db_per_sec``: after its peak, each note's loudness is fitted
  by least squares with a continuous two-piece line (a hinge at the note-off τ, searched over the
  frames): L(t) = a - d·t - (r - d)·max(0, t - τ). Real notes are released while the tracker still
  hears the pitch, so voicing cannot say where the release starts; the hinge does. A knee counts
  as a release when it explains at least half of the one-line fit's squared error and r > 2 d;
  d comes from notes with ``min_decay_s`` before the knee (or in all, without one), r from notes
  with ``min_release_s`` after it. The medians over notes are the parameters.

- ``tuning_cents``: how far the data's voiced pitches sit from equal temperament at A4 = 440 Hz
  (:func:`tuning_from_contours`). A MIDI note is played at that offset: a decoder trained on
  instruments tuned a few cents sharp (the default corpus's soundfont reads +5 cents) follows
  loudness measurably worse at the exact equal-tempered pitch than at the pitch it heard.

A parameter with fewer than ``min_events`` measurements keeps its default, and the fit says so.
:class:`EnvelopeParams` is what ``melody_contour(..., envelope=...)`` accepts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

import librosa
import numpy as np
import scipy.stats

from pipeline.audio.features import VOICED_THRESHOLD
from pipeline.generation.conditioning import (
    DB_RANGE,
    DECAY_DB_PER_SEC,
    FLOOR_DB,
    PEAK_DB_LOUDEST,
    PEAK_DB_SOFTEST,
    RELEASE_DB_PER_SEC,
    _onsets_from_pitch,
)

DEFAULT_PEAK_PERCENTILES = (10.0, 95.0)
DEFAULT_FLOOR_PERCENTILE = 50.0
DEFAULT_FLOOR_FALLBACK_PERCENTILE = 5.0
DEFAULT_SILENCE_MARGIN_S = 1.0  # a release from a loud note down to the floor can take most of a second
DEFAULT_ATTACK_S = 0.1
DEFAULT_ONSET_RISE_DB = 6.0
DEFAULT_RISE_WINDOW_S = 0.02
DEFAULT_MIN_DECAY_S = 0.2
DEFAULT_MIN_RELEASE_S = 0.04
DEFAULT_MIN_EVENTS = 5
_ABOVE_FLOOR_DB = 3.0  # release frames closer than this to the floor have stopped falling


@dataclass(frozen=True)
class EnvelopeParams:
    """How notes become contours: the five numbers of the attack-decay-release envelope, in ddsp 3.x
    loudness dB (and dB/s), and the tuning of the pitches in cents (0: A4 = 440 Hz)."""

    floor_db: float = FLOOR_DB
    peak_db_softest: float = PEAK_DB_SOFTEST
    peak_db_loudest: float = PEAK_DB_LOUDEST
    decay_db_per_sec: float = DECAY_DB_PER_SEC
    release_db_per_sec: float = RELEASE_DB_PER_SEC
    tuning_cents: float = 0.0

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


def tuning_from_contours(contours: Sequence[Contour], min_frames: int = DEFAULT_MIN_EVENTS) -> float | None:
    """The tuning of the voiced pitches in cents, in [-50, 50): the circular mean of every frame's
    deviation from equal temperament at A4 = 440 Hz (circular, since +49 and -49 cents are 2 cents
    apart; glides spread round the circle and barely pull it). None with fewer than ``min_frames``
    voiced frames."""
    f0 = np.concatenate([np.asarray(c.f0_hz, np.float64)[np.asarray(c.voiced, bool)] for c in contours])
    f0 = f0[f0 > 0]
    if len(f0) < min_frames:
        return None
    cents = 100.0 * librosa.hz_to_midi(f0)
    tuning = float(scipy.stats.circmean(cents, high=50.0, low=-50.0))
    return tuning - 100.0 if tuning >= 50.0 else tuning


def note_onsets(contour: Contour, frame_rate: int, onset_rise_db: float = DEFAULT_ONSET_RISE_DB,
                rise_window_s: float = DEFAULT_RISE_WINDOW_S, min_gap_s: float = DEFAULT_ATTACK_S) -> list[int]:
    """Onset frames of one contour: voicing starts, pitch jumps and loudness rises, at voiced frames.

    Onsets closer than ``min_gap_s`` to the previous one are merged into it (one attack).
    """
    voiced = np.asarray(contour.voiced, bool)
    loudness = np.asarray(contour.loudness_db, np.float64)
    window = max(1, int(round(rise_window_s * frame_rate)))
    candidates = {o for o in _onsets_from_pitch(np.asarray(contour.f0_hz), voiced) if voiced[o]}
    if len(loudness) > window:
        rise = np.zeros(len(loudness), bool)
        rise[window:] = loudness[window:] - loudness[:-window] >= onset_rise_db
        starts = np.flatnonzero(rise & ~np.r_[False, rise[:-1]])
        # the onset is the steepest step of the rise (exact for a step, the attack's middle for a ramp)
        candidates |= {int(t) - window + 1 + int(np.argmax(np.diff(loudness[t - window:t + 1])))
                       for t in starts if voiced[t]}
    gap = max(1, int(round(min_gap_s * frame_rate)))
    onsets: list[int] = []
    for onset in sorted(candidates):
        if not onsets or onset - onsets[-1] >= gap:
            onsets.append(onset)
    return onsets


def note_segments(contour: Contour, frame_rate: int, floor_db: float = FLOOR_DB,
                  **onset_kwargs) -> list[tuple[int, int]]:
    """(start, end) frames of each note: from an onset to the next one, cut once it has fallen to the floor."""
    loudness = np.asarray(contour.loudness_db, np.float64)
    onsets = note_onsets(contour, frame_rate, **onset_kwargs)
    segments = []
    for i, start in enumerate(onsets):
        stop = onsets[i + 1] if i + 1 < len(onsets) else len(loudness)
        peak = start + int(np.argmax(loudness[start:stop]))
        at_floor = np.flatnonzero(loudness[peak + 1:stop] <= floor_db + _ABOVE_FLOOR_DB)
        segments.append((start, peak + 1 + int(at_floor[0]) if len(at_floor) else stop))
    return segments


@dataclass(frozen=True)
class NoteFit:
    """One note after its peak: decay d and (if a knee was found) release r in dB/s, and the piece lengths."""

    decay_db_per_sec: float
    release_db_per_sec: float | None
    decay_frames: int
    release_frames: int


def fit_note(loudness_db: np.ndarray, frame_rate: int, min_piece: int = 3) -> NoteFit | None:
    """Hinge fit L(t) = a - d·t - (r - d)·max(0, t - τ) of a note's loudness [n] from its peak on.

    τ is searched over every frame leaving ``min_piece`` frames on each side; all candidate fits are
    solved at once (batched 3x3 normal equations). None for fewer than 2·min_piece frames.
    """
    y = np.asarray(loudness_db, np.float64)
    n = len(y)
    if n < 2 * min_piece:
        return None
    t = np.arange(n) / frame_rate
    line = np.polyfit(t, y, 1)
    line_sse = float(np.sum((np.polyval(line, t) - y) ** 2))
    knots = np.arange(min_piece, n - min_piece + 1)
    hinge = np.maximum(0.0, t[None, :] - t[knots][:, None])  # [K, n]
    design = np.stack([np.ones_like(hinge), np.broadcast_to(t, hinge.shape), hinge], axis=-1)  # [K, n, 3]
    gram = np.einsum("kni,knj->kij", design, design) + 1e-12 * np.eye(3)
    coef = np.linalg.solve(gram, np.einsum("kni,n->ki", design, y)[..., None])[..., 0]  # [K, 3]
    sse = np.sum((np.einsum("kni,ki->kn", design, coef) - y) ** 2, axis=1)
    best = int(np.argmin(sse))
    decay = -float(coef[best, 1])
    release = -float(coef[best, 1] + coef[best, 2])
    knee = int(knots[best])
    if sse[best] <= 0.5 * line_sse and release > 2.0 * max(decay, 0.0) and release > 0:
        return NoteFit(decay, release, knee, n - knee)
    return NoteFit(-float(line[0]), None, n, 0)


def envelope_from_contours(contours: Sequence[Contour], frame_rate: int, *,
                           peak_percentiles: tuple[float, float] = DEFAULT_PEAK_PERCENTILES,
                           floor_percentile: float = DEFAULT_FLOOR_PERCENTILE,
                           floor_fallback_percentile: float = DEFAULT_FLOOR_FALLBACK_PERCENTILE,
                           silence_margin_s: float = DEFAULT_SILENCE_MARGIN_S, attack_s: float = DEFAULT_ATTACK_S,
                           onset_rise_db: float = DEFAULT_ONSET_RISE_DB, rise_window_s: float = DEFAULT_RISE_WINDOW_S,
                           min_decay_s: float = DEFAULT_MIN_DECAY_S, min_release_s: float = DEFAULT_MIN_RELEASE_S,
                           min_events: int = DEFAULT_MIN_EVENTS, default: EnvelopeParams = DEFAULT_ENVELOPE
                           ) -> EnvelopeFit:
    """Measure :class:`EnvelopeParams` on real contours (see the module docstring for each number)."""
    low_pct, high_pct = peak_percentiles
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ValueError(f"peak_percentiles must be increasing within [0, 100], got {peak_percentiles}")
    for name, value in (("floor_percentile", floor_percentile),
                        ("floor_fallback_percentile", floor_fallback_percentile)):
        if not 0.0 <= value <= 100.0:
            raise ValueError(f"{name} must be within [0, 100], got {value}")
    if not contours:
        raise ValueError("no contours to measure the envelope on")
    attack, min_decay, min_release, margin = (max(1, int(round(s * frame_rate)))
                                              for s in (attack_s, min_decay_s, min_release_s, silence_margin_s))
    notes: dict[str, str] = {}

    silent = np.concatenate([_silent_frames(c, margin) for c in contours])
    unvoiced = np.concatenate([np.asarray(c.loudness_db, np.float64)[~np.asarray(c.voiced, bool)] for c in contours])
    if len(silent) >= min_events:
        floor = max(-DB_RANGE, float(np.percentile(silent, floor_percentile)))
    elif len(unvoiced) >= min_events:
        floor = max(-DB_RANGE, float(np.percentile(unvoiced, floor_fallback_percentile)))
        notes["floor_db"] = (f"only {len(silent)} silent frames; the {floor_fallback_percentile:g}th percentile "
                             f"of {len(unvoiced)} unvoiced frames")
    else:
        floor = default.floor_db
        notes["floor_db"] = f"only {len(unvoiced)} unvoiced frames (need {min_events}); default kept"

    peaks, decays, releases = [], [], []
    for contour in contours:
        loudness = np.asarray(contour.loudness_db, np.float64)
        for start, end in note_segments(contour, frame_rate, floor, onset_rise_db=onset_rise_db,
                                        rise_window_s=rise_window_s, min_gap_s=attack_s):
            peak = start + int(np.argmax(loudness[start:min(end, start + attack)]))
            peaks.append(loudness[peak])
            fit = fit_note(loudness[peak:end], frame_rate)
            if fit is None:
                continue
            if fit.decay_frames >= min_decay:
                decays.append(fit.decay_db_per_sec)
            if fit.release_db_per_sec is not None and fit.release_frames >= min_release:
                releases.append(fit.release_db_per_sec)

    if len(peaks) >= min_events:
        softest, loudest = (float(v) for v in np.percentile(peaks, [low_pct, high_pct]))
    else:
        softest, loudest = default.peak_db_softest, default.peak_db_loudest
        notes["peak_db"] = f"only {len(peaks)} notes (need {min_events}); defaults kept"
    if len(decays) >= min_events:
        decay = max(0.0, float(np.median(decays)))
    else:
        decay = default.decay_db_per_sec
        notes["decay_db_per_sec"] = (f"only {len(decays)} notes with a long enough decay (need {min_events}); "
                                     "default kept")
    if len(releases) >= min_events:
        release_rate = float(np.median(releases))
    else:
        release_rate = default.release_db_per_sec
        notes["release_db_per_sec"] = f"only {len(releases)} releases (need {min_events}); default kept"

    tuning = tuning_from_contours(contours, min_events)
    if tuning is None:
        tuning = default.tuning_cents
        notes["tuning_cents"] = f"fewer than {min_events} voiced frames; default kept"

    if not floor < softest <= loudest:
        raise ValueError(f"measured envelope is inconsistent: floor {floor:.1f} dB, peaks {softest:.1f}..{loudest:.1f} "
                         "dB (is the voicing threshold right for this data?)")
    params = EnvelopeParams(floor, softest, loudest, decay, release_rate, tuning)
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

