"""The prepare pipeline (Apache Beam): audio folder -> ddsp TFRecord shards.

list files -> inspect (stream-read, reject with a reason) -> cut into chunks -> reshuffle so
chunks spread over workers -> per chunk: read + resample, f0 + loudness, 4 s windows -> shards per
split. The split is decided per source file before windowing, so no file lands in both splits.

Windows start every ``hop_secs`` of a file and are never padded past its end (as ddsp's own
prepare_tfrecord does). Chunk ``c`` owns the windows whose start falls inside it and reads audio up
to its last window's end plus a margin, so chunking changes no window.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.audio.features import VOICED_THRESHOLD, compute_loudness_db, estimate_f0
from pipeline.audio.io import AudioInfo, AudioRejected, inspect_audio, list_audio_files, read_segment, resample
from pipeline.config import DDSP_FEATURE_SAMPLE_RATE, PrepareParams
from pipeline.dataset.tfrecord import SPLITS, DatasetSpec, encode_example, shard_path, shard_prefix
from pipeline.paths import PREPARE_REPORT
from pipeline.publish import staged_dir

LOG = logging.getLogger(__name__)
LOCAL_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"
REPORT_FILE = PREPARE_REPORT
_REJECTED = "rejected"
_COUNTER_NS = "prepare"
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
            info = inspect_audio(item.path, p.example_secs, p.silence_db)
        except AudioRejected as err:
            beam.metrics.Metrics.counter(_COUNTER_NS, f"rejected_{err.reason}").inc()
            yield beam.pvalue.TaggedOutput(_REJECTED, _rejection(item.source, err.reason, err.detail))
            return
        beam.metrics.Metrics.counter(_COUNTER_NS, "files_read").inc()
        n_windows = int(np.floor((info.seconds - p.example_secs) / p.hop_secs + 1e-9)) + 1
        per_chunk = max(1, int(round(p.chunk_secs / p.hop_secs)))
        for first in range(0, n_windows, per_chunk):
            yield Chunk(info, item.source, item.split, first, min(per_chunk, n_windows - first))


class AnalyseChunk(beam.DoFn):
    """Read a chunk, compute f0 + loudness once over it, and emit its windows as (split, record)."""

    def __init__(self, params: PrepareParams):
        self.params = params

    def process(self, chunk: Chunk):
        try:
            yield from self._windows(chunk)
        except AudioRejected as err:
            beam.metrics.Metrics.counter(_COUNTER_NS, f"rejected_{err.reason}").inc()
            yield beam.pvalue.TaggedOutput(_REJECTED, _rejection(chunk.source, err.reason, err.detail))

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
        if not all(np.isfinite(v).all() for v in features.values()):
            raise AudioRejected(chunk.source, "non_finite_features", f"feature analysis of {start:.1f}-{stop:.1f} s gave NaN/inf")
        voiced = 0
        for j in range(chunk.first_window, chunk.first_window + chunk.n_windows):
            offset = window_start(j)
            s0 = int(round((offset - seg_start) * sr))
            frame0 = int(round((offset - seg_start) * fr))
            window_audio = audio[s0:s0 + p.n_samples]
            example = {k: v[frame0:frame0 + p.n_frames] for k, v in features.items()}
            example["audio"] = window_audio
            example["audio_16k"] = _audio_16k(window_audio, sr, p.example_secs)
            voiced += int((example["f0_confidence"] >= VOICED_THRESHOLD).sum())
            beam.metrics.Metrics.counter(_COUNTER_NS, f"examples_{chunk.split}").inc()
            yield chunk.split, ((chunk.source, offset), encode_example(example, chunk.source, offset))
        # progress: one line per chunk on the worker's stderr, which Beam's local runner passes through
        print(f"prepare: {chunk.source} [{start:.0f}-{stop:.0f} s] -> {chunk.n_windows} {chunk.split} examples",
              file=sys.stderr, flush=True)
        yield beam.pvalue.TaggedOutput("stats", {
            "source": chunk.source, "split": chunk.split, "examples": chunk.n_windows,
            "seconds": stop - start, "voiced_frames": voiced, "frames": chunk.n_windows * p.n_frames,
            "file_seconds": chunk.info.seconds, "first_window": chunk.first_window,
        })


def _audio_16k(audio: np.ndarray, sample_rate: int, example_secs: float) -> np.ndarray:
    length = int(round(example_secs * DDSP_FEATURE_SAMPLE_RATE))
    out = resample(audio, sample_rate, DDSP_FEATURE_SAMPLE_RATE)[:length]
    return np.pad(out, (0, length - len(out))) if len(out) < length else out


def shard_of(key: tuple[str, float], num_shards: int) -> int:
    """The shard of the window at ``offset`` seconds into ``source``: a stable hash, not arrival order."""
    source, offset = key
    digest = hashlib.sha256(f"{source}:{offset:.6f}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


class WriteShard(beam.DoFn):
    """Write one shard, its records sorted by (source, offset).

    Beam's WriteToTFRecord deals records to shards in arrival order, which differs from run to run;
    then the training order, the evaluated examples and everything downstream differed too. Here
    the same audio gives byte-identical shards on any runner and worker count. A shard is sorted in
    memory on one worker: raise ``prepare.num_shards`` for very large corpora.
    """

    def __init__(self, prefix: str, num_shards: int):
        self.prefix, self.num_shards = prefix, num_shards

    def process(self, shard_records):
        import tensorflow as tf  # deferred, as in encode_example

        shard, records = shard_records
        with tf.io.TFRecordWriter(shard_path(self.prefix, shard, self.num_shards)) as writer:
            for _key, record in sorted(records, key=lambda keyed: keyed[0]):
                writer.write(record)


def pipeline_options(params: PrepareParams) -> PipelineOptions:
    beam_params = params.beam
    if beam_params.runner == "local":
        args = [f"--runner={LOCAL_RUNNER}", f"--direct_running_mode={beam_params.mode}",
                f"--direct_num_workers={beam_params.num_workers}", "--default_sdk_harness_log_level=WARNING"]
    else:
        args = [f"--runner={beam_params.runner}"]
    return PipelineOptions(args + list(beam_params.options))


def build(pipeline: beam.Pipeline, files: list[SourceFile], params: PrepareParams, out_dir: Path) -> None:
    inspected = (pipeline | "ListFiles" >> beam.Create(files)
                 | "Inspect" >> beam.ParDo(InspectFile(params)).with_outputs(_REJECTED, main="chunks"))
    analysed = (inspected.chunks | "SpreadChunks" >> beam.Reshuffle()
                | "Analyse" >> beam.ParDo(AnalyseChunk(params)).with_outputs(_REJECTED, "stats", main="examples"))
    by_split = analysed.examples | "BySplit" >> beam.Partition(lambda kv, _n: SPLITS.index(kv[0]), len(SPLITS))
    for split, records in zip(SPLITS, by_split):
        _ = (records | f"Records_{split}" >> beam.Values()
             | f"Shard_{split}" >> beam.Map(lambda keyed, n: (shard_of(keyed[0], n), keyed), params.num_shards)
             | f"Group_{split}" >> beam.GroupByKey()
             | f"Write_{split}" >> beam.ParDo(WriteShard(shard_prefix(out_dir, split), params.num_shards)))
    _write_jsonl((inspected[_REJECTED], analysed[_REJECTED]), out_dir / "rejected", "Rejected")
    _write_jsonl((analysed.stats,), out_dir / "chunks", "Stats")


def _write_jsonl(pcolls, prefix: Path, label: str) -> None:
    _ = (pcolls | f"Flatten{label}" >> beam.Flatten()
         | f"Json{label}" >> beam.Map(json.dumps, sort_keys=True)
         | f"Write{label}" >> beam.io.WriteToText(str(prefix), file_name_suffix=".jsonl", shard_name_template=""))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


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


def run_prepare(params: PrepareParams, audio_dir: Path, out_dir: Path, seed: int) -> dict:
    """Run the Beam pipeline; publish ``out_dir`` atomically; return the stats + rejection report."""
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    files = discover(audio_dir, params.eval_fraction, seed)
    LOG.info("prepare: %d audio files under %s", len(files), audio_dir)
    print(f"prepare: {len(files)} audio files under {audio_dir}, runner {params.beam.runner} "
          f"({params.beam.mode}, {params.beam.num_workers} workers)", file=sys.stderr, flush=True)
    with staged_dir(out_dir) as staging:
        with beam.Pipeline(options=pipeline_options(params)) as pipeline:
            build(pipeline, files, params, staging)
        counters = {c.key.metric.name: c.committed for c in pipeline.result.metrics().query()["counters"]}
        rejected = sorted(_read_jsonl(staging / "rejected.jsonl"), key=lambda r: (r["source"], r["reason"]))
        chunk_stats = _read_jsonl(staging / "chunks.jsonl")
        stats = summarise(files, chunk_stats, rejected)
        _check_usable(stats, rejected, params.eval_fraction)
        _fill_empty_shards(staging, params.num_shards)
        _check_written(staging, stats)
        (staging / "chunks.jsonl").unlink()
        (staging / "rejected.jsonl").unlink()
        DatasetSpec(params.sample_rate, params.frame_rate, params.example_secs, params.f0.method).save(staging)
        report = {"stats": stats, "rejected": rejected, "beam_counters": counters,
                  "splits": {f.source: f.split for f in files}}
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
