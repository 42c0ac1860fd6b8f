"""Examples per second of our prepare stage against ddsp's own prepare_tfrecord, and worker scaling.

Run: ``python -m bench.prepare_throughput [--files 8 --secs 20 --f0 swift --repeats 2 --profile]``.

1. ours vs ddsp: both Beam pipelines on the same WAVs with the same f0 estimator and the same
   in-process runner (FnApiRunner, in_memory, 1 worker), in rotating order so load drift hits all
   alike. A third row runs ours with the Example encoder this benchmark proposes (FAST_ENCODE_NOTE).
   Each also runs on the first half of the files: the difference gives steady-state throughput.
2. scaling: ours with multi_processing at 1..N workers and in_memory (the modes params accept; multi_threading
   is refused since it lost examples here). Worker start-up (every worker imports Beam, TensorFlow and ddsp)
   dwarfs a small corpus, so the per-chunk progress lines the
   pipeline prints are timestamped: the chunk phase (first chunk done -> last chunk done) gives the
   throughput once workers are up.
3. runners: ours on the local runner (in_memory, 1 worker) against Beam's DaskRunner on a
   distributed.LocalCluster (127.0.0.1) of 1 and 2 worker processes, in the same rounds, as ratios against
   the local runner (the cluster's start-up is inside each run, as in the stage).
4. the import cost a worker pays before its first chunk, measured in a fresh interpreter.

Each section prints its figures as it finishes. ``--smoke``: the smallest setting (4 x 5 s, one round,
one worker, dask x1).

ddsp is patched in this process only (its Beam workers would not see the patch), so the ddsp
comparison is in-process. PATCH_NOTE says what the patch changes.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.common import machine, median, parse_args, render_bench_corpus, table, timed, write_results
from pipeline.audio.features import estimate_f0
from pipeline.compat import import_ddsp
from pipeline.config import BeamParams, DaskParams, F0Params, PrepareParams
from pipeline.dataset.tfrecord import FLOAT_FEATURES, encode_example
from pipeline.prepare import beam as ours_prepare

PATCH_NOTE = ("ddsp patched in-process: (1) prepare_tfrecord_lib._load_audio_as_array reads with "
              "pydub.AudioSegment.from_file(f, format='wav') (pydub's native WAV reader, no ffprobe); the rest "
              "of ddsp's function (set_channels(1), set_frame_rate, array conversion, pad_or_trim) is unchanged. "
              "(2) spectral_ops.compute_f0 (CREPE, not installable offline) -> pipeline.audio.features.estimate_f0 "
              "with the same method as ours, returning ddsp's frame count (ceil(n/hop), +1 for 'center'). "
              "(3) chunk_secs = file length, so ddsp windows no zero padding (its default pads to 20 s chunks).")
FAST_ENCODE_NOTE = ("'ours, fast encode' = ours with pipeline.dataset.tfrecord.encode_example replaced by "
                    "bench.prepare_throughput.encode_example_wire: the same tf.train.Example written straight in "
                    "protobuf wire format (one tobytes() per array) instead of through tf.train.FloatList, which "
                    "makes a Python float per sample.")
PROGRESS = re.compile(r"^prepare: .* -> (\d+) \w+ examples$")


# ---------------------------------------------------------------- the proposed encoder

def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_example_wire(features: dict[str, np.ndarray], source: str, offset_secs: float) -> bytes:
    """encode_example's tf.train.Example, serialised by hand: one memcpy per float array.

    Example{features=1: Features{feature=1: map entry{key=1, value=2: Feature{bytes_list=1 | float_list=2:
    {value=1, packed}}}}}.
    """
    def floats(values) -> bytes:
        return _field(2, _field(1, np.asarray(values, "<f4").tobytes()))

    entries = [(name, floats(features[name])) for name in FLOAT_FEATURES]
    entries += [("source", _field(1, _field(1, source.encode()))), ("offset_secs", floats([offset_secs]))]
    return _field(1, b"".join(_field(1, _field(1, key.encode()) + _field(2, value)) for key, value in entries))


def check_wire_encoder() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    example = {name: rng.standard_normal(n).astype(np.float32)
               for name, n in zip(FLOAT_FEATURES, (64000, 64000, 1000, 1000, 1000))}
    parse = tf.train.Example.FromString
    if parse(encode_example_wire(example, "a/b.wav", 3.0)) != parse(encode_example(example, "a/b.wav", 3.0)):
        raise AssertionError("encode_example_wire does not reproduce encode_example")


@contextlib.contextmanager
def fast_encode():
    # pipeline.prepare imported the name, so that is the binding to replace
    saved = ours_prepare.encode_example
    ours_prepare.encode_example = encode_example_wire
    try:
        yield
    finally:
        ours_prepare.encode_example = saved


# ---------------------------------------------------------------- the pipelines

def count_records(paths) -> int:
    import tensorflow as tf

    return sum(1 for _ in tf.data.TFRecordDataset(sorted(map(str, paths))))


def beam_flags(mode: str, workers: int) -> list[str]:
    """The flags pipeline.prepare.beam.pipeline_options builds for runner 'local': ddsp gets the same."""
    return [f"--runner={ours_prepare.LOCAL_RUNNER}", f"--direct_running_mode={mode}",
            f"--direct_num_workers={workers}"]


def prepare_params(f0: str, mode: str = "in_memory", workers: int = 1, runner: str = "local") -> PrepareParams:
    dask = DaskParams(connect_timeout_secs=120, run_timeout_secs=3600)  # a LocalCluster of `workers` processes
    return PrepareParams(sample_rate=16000, frame_rate=250, example_secs=4.0, hop_secs=1.0, eval_fraction=0.2,
                         num_shards=4, f0=F0Params(method=f0),
                         beam=BeamParams(runner=runner, mode=mode, num_workers=workers, dask=dask))


@contextlib.contextmanager
def ddsp_patched(f0: F0Params):
    import_ddsp()
    from ddsp.training.data_preparation import prepare_tfrecord_lib as lib

    spectral_ops, tf, pydub = lib.spectral_ops, lib.tf, lib.pydub

    def load_wav_as_array(audio_path, sample_rate):
        # ddsp's _load_audio_as_array with one change: format='wav', so pydub needs no ffprobe
        with tf.io.gfile.GFile(audio_path, "rb") as f:
            audio_segment = pydub.AudioSegment.from_file(f, format="wav").set_channels(1)
            expected_len = int(audio_segment.duration_seconds * sample_rate)
            audio_segment = audio_segment.set_frame_rate(sample_rate)
            sample_arr = audio_segment.get_array_of_samples()
            audio = np.array(sample_arr).astype(np.float32)
            audio = spectral_ops.pad_or_trim_to_expected_length(audio, expected_len)
        audio /= np.iinfo(sample_arr.typecode).max
        return audio

    def compute_f0(audio, frame_rate, viterbi=True, padding="center"):
        del viterbi  # a CREPE option; our estimators decode on their own
        hop = spectral_ops.CREPE_SAMPLE_RATE // frame_rate
        n_frames = math.ceil(len(audio) / hop) + (padding == "center")
        return estimate_f0(np.asarray(audio), spectral_ops.CREPE_SAMPLE_RATE, frame_rate, n_frames,
                           f0.method, f0.fmin_hz, f0.fmax_hz)

    # prepare_tfrecord_lib looks both names up at call time, so rebinding the module attributes is enough
    saved = lib._load_audio_as_array, spectral_ops.compute_f0
    lib._load_audio_as_array, spectral_ops.compute_f0 = load_wav_as_array, compute_f0
    try:
        yield lib
    finally:
        lib._load_audio_as_array, spectral_ops.compute_f0 = saved


def run_ddsp(audio_dir: Path, out_dir: Path, params: PrepareParams) -> dict:
    import soundfile as sf

    wavs = sorted(audio_dir.glob("*.wav"))
    with ddsp_patched(params.f0) as lib:
        lib.prepare_tfrecord([str(w) for w in wavs], str(out_dir / "ddsp"), num_shards=params.num_shards,
                             sample_rate=params.sample_rate, frame_rate=params.frame_rate,
                             example_secs=round(params.example_secs), hop_secs=round(params.hop_secs),
                             eval_split_fraction=params.eval_fraction,
                             chunk_secs=max(sf.info(str(w)).duration for w in wavs),
                             pipeline_options=beam_flags(params.beam.mode, params.beam.num_workers))
    return {"examples": count_records(out_dir.glob("ddsp-*"))}


def run_ours(audio_dir: Path, out_dir: Path, params: PrepareParams) -> dict:
    """Records read back, and the pipeline's own count of examples it emitted: they must agree."""
    report = ours_prepare.run_prepare(params, audio_dir, out_dir / "ours", 0)
    stats = report["stats"]
    return {"examples": count_records((out_dir / "ours").glob("*.tfrecord-*")),
            "emitted": stats["examples_train"] + stats["examples_eval"]}


