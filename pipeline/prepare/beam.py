"""The prepare pipeline (Apache Beam): audio folder -> ddsp TFRecord shards.

list files -> inspect (stream-read, reject with a reason) -> cut into chunks -> spread the chunks
over workers -> per chunk: read + resample, f0 + loudness, 4 s windows, written as one piece file per
shard -> per shard: its pieces concatenated. The split is decided per source file before windowing, so
no file lands in both splits.

One graph for every runner (the local FnApiRunner, DaskRunner, Flink, ...), built only from Create,
ParDo/Map/FlatMap, Flatten and GroupByKey, the transforms every runner translates the same way:
every step emits tagged records ``(kind, payload)`` in one stream (no ``with_outputs``: DaskRunner
merges tagged outputs into the main one), the counts come from those records (no Beam counters:
DaskRunner has no metrics), and files are written by keyed DoFns after a GroupByKey (no Beam file
sinks: DaskRunner has none): one DoFn per shard, whose key is already the window's hash, and one
for the records of the report. Only small records travel through the runner; the examples travel
as piece files in the output folder. DaskRunner computes only the graph's last transform, so the report
writer is last and depends on every branch. GroupByKey keys are integers (derived from sha256),
whose hash is the same in every worker process.

Windows start every ``hop_secs`` of a file until they cover it; the last (or, for a file shorter
than one example, the only) window is zero-padded once to the example length, with loudness at
ddsp's floor and f0 confidence 0 over the padding. (ddsp's own prepare_tfrecord pads with runs of
silent windows instead; dropping the tail would throw short files away.) Chunk ``c`` owns the
windows whose start falls inside it and reads audio up to its last window's end plus a margin, so
chunking changes no window.

Every file gets one decision in ``report.json`` (``decisions``) and on the console: used (with
warnings such as ``clipped``) or rejected with a reason. A file whose voiced share (f0 confidence
at least 0.5, over its real frames) is below ``prepare.min_voiced_fraction`` is rejected
``unpitched`` after analysis: its windows are dropped before the shards are written. So is every
window of a file one of whose chunks fails analysis (``non_finite_features``): a file is used whole
or not at all.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio.features import VOICED_THRESHOLD, compute_loudness_db, estimate_f0, loudness_floor_db
from pipeline.audio.io import AudioInfo, AudioRejected, inspect_audio, list_audio_files, read_segment, resample
from pipeline.config import DDSP_FEATURE_SAMPLE_RATE, PrepareParams
from pipeline.dataset.tfrecord import SPLITS, DatasetSpec, encode_example, shard_path, shard_prefix
from pipeline.paths import PREPARE_REPORT
from pipeline.publish import staged_dir


def _not_apitools(record: logging.LogRecord) -> bool:
    return "apitools not found" not in record.getMessage()


# Importing Beam warns through the root logger that its BigQuery client lacks the optional apitools
# (this pipeline reads no GCP source), once per process: a line of library noise on every prepare.
logging.getLogger().addFilter(_not_apitools)
import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.runner import PipelineState  # noqa: E402

logging.getLogger().removeFilter(_not_apitools)

LOG = logging.getLogger(__name__)
LOCAL_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
REPORT_FILE = PREPARE_REPORT
# the kinds of the tagged records (kind, payload) every step emits into one stream
_REJECTED = "rejected"    # a rejection: {source, reason, detail}
_INSPECTED = "inspected"  # a file that passed inspection: its format and window count
_CHUNK = "chunk"          # a Chunk to analyse
_PIECE = "piece"          # one chunk's windows of one shard, in a piece file: (shard key, source, first window, path, count)
_STATS = "stats"          # one analysed chunk's counts, or {source, split, failed: reason} for one that failed
_DROP = "drop"            # (shard key, source): that shard leaves out the source's windows (unpitched, failed)
_SHARD = "shard"          # a written shard: {split, shard, examples}
_REPORT_KINDS = (_REJECTED, _INSPECTED, _STATS, _SHARD)  # what the report file keeps
RECORDS_FILE = "records.jsonl"  # the report's records, written by the graph's last step, read and removed here
PIECES_DIR = "pieces"  # the chunks' piece files, concatenated into the shards and removed here
_FEATURE_MARGIN_SECS = 0.25  # f0/loudness context around a chunk, so chunk edges match whole-file analysis


class PrepareFailed(RuntimeError):
    """The stage produced nothing usable; the message says why."""


@dataclass(frozen=True)
class SourceFile:
    path: str      # absolute, for reading
    source: str    # relative to the audio folder: the provenance recorded in every example
    split: str


@dataclass(frozen=True)
class Chunk:
    info: AudioInfo
    source: str
    split: str
    first_window: int
    n_windows: int
    total_windows: int  # of the whole file: the chunk holding the last one reads up to the file's end


def split_of(source: str, eval_fraction: float, seed: int) -> str:
    """Stable per-file split: adding files to a folder never moves the ones already there."""
    return "eval" if _unit_hash(source, seed) < eval_fraction else "train"


def _unit_hash(source: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(sources: list[str], eval_fraction: float, seed: int) -> dict[str, str]:
    """Hash split, except that with eval_fraction > 0 and >= 2 files each split gets at least one file."""
    splits = {s: split_of(s, eval_fraction, seed) for s in sources}
    if eval_fraction > 0 and len(sources) >= 2:
        by_hash = sorted(sources, key=lambda s: _unit_hash(s, seed))
        if "eval" not in splits.values():
            splits[by_hash[0]] = "eval"
        if "train" not in splits.values():
            splits[by_hash[-1]] = "train"
    return splits


def discover(audio_dir: str | Path, eval_fraction: float, seed: int) -> list[SourceFile]:
    root = Path(audio_dir)
    files = list_audio_files(root)
    sources = [f.relative_to(root).as_posix() for f in files]
    splits = assign_splits(sources, eval_fraction, seed)
    return [SourceFile(str(f.resolve()), s, splits[s]) for f, s in zip(files, sources)]


def _rejection(source: str, reason: str, detail: str) -> dict:
    return {"source": source, "reason": reason, "detail": detail}


class InspectFile(beam.DoFn):
    """Validate one file and cut it into chunks of whole windows."""

    def __init__(self, params: PrepareParams):
        self.params = params

    def process(self, item: SourceFile):
        p = self.params
        try:
            info = inspect_audio(item.path, p.min_secs, p.silence_db)
        except AudioRejected as err:
            # libsndfile's messages name the absolute path; the report names files as the folder does
            detail = err.detail.replace(item.path, item.source)
            yield _REJECTED, _rejection(item.source, err.reason, detail)
            return
        n_windows = window_count(info.seconds, p.example_secs, p.hop_secs)
        yield _INSPECTED, {
            "source": item.source, "seconds": round(info.seconds, 6), "sample_rate": info.sample_rate,
            "channels": info.channels, "format": info.format, "windows": n_windows,
            "padded_secs": round(max(0.0, (n_windows - 1) * p.hop_secs + p.example_secs - info.seconds), 6),
            "warnings": file_warnings(info, p.clipped_fraction)}
        per_chunk = max(1, int(round(p.chunk_secs / p.hop_secs)))
        for first in range(0, n_windows, per_chunk):
            yield _CHUNK, Chunk(info, item.source, item.split, first, min(per_chunk, n_windows - first), n_windows)


def window_count(seconds: float, example_secs: float, hop_secs: float) -> int:
    """Windows every ``hop_secs`` until the file is covered; a file of one example or less has one."""
    return 1 + max(0, int(np.ceil((seconds - example_secs) / hop_secs - 1e-9)))


def file_warnings(info: AudioInfo, clipped_fraction: float) -> list[dict]:
    """Warnings of a file that is used anyway (the report lists them with the decision)."""
    warnings = []
    if info.clipped_share >= clipped_fraction:
        warnings.append({"warning": "clipped", "detail": f"{100 * info.clipped_share:.2f} % of samples at full "
                         f"scale (prepare.clipped_fraction = {clipped_fraction:g})"})
    return warnings


class AnalyseChunk(beam.DoFn):
    """Read a chunk, compute f0 + loudness once over it, and write its windows as one piece file per shard
    they hash to (emitting a ``piece`` record each); other records pass through.

    The examples (half a megabyte each) go to files here rather than through the runner: a GroupByKey
    would encode, buffer and copy every one of them on its way to the shard writer, which then only
    concatenates the pieces. A piece is a valid TFRecord file, so the shard is the pieces' bytes in order.
    """

    def __init__(self, params: PrepareParams, folder: str):
        self.params, self.folder = params, folder

    def process(self, record):
        kind, chunk = record
        if kind != _CHUNK:
            yield record
            return
        try:
            yield from self._windows(chunk)
        except AudioRejected as err:
            yield _REJECTED, _rejection(chunk.source, err.reason, err.detail)
            # the file's verdict drops the windows its other chunks wrote
            yield _STATS, {"source": chunk.source, "split": chunk.split, "failed": err.reason}

    def _windows(self, chunk: Chunk):
        p = self.params
        sr, fr = p.sample_rate, p.frame_rate
        samples_per_frame = sr // fr
        window_start = lambda j: j * p.hop_secs  # noqa: E731  (seconds into the file)
        start = window_start(chunk.first_window)
        stop = window_start(chunk.first_window + chunk.n_windows - 1) + p.example_secs
        margin = round(_FEATURE_MARGIN_SECS * fr) / fr  # whole frames keep windows on the frame grid
        margin_left = min(margin, start)
        margin_right = min(margin, max(0.0, chunk.info.seconds - stop))
        seg_start = start - margin_left
        audio = read_segment(chunk.info, seg_start, stop + margin_right, sr)
        n_seg_frames = int(np.ceil(len(audio) / samples_per_frame))
        f0_hz, f0_conf = estimate_f0(audio, sr, fr, n_seg_frames, p.f0.method, p.f0.fmin_hz, p.f0.fmax_hz)
        loudness = compute_loudness_db(audio, sr, fr, n_seg_frames, p.loudness_n_fft)
        features = {"f0_hz": f0_hz, "f0_confidence": f0_conf, "loudness_db": loudness}
        real_frames = int(np.ceil(round((chunk.info.seconds - seg_start) * fr, 6)))  # frames before the file's end
        if real_frames < n_seg_frames:  # the padding past the end: silent, unvoiced, pitch held
            f0_hz[real_frames:] = f0_hz[max(0, real_frames - 1)]
            f0_conf[real_frames:] = 0.0
            loudness[real_frames:] = loudness_floor_db()
        if not all(np.isfinite(v).all() for v in features.values()):
            raise AudioRejected(chunk.source, "non_finite_features", f"feature analysis of {start:.1f}-{stop:.1f} s gave NaN/inf")
        # the file's own frames this chunk owns (no overlap, no padding): the voiced share decides "unpitched"
        last_chunk = chunk.first_window + chunk.n_windows == chunk.total_windows
        owned_stop = chunk.info.seconds if last_chunk else window_start(chunk.first_window + chunk.n_windows)
        own0, own1 = int(round((start - seg_start) * fr)), min(real_frames, int(round((owned_stop - seg_start) * fr)))
        file_voiced = int((f0_conf[own0:own1] >= VOICED_THRESHOLD).sum())
        voiced = 0
        pieces: dict[int, list[bytes]] = {}
        for j in range(chunk.first_window, chunk.first_window + chunk.n_windows):
            offset = window_start(j)
            s0 = int(round((offset - seg_start) * sr))
            frame0 = int(round((offset - seg_start) * fr))
            window_audio = audio[s0:s0 + p.n_samples]
            example = {k: v[frame0:frame0 + p.n_frames] for k, v in features.items()}
            example["audio"] = window_audio
            example["audio_16k"] = _audio_16k(window_audio, sr, p.example_secs)
            voiced += int((example["f0_confidence"] >= VOICED_THRESHOLD).sum())
            pieces.setdefault(shard_of((chunk.source, offset), p.num_shards), []).append(
                encode_example(example, chunk.source, offset))
        for shard, examples in sorted(pieces.items()):
            key = _shard_key(chunk.split, shard, p.num_shards)
            path = write_piece(Path(self.folder) / PIECES_DIR, key, chunk.source, chunk.first_window, examples)
            yield _PIECE, (key, chunk.source, chunk.first_window, path, len(examples))
        # progress: one line per chunk on the worker's stderr (Beam's local runner passes it through; a dask
        # worker's stderr is its own log)
        print(f"prepare: {chunk.source} [{start:.0f}-{stop:.0f} s] -> {chunk.n_windows} {chunk.split} examples",
              file=sys.stderr, flush=True)
        yield _STATS, {
            "source": chunk.source, "split": chunk.split, "examples": chunk.n_windows,
            "seconds": stop - start, "voiced_frames": voiced, "frames": chunk.n_windows * p.n_frames,
            "file_seconds": chunk.info.seconds, "first_window": chunk.first_window,
            "file_voiced_frames": file_voiced, "file_frames": max(0, own1 - own0),
        }


def _audio_16k(audio: np.ndarray, sample_rate: int, example_secs: float) -> np.ndarray:
    length = int(round(example_secs * DDSP_FEATURE_SAMPLE_RATE))
    out = resample(audio, sample_rate, DDSP_FEATURE_SAMPLE_RATE)[:length]
    return np.pad(out, (0, length - len(out))) if len(out) < length else out


def write_piece(folder: Path, shard_key: int, source: str, first_window: int, examples: list[bytes]) -> str:
    """One chunk's examples of one shard as a TFRecord file, published by a rename (a retried task rewrites
    the same bytes; a killed one leaves no piece that looks complete)."""
    import tensorflow as tf  # deferred, as in encode_example

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{shard_key}-{_int_key(source, first_window):016x}.tfrecord"
    partial = path.with_name(path.name + ".partial")
    with tf.io.TFRecordWriter(str(partial)) as writer:
        for example in examples:
            writer.write(example)
    partial.replace(path)
    return str(path)


def shard_of(key: tuple[str, float], num_shards: int) -> int:
    """The shard of the window at ``offset`` seconds into ``source``: a stable hash, not arrival order."""
    source, offset = key
    digest = hashlib.sha256(f"{source}:{offset:.6f}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def _int_key(*parts) -> int:
    """A GroupByKey key: an int (Python's str hash differs per process; dask.bag partitions by hash)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def _shard_key(split: str, shard: int, num_shards: int) -> int:
    return SPLITS.index(split) * num_shards + shard


class WriteShard(beam.DoFn):
    """Write one shard: its pieces concatenated in (source, first window) order, so its records run in
    (source, offset) order, leaving out the pieces of dropped sources.

    Beam's WriteToTFRecord deals records to shards in arrival order, which differs from run to run;
    then the training order, the evaluated examples and everything downstream differed too. Here
    the same audio gives byte-identical shards on any runner and worker count, and the bytes are
    those of one TFRecordWriter writing the records in that order. Emits one ``shard`` record with
    the count written. The pieces are on a filesystem every worker sees, as the shards are.
    """

    def __init__(self, folder: str, num_shards: int):
        self.folder, self.num_shards = folder, num_shards

    def process(self, key_values):
        key, values = key_values[0], list(key_values[1])
        split, shard = SPLITS[key // self.num_shards], key % self.num_shards
        dropped = {source for tag, source, _ in values if tag == _DROP}
        pieces = sorted((piece_key, piece) for tag, piece_key, piece in values
                        if tag == _PIECE and piece_key[0] not in dropped)
        if pieces:  # a shard with none stays an empty file (_fill_empty_shards)
            path = shard_path(shard_prefix(Path(self.folder), split), shard, self.num_shards)
            with open(path, "wb") as out:
                for _piece_key, (piece_path, _count) in pieces:
                    with open(piece_path, "rb") as piece:
                        shutil.copyfileobj(piece, out)
        yield _SHARD, {"split": split, "shard": shard, "examples": sum(count for _, (_, count) in pieces)}


class WriteRecords(beam.DoFn):
    """Write the report's records (one JSON line each, sorted: the file is the same on every runner)."""

    def __init__(self, path: str):
        self.path = path

    def process(self, key_values):
        _key, records = key_values
        lines = sorted(json.dumps([kind, payload], sort_keys=True, ensure_ascii=False) for kind, payload in records)
        Path(self.path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return []


def pipeline_options(params: PrepareParams, dask_address: str | None = None, n_files: int = 1) -> PipelineOptions:
    """Beam flags for ``prepare.beam``; ``dask_address`` is the scheduler the dask runner connects to (the
    configured one, or the LocalCluster's that ``run_prepare`` started)."""
    beam_params = params.beam
    if beam_params.runner == "local":
        args = [f"--runner={LOCAL_RUNNER}", f"--direct_running_mode={beam_params.mode}",
                f"--direct_num_workers={beam_params.num_workers}", "--default_sdk_harness_log_level=WARNING"]
    elif beam_params.runner == "dask":
        dask = beam_params.dask
        address = dask_address or dask.address
        if address is None:
            raise ValueError("the dask runner needs a scheduler: prepare.beam.dask.address or a started LocalCluster")
        npartitions = dask.npartitions or max(1, min(n_files, 1024))
        # Beam parses a runner's flags only once the module defining its options is imported
        import apache_beam.runners.dask.dask_runner  # noqa: F401
        args = [f"--runner={DASK_RUNNER}", f"--dask_client_address={address}",
                f"--dask_connection_timeout={max(1, int(round(dask.connect_timeout_secs)))}",
                f"--dask_npartitions={npartitions}"]
    else:
        args = [f"--runner={beam_params.runner}"]
    return PipelineOptions(args + list(beam_params.options))


def _file_verdict(source_stats, min_voiced_fraction: float, num_shards: int):
    """A file's analysed chunks -> its stats; or a ``drop`` marker for every shard of its split, when a
    chunk failed analysis (rejected there) or the voiced share is below the minimum (DC, noise, clicks:
    an ``unpitched`` rejection)."""
    _key, rows = source_stats
    rows = list(rows)
    source, split = rows[0]["source"], rows[0]["split"]
    if any("failed" in r for r in rows):
        for shard in range(num_shards):
            yield _DROP, (_shard_key(split, shard, num_shards), source)
        return
    voiced, frames = sum(r["file_voiced_frames"] for r in rows), sum(r["file_frames"] for r in rows)
    share = voiced / frames if frames else 0.0
    if share >= min_voiced_fraction:
        for row in rows:
            yield _STATS, row
        return
    yield _REJECTED, _rejection(source, "unpitched", f"voiced share {share:.3f} of {frames} frames is below "
                                f"prepare.min_voiced_fraction = {min_voiced_fraction:g} (no pitch: DC, noise or clicks?)")
    for shard in range(num_shards):
        yield _DROP, (_shard_key(split, shard, num_shards), source)


def _spread_key(record) -> int:
    kind, payload = record
    if kind == _CHUNK:
        return _int_key(payload.source, payload.first_window)
    return _int_key(kind, payload["source"])


def _of_kind(record, *kinds):
    return record[0] in kinds


def build(pipeline: beam.Pipeline, files: list[SourceFile], params: PrepareParams, out_dir: Path) -> None:
    """The graph: one stream of tagged records; files written by keyed DoFns; the report writer last."""
    n = params.num_shards
    records = (pipeline | "ListFiles" >> beam.Create(files)
               | "Inspect" >> beam.ParDo(InspectFile(params))
               # a keyed GroupByKey rather than Reshuffle (a no-op on DaskRunner): chunks of one file spread too
               | "KeyChunks" >> beam.Map(lambda r: (_spread_key(r), r))
               | "SpreadChunks" >> beam.GroupByKey()
               | "Unkey" >> beam.FlatMap(lambda key_values: key_values[1])
               | "Analyse" >> beam.ParDo(AnalyseChunk(params, str(out_dir))))
    verdicts = (records | "Stats" >> beam.Filter(_of_kind, _STATS)
                | "KeyStats" >> beam.Map(lambda r: (_int_key(r[1]["source"]), r[1]))
                | "StatsPerFile" >> beam.GroupByKey()
                | "Verdicts" >> beam.FlatMap(_file_verdict, params.min_voiced_fraction, n))
    pieces = (records | "Pieces" >> beam.Filter(_of_kind, _PIECE)
              | "KeyPieces" >> beam.Map(lambda r: (r[1][0], (_PIECE, (r[1][1], r[1][2]), (r[1][3], r[1][4])))))
    drops = (verdicts | "Drops" >> beam.Filter(_of_kind, _DROP)
             | "KeyDrops" >> beam.Map(lambda r: (r[1][0], (_DROP, r[1][1], None))))
    shards = ((pieces, drops) | "ShardInputs" >> beam.Flatten()
              | "GroupShards" >> beam.GroupByKey()
              | "WriteShards" >> beam.ParDo(WriteShard(str(out_dir), n)))
    kept = [records | "Decisions" >> beam.Filter(_of_kind, _REJECTED, _INSPECTED),
            verdicts | "Verdict" >> beam.Filter(_of_kind, _REJECTED, _STATS), shards]
    # last, and downstream of every branch: DaskRunner computes the graph's last transform (and what it needs)
    _ = (kept | "ReportRecords" >> beam.Flatten()
         | "OneKey" >> beam.Map(lambda r: (0, r))
         | "AllRecords" >> beam.GroupByKey()
         | "WriteRecords" >> beam.ParDo(WriteRecords(str(out_dir / RECORDS_FILE))))


def read_records(path: Path) -> dict[str, list]:
    """The report records the graph wrote, by kind."""
    out: dict[str, list] = {kind: [] for kind in _REPORT_KINDS}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                kind, payload = json.loads(line)
                out[kind].append(payload)
    return out


def counts(records: dict[str, list]) -> dict[str, int]:
    """What Beam's counters used to say, from the records: files read, rejections by reason, examples written."""
    out = {"files_read": len(records[_INSPECTED])}
    for r in records[_REJECTED]:
        out[f"rejected_{r['reason']}"] = out.get(f"rejected_{r['reason']}", 0) + 1
    for split in SPLITS:
        out[f"examples_{split}"] = sum(s["examples"] for s in records[_SHARD] if s["split"] == split)
    return dict(sorted(out.items()))


def summarise(files: list[SourceFile], chunk_stats: list[dict], rejected: list[dict]) -> dict:
    """Stats for DVC metrics and MLflow: counts per split, seconds, voiced fraction."""
    rejected_sources = {r["source"] for r in rejected}
    used = {s["source"]: s for s in chunk_stats}
    stats = {
        "files_found": len(files),
        "files_rejected": len(rejected_sources),
        "files_used": len(set(used) - rejected_sources),
        "rejected_by_reason": {},
    }
    for r in rejected:
        stats["rejected_by_reason"][r["reason"]] = stats["rejected_by_reason"].get(r["reason"], 0) + 1
    for split in SPLITS:
        rows = [s for s in chunk_stats if s["split"] == split]
        frames = sum(s["frames"] for s in rows)
        stats[f"examples_{split}"] = sum(s["examples"] for s in rows)
        stats[f"files_{split}"] = len({s["source"] for s in rows})
        stats[f"audio_secs_{split}"] = round(sum({s["source"]: s["file_seconds"] for s in rows}.values()), 3)
        stats[f"voiced_fraction_{split}"] = round(sum(s["voiced_frames"] for s in rows) / frames, 4) if frames else 0.0
    return stats


def decide(files: list[SourceFile], inspected: list[dict], chunk_stats: list[dict], rejected: list[dict]) -> list[dict]:
    """One decision per file found, in file order: ``used`` (examples, split, warnings) or ``rejected``
    (the first reason; a file rejected by analysis after inspection passed lists every reason)."""
    info = {i["source"]: i for i in inspected}
    reasons: dict[str, list[dict]] = {}
    for r in rejected:
        reasons.setdefault(r["source"], []).append(r)
    examples: dict[str, int] = {}
    for s in chunk_stats:
        examples[s["source"]] = examples.get(s["source"], 0) + s["examples"]
    out = []
    for f in files:
        row = {"source": f.source, "split": f.split, **{k: v for k, v in info.get(f.source, {}).items() if k != "source"}}
        row.setdefault("warnings", [])
        if f.source in reasons:
            first = reasons[f.source][0]
            row.update(decision="rejected", reason=first["reason"], detail="; ".join(r["detail"] for r in reasons[f.source]))
        else:
            padded = row.get("padded_secs", 0.0)
            row.update(decision="used", reason="ok", examples=examples.get(f.source, 0),
                       detail=f"{row.get('seconds', 0):.2f} s, {row.get('sample_rate')} Hz, {row.get('channels')} ch "
                              f"({row.get('format')}) -> {examples.get(f.source, 0)} {f.split} examples"
                              + (f", last padded {padded:.2f} s" if padded > 0 else ""))
        out.append(row)
    return out


def describe(decision: dict) -> str:
    """The console line of one decision."""
    warnings = "".join(f"; warning {w['warning']}: {w['detail']}" for w in decision["warnings"])
    if decision["decision"] == "used":
        return f"prepare: used {decision['source']}: {decision['detail']}{warnings}"
    return f"prepare: rejected {decision['source']}: {decision['reason']} ({decision['detail']})"


def _check_usable(stats: dict, rejected: list[dict], eval_fraction: float) -> None:
    if stats["examples_train"] + stats["examples_eval"] == 0:
        reasons = "; ".join(f"{r['source']}: {r['reason']} ({r['detail']})" for r in rejected[:10]) or "no audio files found"
        raise PrepareFailed(f"prepare produced zero usable examples from {stats['files_found']} files: {reasons}")
    if eval_fraction > 0 and stats["examples_eval"] == 0:
        raise PrepareFailed("the eval split is empty: every eval file was rejected or there is only one usable file; "
                            "add audio files or set prepare.eval_fraction to 0")
    if stats["examples_train"] == 0:
        raise PrepareFailed("the train split is empty: add audio files or lower prepare.eval_fraction")


def _fill_empty_shards(folder: Path, num_shards: int) -> None:
    """Every shard file exists (a shard no window hashed to is an empty TFRecord file), as Beam's writer did."""
    for split in SPLITS:
        for shard in range(num_shards):
            Path(shard_path(shard_prefix(folder, split), shard, num_shards)).touch()


def _check_written(folder: Path, stats: dict) -> None:
    """Every example the pipeline emitted is in the shards (a runner must never drop records silently)."""
    import tensorflow as tf

    for split in SPLITS:
        written = sum(1 for path in sorted(folder.glob(f"{split}.tfrecord-*")) for _ in tf.data.TFRecordDataset(str(path)))
        if written != stats[f"examples_{split}"]:
            raise PrepareFailed(f"the {split} shards hold {written} examples but the pipeline emitted "
                                f"{stats[f'examples_{split}']}: the Beam runner lost records")


def _run(pipeline: beam.Pipeline, params: PrepareParams) -> None:
    """Run the graph to the end (within ``prepare.beam.dask.run_timeout_secs`` on dask), then let the
    runner's client go."""
    beam_params = params.beam
    result = pipeline.run()
    try:
        if beam_params.runner == "dask" and beam_params.dask.run_timeout_secs is not None:
            state = result.wait_until_finish(duration=int(beam_params.dask.run_timeout_secs * 1000))
        else:
            state = result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)  # DaskRunner's result holds its own dask Client
        if client is not None:
            client.close()
    if state not in (None, PipelineState.DONE):
        raise PrepareFailed(f"the Beam pipeline ended {state} on runner {beam_params.runner}")


@contextlib.contextmanager
def _scheduler(params: PrepareParams):
    """The dask scheduler address for runner dask (a LocalCluster started if none is set), else None."""
    if params.beam.runner != "dask":
        yield None
        return
    from pipeline.prepare.cluster import dask_scheduler  # dask is imported only when it runs

    with dask_scheduler(params.beam) as address:
        yield address


def run_prepare(params: PrepareParams, audio_dir: Path, out_dir: Path, seed: int) -> dict:
    """Run the Beam pipeline; publish ``out_dir`` atomically; return the stats + rejection report."""
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    files = discover(audio_dir, params.eval_fraction, seed)
    LOG.info("prepare: %d audio files under %s", len(files), audio_dir)
    beam_params = params.beam
    workers = f"{beam_params.num_workers} worker{'s' if beam_params.num_workers != 1 else ''}"
    where = (f"{beam_params.mode}, {workers}" if beam_params.runner == "local" else
             f"scheduler {beam_params.dask.address or f'LocalCluster of {workers}'}"
             if beam_params.runner == "dask" else "options " + " ".join(beam_params.options))
    print(f"prepare: {len(files)} audio files under {audio_dir}, runner {beam_params.runner} ({where})",
          file=sys.stderr, flush=True)
    with staged_dir(out_dir) as staging:
        with _scheduler(params) as dask_address:
            pipeline = beam.Pipeline(options=pipeline_options(params, dask_address, len(files)))
            build(pipeline, files, params, staging)
            _run(pipeline, params)
        records = read_records(staging / RECORDS_FILE)
        rejected = sorted(records[_REJECTED], key=lambda r: (r["source"], r["reason"]))
        chunk_stats = sorted(records[_STATS], key=lambda s: (s["source"], s["first_window"]))
        decisions = decide(files, records[_INSPECTED], chunk_stats, rejected)
        stats = summarise(files, chunk_stats, rejected)
        stats["files_with_warnings"] = sum(bool(d["warnings"]) for d in decisions if d["decision"] == "used")
        _check_usable(stats, rejected, params.eval_fraction)
        _fill_empty_shards(staging, params.num_shards)
        _check_written(staging, stats)
        (staging / RECORDS_FILE).unlink()
        shutil.rmtree(staging / PIECES_DIR, ignore_errors=True)
        DatasetSpec(params.sample_rate, params.frame_rate, params.example_secs, params.f0.method).save(staging)
        report = {"stats": stats, "decisions": decisions, "rejected": rejected, "counts": counts(records),
                  "splits": {f.source: f.split for f in files}}
        # ensure_ascii=False: file names read as they are on disk, not as \u escapes
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    return report
