r"""The seed report's loudness scale (ddsp 1.x) mapped onto the scale this project's model was trained on (ddsp 3.x).

The report conditioned its decoder on a constant scaled loudness 0.39189076. In ddsp 1.x the scaled
loudness was ld_scaled = dB / 120 + 1 (``LD_RANGE = 120``), so the constant means

    dB_1x = (0.39189076 - 1) · 120 = -72.97 dB          (:func:`report_db_v1`)

on ddsp 1.x's loudness, which is a different function of the audio from ddsp 3.x's:

ddsp 1.x ``spectral_ops.compute_loudness`` (n_fft 2048, ``ref_db`` 20.7, ``range_db`` 120; the numpy
path: frames start at t·hop after zero-padding the end, librosa STFT with a periodic Hann window,
``center=False``), per frame t and frequency bin f:

    L_1x(t) = mean_f  max( 20·log10(max(|X_t(f)|, 1e-20)) + A(f) - ref_db,  -range_db )

i.e. the *mean over bins of clipped per-bin dB*. ddsp 3.x (``compute_loudness``, wrapped by
:func:`pipeline.audio.features.compute_loudness_db`; n_fft from ``prepare.loudness_n_fft``, ``ref_db`` 0,
``range_db`` 80, centred frames) takes the dB of the *mean A-weighted power*:

    L_3x(t) = max( 10·log10( mean_f |X_t(f)|² · 10^{A(f)/10} ),  -80 ).

Because log and mean do not commute (Jensen: mean of logs ≤ log of mean) and the 1.x clip floors
every quiet bin at -120, L_1x depends on how many bins hold energy: a pure tone at full scale is
≈ -120 dB on the 1.x scale but ≈ 0 dB on the 3.x scale, broadband noise is close on both. There is
no closed-form conversion; the mapping depends on the spectra of the audio. So it is *fitted on the
corpus*: both loudnesses are computed on the same frames (the 1.x one with centred frames, so frame
t sits at t / frame_rate on the project's grid; :func:`loudness_pairs`), and a monotone function
g: dB_1x -> dB_3x is fitted (:func:`fit_loudness_mapping`):

- ``isotonic`` (default): isotonic least-squares regression of L_3x on L_1x (sklearn), i.e. the
  best non-decreasing estimate of E[L_3x | L_1x] on this corpus;
- ``quantile``: percentile matching, g(q-quantile of L_1x) = q-quantile of L_3x.

Either is stored as knots (L_1x at quantiles of the corpus, g at those points) and applied by
linear interpolation, clipped to the fitted range; JSON, no pickle (:func:`save_mapping`).
The report's constant then becomes the 3.x dB the model understands:
``report_loudness_db_v3(mapping) = g(-72.97)`` (conditioning ``seed_report_scale``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from pipeline.publish import write_json_atomic

# ddsp 1.x defaults of compute_loudness and its scaling (spectral_ops.LD_RANGE)
LD_RANGE_V1 = 120.0
REF_DB_V1 = 20.7  # white noise of amplitude 1 with n_fft 2048, in 1.x's words
N_FFT_V1 = 2048
REPORT_LOUDNESS_SCALED = 0.39189076
MAPPING_METHODS = ("isotonic", "quantile")
DEFAULT_N_KNOTS = 201
MAPPING_FORMAT_VERSION = 1
DEFAULT_BLOCK_FRAMES = 4096
_AMIN = 1e-20  # 1.x's amplitude floor inside log10


def report_db_v1(ld_scaled: float = REPORT_LOUDNESS_SCALED, range_db: float = LD_RANGE_V1) -> float:
    """The report's scaled loudness on ddsp 1.x's dB scale: (ld_scaled - 1) · range_db."""
    return (float(ld_scaled) - 1.0) * range_db


def compute_loudness_v1(audio: np.ndarray, sample_rate: int, frame_rate: int, *, n_fft: int = N_FFT_V1,
                        range_db: float = LD_RANGE_V1, ref_db: float = REF_DB_V1, padding: str = "end",
                        n_frames: int | None = None, dtype: type = np.float32,
                        block_frames: int = DEFAULT_BLOCK_FRAMES) -> np.ndarray:
    """ddsp 1.x loudness in dB [n_frames] of mono ``audio`` [n_samples] (numpy, no TensorFlow).

    ``padding='end'`` is 1.x's own framing (frame t covers samples t·hop .. t·hop + n_fft);
    ``'center'`` pads n_fft/2 zeros in front so frame t is centred on t / frame_rate, the project's
    grid, for frame-by-frame pairing with the 3.x loudness. ``n_frames`` defaults to 1.x's
    int(seconds · frame_rate); missing frames are padded with -range_db, as 1.x did. ``dtype`` is the
    sample type of the STFT: 1.x's pipelines fed float32 audio (float32 rounding sets the level of
    empty bins, which the clip at -range_db usually hides). The STFT runs ``block_frames`` frames at
    a time; the result does not depend on it.
    """
    import librosa

    if sample_rate % frame_rate:
        raise ValueError(f"frame_rate {frame_rate} must divide sample_rate {sample_rate}")
    if padding not in ("end", "center"):
        raise ValueError(f"padding must be 'end' or 'center', got {padding!r}")
    audio = np.asarray(audio, dtype).reshape(-1)
    if not len(audio):
        raise ValueError("audio is empty")
    if block_frames < 1:
        raise ValueError(f"block_frames must be positive, got {block_frames}")
    hop = sample_rate // frame_rate
    if n_frames is None:
        n_frames = int(len(audio) / sample_rate * frame_rate)
    if padding == "center":
        audio = np.concatenate([np.zeros(n_fft // 2, dtype), audio])
    n_stft = min(int(math.ceil(len(audio) / hop)), n_frames)  # frames past n_frames would be trimmed anyway
    audio = np.pad(audio, (0, max(0, (n_stft - 1) * hop + n_fft - len(audio))))
    with np.errstate(divide="ignore"):  # log10(0) at the DC bin; librosa floors it at min_db
        weighting = librosa.A_weighting(librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft))[:, None]
    blocks = []
    # blocks of frames bound the memory: a 2048-point STFT at hop 64 is 1025 complex values per frame
    for first in range(0, n_stft, block_frames):
        count = min(block_frames, n_stft - first)
        segment = audio[first * hop:(first + count - 1) * hop + n_fft]
        spectra = librosa.stft(segment, n_fft=n_fft, hop_length=hop, center=False)  # [bins, count], periodic Hann
        power_db = 20.0 * np.log10(np.maximum(_AMIN, np.abs(spectra)))
        blocks.append(np.maximum(power_db + weighting - ref_db, -range_db).mean(axis=0))
    loudness = np.concatenate(blocks) if blocks else np.zeros(0)
    if len(loudness) >= n_frames:
        return loudness[:n_frames].astype(np.float64)
    return np.pad(loudness, (0, n_frames - len(loudness)), constant_values=-range_db).astype(np.float64)


def loudness_pairs(audio: np.ndarray, sample_rate: int, frame_rate: int, loudness_n_fft: int = 512,
                   n_fft_v1: int = N_FFT_V1, trim_edges: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(L_1x, L_3x) [n_frames] each on the same centred frames of one clip (frames t at t / frame_rate).

    L_3x is the project's :func:`pipeline.audio.features.compute_loudness_db` (ddsp 3.x, TensorFlow is
    imported on first use); ``loudness_n_fft`` must be the one the model's data used.
    ``trim_edges`` drops the first and last ⌈n_fft_v1 / 2 / hop⌉ frames, whose 1.x window reaches
    into the zero padding outside the clip: the cut-off sound leaks over many bins and *raises*
    L_1x while L_3x (a 4x shorter window) already sees the steady level, pairs that describe the
    padding, not the audio.
    """
    from pipeline.audio.features import compute_loudness_db

    n_frames = int(math.ceil(len(audio) * frame_rate / sample_rate))
    v3 = compute_loudness_db(audio, sample_rate, frame_rate, n_frames, n_fft=loudness_n_fft).astype(np.float64)
    v1 = compute_loudness_v1(audio, sample_rate, frame_rate, n_fft=n_fft_v1, padding="center", n_frames=n_frames)
    if trim_edges:
        edge = int(math.ceil(n_fft_v1 / 2 / (sample_rate // frame_rate)))
        v1, v3 = v1[edge:n_frames - edge], v3[edge:n_frames - edge]
    return v1, v3


def corpus_loudness_pairs(clips: Iterable[np.ndarray], sample_rate: int, frame_rate: int,
                          loudness_n_fft: int = 512, trim_edges: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`loudness_pairs` over many clips (whole recordings are best: fewer edges), concatenated.

    Returns (L_1x, L_3x) [total_frames] each.
    """
    v1_parts, v3_parts = [], []
    for audio in clips:
        v1, v3 = loudness_pairs(audio, sample_rate, frame_rate, loudness_n_fft, trim_edges=trim_edges)
        v1_parts.append(v1)
        v3_parts.append(v3)
    if not v1_parts:
        raise ValueError("no clips to compute loudness pairs on")
    return np.concatenate(v1_parts), np.concatenate(v3_parts)


@dataclass(frozen=True)
class LoudnessMapping:
    """Monotone piecewise-linear g: dB_1x -> dB_3x through (v1_db[i], v3_db[i]), clipped at the ends."""

    v1_db: list[float]
    v3_db: list[float]
    method: str
    n_frames: int

    def __call__(self, db_v1: np.ndarray | float) -> np.ndarray:
        return np.interp(np.asarray(db_v1, np.float64), self.v1_db, self.v3_db)

    def to_json(self) -> dict:
        return {"format_version": MAPPING_FORMAT_VERSION, **asdict(self)}


def fit_loudness_mapping(db_v1: np.ndarray, db_v3: np.ndarray, method: str = "isotonic",
                         n_knots: int = DEFAULT_N_KNOTS) -> LoudnessMapping:
    """Fit g: dB_1x -> dB_3x on paired frames ([n] each), stored as ≤ ``n_knots`` knots.

    Knots sit at evenly spaced quantiles of the 1.x loudness, so the map is detailed where the
    corpus has frames; duplicate knot positions (e.g. many frames on the -120 floor) are merged.
    """
    from sklearn.isotonic import IsotonicRegression

    if method not in MAPPING_METHODS:
        raise ValueError(f"method must be one of {MAPPING_METHODS}, got {method!r}")
    if n_knots < 2:
        raise ValueError(f"n_knots must be at least 2, got {n_knots}")
    v1 = np.asarray(db_v1, np.float64).reshape(-1)
    v3 = np.asarray(db_v3, np.float64).reshape(-1)
    if len(v1) != len(v3):
        raise ValueError(f"db_v1 has {len(v1)} frames but db_v3 has {len(v3)}")
    keep = np.isfinite(v1) & np.isfinite(v3)
    v1, v3 = v1[keep], v3[keep]
    if len(v1) < 2 or np.ptp(v1) == 0:
        raise ValueError("need frames with at least two distinct 1.x loudness values to fit a mapping")
    quantiles = np.linspace(0.0, 1.0, n_knots)
    x = np.quantile(v1, quantiles)
    if method == "isotonic":
        y = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(v1, v3).predict(x)
    else:
        y = np.quantile(v3, quantiles)
    x, first = np.unique(x, return_index=True)
    # at a merged knot keep the largest y of the run, so the sequence stays non-decreasing
    y = np.maximum.reduceat(np.asarray(y), first)
    y = np.maximum.accumulate(y)
    return LoudnessMapping([float(v) for v in x], [float(v) for v in y], method, int(len(v1)))


def save_mapping(mapping: LoudnessMapping, path: str | Path) -> Path:
    """Write the mapping as JSON (atomically: a crash never leaves a half-written file)."""
    return write_json_atomic(path, mapping.to_json())


def load_mapping(path: str | Path) -> LoudnessMapping:
    """The :class:`LoudnessMapping` written by :func:`save_mapping`, with its knots checked."""
    path = Path(path)
    payload = json.loads(path.read_text())
    if payload.get("format_version") != MAPPING_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {payload.get('format_version')!r}")
    mapping = LoudnessMapping([float(v) for v in payload["v1_db"]], [float(v) for v in payload["v3_db"]],
                              str(payload["method"]), int(payload["n_frames"]))
    if len(mapping.v1_db) != len(mapping.v3_db) or len(mapping.v1_db) < 1:
        raise ValueError(f"{path}: v1_db and v3_db must be non-empty and of equal length")
    if np.any(np.diff(mapping.v1_db) <= 0) or np.any(np.diff(mapping.v3_db) < 0):
        raise ValueError(f"{path}: knots are not monotone")
    return mapping


def report_loudness_db_v3(mapping: LoudnessMapping, ld_scaled: float = REPORT_LOUDNESS_SCALED) -> float:
    """The report's scaled loudness (1.x scale) as the ddsp 3.x dB the model understands: g(dB_1x)."""
    return float(mapping(report_db_v1(ld_scaled)))
