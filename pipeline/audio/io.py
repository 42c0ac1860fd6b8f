"""Audio files in, validated mono float32 at the model rate out.

soundfile (bundled libsndfile: WAV, FLAC, OGG, MP3, AIFF) reads any sample rate and channel count;
soxr resamples. Every way a file can be unusable raises :class:`AudioRejected` with a reason a
person can act on, so a run can report it and go on with the rest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".aifc"})
_BLOCK_FRAMES = 1 << 18
FULL_SCALE = 0.99  # |sample| at or above this counts as full scale (8-bit PCM peaks at 127/128)


class AudioRejected(ValueError):
    """A file that cannot be used; ``reason`` is a short code, the message explains."""

    def __init__(self, path: str, reason: str, detail: str):
        super().__init__(f"{path}: {reason}: {detail}")
        self.path, self.reason, self.detail = path, reason, detail


@dataclass(frozen=True)
class AudioInfo:
    path: str
    frames: int
    sample_rate: int
    channels: int
    rms_db: float
    clipped_share: float = 0.0  # share of samples (any channel) at full scale
    format: str = ""            # libsndfile's container and encoding, e.g. "WAV/PCM_U8"

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def list_audio_files(folder: str | Path) -> list[Path]:
    """Audio files below ``folder`` (recursively, by extension), in a stable order."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {root} does not exist (set prepare.audio_dir)")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _riff_data_shortfall(path: str) -> tuple[int, int] | None:
    """(declared, present) bytes of a WAV's data chunk when the file ends early, else None.

    libsndfile silently shortens a truncated WAV to the bytes present, so the header is read here.
    """
    with open(path, "rb") as handle:
        if handle.read(4) != b"RIFF":
            return None
        handle.seek(12)
        while len(header := handle.read(8)) == 8:
            chunk_id, size = header[:4], int.from_bytes(header[4:], "little")
            if chunk_id == b"data":
                present = max(0, Path(path).stat().st_size - handle.tell())
                return (size, present) if present < size else None
            handle.seek(size + (size & 1), 1)
    return None


def _ogg_unterminated(path: str) -> bool:
    """True when an Ogg file's last page lacks the end-of-stream flag: the file was cut short.

    libsndfile reads such a file as zero frames (or stops early) without an error.
    """
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    last = tail.rfind(b"OggS")
    return last < 0 or len(tail) < last + 6 or not tail[last + 5] & 0x04


_MP3_FORMATS = ("MP3", "MPEG")  # libsndfile's name for the container, by version