def run_ours_fast(audio_dir: Path, out_dir: Path, params: PrepareParams) -> dict:
    with fast_encode():
        return run_ours(audio_dir, out_dir, params)


# ---------------------------------------------------------------- measuring

@contextlib.contextmanager
def capture_stderr(log_path: Path, start: float):
    """fd 2 (inherited by Beam's workers) into a pipe; every line is timestamped on arrival, kept in
    the yielded list as (seconds since start, line) and appended to the log."""
    sys.stderr.flush()
    lines: list[tuple[float, str]] = []
    read_fd, write_fd = os.pipe()
    saved = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump():
        with os.fdopen(read_fd, errors="replace") as pipe, open(log_path, "a") as log:
            for line in pipe:
                lines.append((time.perf_counter() - start, line.rstrip("\n")))
                log.write(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe closes once every worker holding it has exited
        os.close(saved)
        reader.join(timeout=30)


def chunk_phase(lines: list[tuple[float, str]]) -> dict:
    """From the pipeline's per-chunk progress lines: when the first chunk was done and the rate after."""
    done = [(t, int(m.group(1))) for t, line in lines if (m := PROGRESS.match(line))]
    if not done:
        return {}
    out = {"first_chunk_secs": round(done[0][0], 2)}
    if len(done) > 1 and done[-1][0] > done[0][0]:
        out["chunk_phase_ex_per_s"] = sum(n for _, n in done[1:]) / (done[-1][0] - done[0][0])
    return out


class Bench:
    def __init__(self, work: Path, corpora: dict[str, Path], log: Path):
        self.work, self.corpora, self.log, self.n = work, corpora, log, 0

    def run(self, label: str, size: str, fn, params: PrepareParams) -> dict:
        out = self.work / f"out{self.n}"
        self.n += 1
        out.mkdir()
        start = time.perf_counter()
        with capture_stderr(self.log, start) as lines:
            counts = fn(self.corpora[size], out, params)
            secs = time.perf_counter() - start
        shutil.rmtree(out)
        examples, lost = counts["examples"], counts.get("emitted", counts["examples"]) - counts["examples"]
        print(f"  {label:<22} {size:<5} {secs:7.1f} s  {examples:4d} examples  {examples / secs:6.2f} ex/s"
              + (f"  LOST {lost} of {counts['emitted']} emitted examples" if lost else ""), flush=True)
        return {"label": label, "size": size, "secs": round(secs, 3), **counts, **chunk_phase(lines)}


def rounds(bench: Bench, configs: list[tuple], repeats: int, sizes) -> list[dict]:
    """Each round runs every configuration once per size; the order rotates, reversing every other
    round (ABBA for two), so no configuration always runs first."""
    runs = []
    for r in range(repeats):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for size in sizes:
            for label, fn, params in order[::-1] if r % 2 else order:
                runs.append(bench.run(label, size, fn, params))
    return runs


def summarise(runs: list[dict], label: str) -> dict:
    """Medians on the full corpus; steady state from the full-minus-half difference when measured."""
    pick = lambda size: [r for r in runs if r["label"] == label and r["size"] == size]  # noqa: E731
    full, half = pick("full"), pick("half")
    t_full, e_full = median(r["secs"] for r in full), round(median(r["examples"] for r in full))
    out = {"label": label, "examples": e_full, "wall_secs": round(t_full, 2),
           "wall_ex_per_s": median(r["examples"] / r["secs"] for r in full),
           "lost": sum(r.get("emitted", r["examples"]) - r["examples"] for r in full + half)}
    for key in ("first_chunk_secs", "chunk_phase_ex_per_s"):
        if all(key in r for r in full):
            out[key] = median(r[key] for r in full)
    if half:
        t_half, e_half = median(r["secs"] for r in half), round(median(r["examples"] for r in half))
        if t_full > t_half and e_full > e_half:
            steady = (e_full - e_half) / (t_full - t_half)
            out.update(steady_ex_per_s=steady, fixed_secs=round(t_full - e_full / steady, 2))
    return out


def paired_ratio(runs: list[dict], label: str, baseline: str, key=lambda r: r["examples"] / r["secs"]) -> float:
    """Median over rounds of label's rate / baseline's rate in the same round, so drift cancels."""
    mine = [key(r) for r in runs if r["label"] == label and r["size"] == "full"]
    base = [key(r) for r in runs if r["label"] == baseline and r["size"] == "full"]
    return median(a / b for a, b in zip(mine, base))


def ratio_or_na(a, b):
    return a / b if a and b else "n/a"


# ---------------------------------------------------------------- import cost of a fresh worker

IMPORT_PROBE = """
import json, time
marks = [("interpreter", time.perf_counter())]
import apache_beam.runners.worker.sdk_worker_main; marks.append(("apache_beam (SDK harness)", time.perf_counter()))
import pipeline.prepare.beam; marks.append(("pipeline.prepare.beam", time.perf_counter()))
import tensorflow; marks.append(("tensorflow", time.perf_counter()))
from pipeline.compat import import_ddsp; import_ddsp(); marks.append(("ddsp (+ tfp, tf_keras)", time.perf_counter()))
from pipeline.audio.features import _swift_detector; _swift_detector()
marks.append(("swift_f0 ONNX session", time.perf_counter()))
print(json.dumps([(name, t - marks[i][1]) for i, (name, t) in enumerate(marks[1:])]))
"""


def import_costs() -> dict[str, float]:
    secs, done = timed(subprocess.run, [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True,
                       check=True, cwd=Path(__file__).resolve().parents[1])
    steps = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"interpreter start": max(0.0, secs - sum(steps.values())), **steps}


# ---------------------------------------------------------------- profile

BUCKETS = {  # bucket -> functions (file suffix, name) whose cumulative time it takes; none nests in another
    "f0 (estimate_f0)": [("features.py", "estimate_f0")],
    "loudness (ddsp compute_loudness)": [("spectral_ops.py", "compute_loudness")],
    "read audio": [("io.py", "inspect_audio"), ("io.py", "read_segment"),
                   ("prepare_throughput.py", "load_wav_as_array")],
    "serialise tf.train.Example": [("tfrecord.py", "encode_example"),
                                   ("prepare_tfrecord_lib.py", "_float_dict_to_tfexample")],
    "chunk/window (ddsp tf.signal.frame, ours audio_16k)": [("prepare_tfrecord_lib.py", "_chunk_audio"),
                                                            ("beam.py", "_audio_16k")],
    # ours: the chunks' piece files, then their concatenation into shards
    "write TFRecords": [("tfrecordio.py", "write_record"), ("beam.py", "write_piece"), ("shutil.py", "copyfileobj")],
}


def buckets(stats: pstats.Stats, total: float) -> dict[str, float]:
    out = {name: 0.0 for name in BUCKETS}
    for (filename, _line, func), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():
        for name, targets in BUCKETS.items():
            if any(filename.endswith(suffix) and func == target for suffix, target in targets):
                out[name] += cumulative
    out["Beam runner, coders, other"] = max(0.0, total - sum(out.values()))
    return out


def top_functions(stats: pstats.Stats, n: int = 10) -> list[list]:
    items = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return [[f"{Path(f).name}:{line}({func})", tt, ct, nc] for (f, line, func), (_cc, nc, tt, ct, _) in items]


def run_profiles(bench: Bench, f0: str) -> dict:
    params = prepare_params(f0)
    results = {}
    for label, fn in (("ours", run_ours), ("ddsp", run_ddsp)):
        out = bench.work / f"profile_{label}"
        out.mkdir()
        profiler = cProfile.Profile()
        with capture_stderr(bench.log, time.perf_counter()):
            secs, _ = timed(profiler.runcall, fn, bench.corpora["full"], out, params)
        shutil.rmtree(out)
        stats = pstats.Stats(profiler, stream=io.StringIO())
        results[label] = {"secs": round(secs, 2), "buckets": buckets(stats, secs), "top": top_functions(stats)}
    return results


def print_profiles(profiles: dict) -> None:
    rows = [[name, *(p["buckets"][name] for p in profiles.values()),
             *(p["buckets"][name] / p["secs"] for p in profiles.values())] for name in profiles["ours"]["buckets"]]
    rows.append(["total (profiled wall)", *(p["secs"] for p in profiles.values()), 1.0, 1.0])
    print("\nprofile, one in-process run of each on the full corpus (cProfile; it inflates Python-heavy parts):")
    print(table(["bucket", "ours s", "ddsp s", "ours share", "ddsp share"], rows))
    for label, p in profiles.items():
        print(f"\ntop functions by own time, {label}:")
        print(table(["function", "own s", "cumulative s", "calls"], p["top"]))


# ---------------------------------------------------------------- main

def subset(root: Path, name: str, wavs: list[Path]) -> Path:
    folder = root / name
    folder.mkdir()
    for wav in wavs:
        (folder / wav.name).symlink_to(wav)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=8, help="files in the corpus (the half-size run uses half)")
    parser.add_argument("--secs", type=float, default=20.0, help="seconds per file")
    parser.add_argument("--f0", choices=("swift", "pyin"), default="swift")
    parser.add_argument("--repeats", type=int, default=2, help="rounds per measurement (median reported)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="multi_processing worker counts")
    parser.add_argument("--dask-workers", type=int, nargs="+", default=[1, 2],
                        help="worker processes of the dask LocalCluster, one configuration each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-runners", action="store_true", help="skip local vs dask")
    parser.add_argument("--profile", action="store_true", help="also cProfile one in-process run of each")
    args = parse_args(parser, {"files": 4, "secs": 5.0, "repeats": 1, "workers": [1], "dask_workers": [1]}, argv)
    if args.files < 4:
        parser.error("--files must be at least 4 (the half-size corpus needs 2 files for a train/eval split)")

    info = machine()
    work = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    log = work / "beam.log"
    results = {"settings": vars(args), "ddsp_patch": PATCH_NOTE, "fast_encode": FAST_ENCODE_NOTE}
    try:
        wavs = render_bench_corpus(work / "corpus", args.files, args.secs, args.seed)
        bench = Bench(work, {"full": work / "corpus", "half": subset(work, "half", wavs[: args.files // 2]),
                             "warm": subset(work, "warm", wavs[:2])}, log)
        print(f"corpus: {args.files} x {args.secs:g} s piano at 16 kHz, f0 = {args.f0}; Beam logs -> {log}")
        print_header(args, info)
        results["import_secs"] = import_costs()
        print_imports(results["import_secs"])
        print("warm-up (one-time costs in this process: TF and ddsp imports, ONNX session, numba compile):")
        check_wire_encoder()
        bench.run("ours", "warm", run_ours, prepare_params(args.f0))
        bench.run("ddsp", "warm", run_ddsp, prepare_params(args.f0))

        if not args.skip_compare:
            print("\nours vs ddsp (FnApiRunner in_memory, 1 worker):")
            params = prepare_params(args.f0)
            configs = [("ours", run_ours, params), ("ddsp", run_ddsp, params),
                       ("ours, fast encode", run_ours_fast, params)]
            runs = rounds(bench, configs, args.repeats, ("full", "half"))
            summaries = {label: summarise(runs, label) for label, _, _ in configs}
            ratios = {label: paired_ratio(runs, label, "ddsp") for label in summaries}
            results["compare"] = {"runs": runs, "summary": summaries, "wall_ratio_vs_ddsp": ratios}
            print_compare(results["compare"])

        if not args.skip_scaling:
            print("\nscaling, ours:")
            configs = [(f"multi_processing x{w}", run_ours, prepare_params(args.f0, "multi_processing", w))
                       for w in args.workers]
            configs += [("in_memory x1", run_ours, prepare_params(args.f0))]
            results["scaling"] = compare_configs(bench, configs, args.repeats)
            print_scaling(results["scaling"])

        if not args.skip_runners:
            print("\nrunners, ours: local vs dask:")
            configs = [("local in_memory x1", run_ours, prepare_params(args.f0))]
            configs += [(f"dask x{w}", run_ours, prepare_params(args.f0, workers=w, runner="dask"))
                        for w in args.dask_workers]
            results["runners"] = compare_configs(bench, configs, args.repeats)
            print_runners(results["runners"])

        if args.profile:
            print("\nprofiling ...", flush=True)
            results["profile"] = run_profiles(bench, args.f0)
            print_profiles(results["profile"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    path = write_results(f"prepare_throughput_{args.f0}_{args.files}files", results, info, args.smoke)
    print(f"\nresults -> {path}")


# ---------------------------------------------------------------- the figures, each section's as it finishes

def print_header(args, info: dict) -> None:
    print(f"\n=== prepare throughput: {args.files} x {args.secs:g} s, f0 {args.f0}, median of {args.repeats} rounds "
          f"(load average at start {info['load_average_start']}: another job may share the CPUs, so read the "
          f"ratios, not the seconds) ===")


def print_imports(imports: dict) -> None:
    print("\nimport cost of a fresh worker process, s: " + ", ".join(f"{k} {v:.1f}" for k, v in imports.items())
          + f" (total {sum(imports.values()):.1f})", flush=True)


def print_compare(compare: dict) -> None:
    s, ratios = compare["summary"], compare["wall_ratio_vs_ddsp"]
    ddsp_steady = s["ddsp"].get("steady_ex_per_s")
    rows = [[label, v["examples"], v["wall_secs"], v["wall_ex_per_s"], ratios[label],
             v.get("steady_ex_per_s", "n/a"), ratio_or_na(v.get("steady_ex_per_s"), ddsp_steady),
             v.get("fixed_secs", "n/a")] for label, v in s.items()]
    print("\nours vs ddsp prepare_tfrecord, same runner (in_memory, 1 worker); ratios against ddsp:")
    print(table(["pipeline", "examples", "wall s", "wall ex/s", "wall ratio", "steady ex/s", "steady ratio",
                 "fixed s"], rows))
    print("wall ratio: median over rounds of the paired ratio. steady = (full - half examples) / (full - half "
          "seconds), no set-up cost; fixed s = wall minus examples at the steady rate (noisy when small).")
    print(PATCH_NOTE)
    print(FAST_ENCODE_NOTE, flush=True)


def compare_configs(bench, configs, repeats: int) -> dict:
    """Full runs of every config in alternating rounds; summaries and paired wall ratios against the first."""
    runs = rounds(bench, configs, repeats, ("full",))
    baseline = configs[0][0]
    summaries = {label: summarise(runs, label) for label, _, _ in configs}
    ratios = {label: paired_ratio(runs, label, baseline) for label in summaries}
    return {"runs": runs, "summary": summaries, "baseline": baseline, "wall_ratios": ratios}


def _print_runs(runs: dict, title: str, first_column: str, note: str) -> None:
    """One table of runs with ratios against ``runs['baseline']``, its note, and a warning per lossy run."""
    base = runs["summary"][runs["baseline"]]
    rows = [[label, v["examples"], v["wall_secs"], v["wall_ex_per_s"], runs["wall_ratios"][label],
             v.get("first_chunk_secs", "n/a"), v.get("chunk_phase_ex_per_s", "n/a"),
             ratio_or_na(v.get("chunk_phase_ex_per_s"), base.get("chunk_phase_ex_per_s")), v["lost"]]
            for label, v in runs["summary"].items()]
    print(f"\n{title}; ratios against {runs['baseline']}:")
    print(table([first_column, "examples", "wall s", "wall ex/s", "wall ratio", "first chunk s",
                 "chunk-phase ex/s", "chunk-phase ratio", "lost"], rows))
    print(note)
    for label, v in runs["summary"].items():
        if v["lost"]:
            print(f"WARNING: {label} lost {v['lost']} examples between the Analyse step and the TFRecords.")
    sys.stdout.flush()


def print_scaling(sc: dict) -> None:
    _print_runs(sc, "ours, scaling", "pipeline",
                "first chunk s: from start until the first chunk's examples were done (set-up, worker start-up, one "
                "chunk). chunk-phase ex/s: examples after that first chunk / time to the last chunk. lost: examples "
                "the pipeline counted as emitted but missing from the TFRecords, summed over the runs.")


def print_runners(rn: dict) -> None:
    _print_runs(rn, "ours, runners", "runner",
                "dask xN: Beam's DaskRunner on a distributed.LocalCluster of N worker processes on 127.0.0.1, started "
                "and closed inside each run (as the stage does with prepare.beam.dask.address null); the shards are "
                "the same bytes as the local runner's (tests/test_prepare_dask.py).")

if __name__ == "__main__":
    main()