def _mp3_starts_with_a_frame(path: str) -> bool:
    """An MP3 starts with an ID3v2 tag or an MPEG frame sync (11 set bits). libmpg123 skips garbage
    to the next sync without an error, so a damaged start would otherwise decode as if whole."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _mp3_shortfall(path: str) -> tuple[int, int] | None:
    """(declared, present) bytes of an MP3 whose Xing/Info header promises more than the file holds.

    libmpg123 decodes a cut MP3 up to the cut without an error, so the header is read here.
    """
    with open(path, "rb") as handle:
        head = handle.read(4096)
        size = handle.seek(0, 2)
    at = max(head.find(b"Xing"), head.find(b"Info"))
    if at < 0 or len(head) < at + 16:
        return None
    flags = int.from_bytes(head[at + 4:at + 8], "big")
    if not flags & 0x2:  # no byte count in this header
        return None
    offset = at + 8 + (4 if flags & 0x1 else 0)
    declared = int.from_bytes(head[offset:offset + 4], "big")
    # the count covers the stream from the Xing frame on; an ID3 tag may sit before it
    present = size - max(0, head.find(b"\xff"))
    return (declared, present) if 0 < present < declared * 0.99 else None


def _mono(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1) if block.ndim == 2 else block


def inspect_audio(path: str | Path, min_secs: float, silence_db: float) -> AudioInfo:
    """Read the whole file once, in blocks, and reject it if it cannot be used.

    Streaming keeps memory flat for hour-long files; the features are computed later per chunk.
    libsndfile centres 8-bit unsigned PCM (byte 128 reads as 0.0) and scales every integer width
    to [-1, 1); float files are read as they are (samples beyond full scale count as clipped).
    """
    name = str(path)
    try:
        info = sf.info(name)
    except Exception as err:  # libsndfile says "Format not recognised", "unknown format", ...
        raise AudioRejected(name, "unreadable", f"not a readable audio file ({err})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioRejected(name, "empty", "file holds no audio frames")
    if shortfall := _riff_data_shortfall(name):
        raise AudioRejected(name, "truncated", f"WAV header declares {shortfall[0]} data bytes, file holds {shortfall[1]}")
    if info.format == "OGG" and _ogg_unterminated(name):
        raise AudioRejected(name, "truncated", "the Ogg stream has no end-of-stream page: the file was cut short")
    if info.format in _MP3_FORMATS and not _mp3_starts_with_a_frame(name):
        raise AudioRejected(name, "unreadable", "no ID3 tag or MPEG frame at the start: the file is corrupt")
    if info.format in _MP3_FORMATS and (shortfall := _mp3_shortfall(name)):
        raise AudioRejected(name, "truncated", f"MP3 header declares {shortfall[0]} bytes, file holds {shortfall[1]}")
    frames_read, energy, clipped = 0, 0.0, 0
    try:
        for block in sf.blocks(name, blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
            mono = _mono(block)
            if not np.isfinite(mono).all():
                raise AudioRejected(name, "non_finite", f"NaN or inf sample near {frames_read / info.samplerate:.2f} s")
            frames_read += len(mono)
            energy += float(np.dot(mono.astype(np.float64), mono))
            clipped += int(np.count_nonzero(np.abs(block) >= FULL_SCALE))
    except AudioRejected:
        raise
    except Exception as err:
        raise AudioRejected(name, "unreadable",
                            f"decoding failed after {frames_read} of {info.frames} frames ({err})") from None
    # mp3/ogg headers only estimate the length; PCM headers are exact, so a shortfall means truncation
    if frames_read == 0:
        raise AudioRejected(name, "empty", "file holds no audio frames")
    if frames_read < info.frames and info.format not in (*_MP3_FORMATS, "OGG"):
        raise AudioRejected(name, "truncated", f"header promises {info.frames} frames, data holds {frames_read}")
    seconds = frames_read / info.samplerate
    if seconds < min_secs:
        raise AudioRejected(name, "too_short", f"{seconds:.2f} s is shorter than prepare.min_secs = {min_secs:g} s")
    rms_db = 10 * math.log10(max(energy / frames_read, 1e-20))
    if rms_db < silence_db:
        raise AudioRejected(name, "silent", f"RMS {rms_db:.1f} dBFS is below prepare.silence_db = {silence_db:g}")
    return AudioInfo(name, frames_read, info.samplerate, info.channels, rms_db,
                     clipped / (frames_read * info.channels), f"{info.format}/{info.subtype}")


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return np.asarray(audio, np.float32)
    return soxr.resample(np.asarray(audio, np.float32), from_rate, to_rate, quality="HQ").astype(np.float32)


def read_segment(info: AudioInfo, start_secs: float, stop_secs: float, target_rate: int) -> np.ndarray:
    """Mono audio of [start, stop) seconds at ``target_rate``, exactly round((stop-start)*rate) long.

    Reads a small margin on both sides so the resampler's filter has context at the edges.
    """
    margin = 0.05
    first = max(0, int(math.floor((start_secs - margin) * info.sample_rate)))
    last = min(info.frames, int(math.ceil((stop_secs + margin) * info.sample_rate)))
    block, _ = sf.read(info.path, start=first, stop=last, dtype="float32", always_2d=True)
    audio = resample(_mono(block), info.sample_rate, target_rate)
    offset = int(round((start_secs - first / info.sample_rate) * target_rate))
    length = int(round((stop_secs - start_secs) * target_rate))
    segment = audio[offset:offset + length]
    if len(segment) < length:
        segment = np.pad(segment, (0, length - len(segment)))
    return np.nan_to_num(segment, nan=0.0, posinf=0.0, neginf=0.0)
