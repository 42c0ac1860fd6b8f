"""Accuracy and speed of each f0 method against the MIDI ground truth of a rendered piano corpus.

Run: ``python -m bench.f0_accuracy [--files 6 --secs 20 --methods swift pyin]``.

Per method, over all frames of all files (frame i at i / frame_rate, as in the pipeline):
- raw pitch accuracy: share of ground-truth voiced frames whose f0 is within 50 cents (the pitch is
  judged even where the method says unvoiced: it holds the nearest voiced pitch there);
- raw chroma accuracy: the same, ignoring octave errors;
- voicing recall / false alarm: f0_confidence >= VOICED_THRESHOLD on voiced / unvoiced frames;
- speed: seconds of audio per second of compute (x real time), timed per file after a warm-up that
  pays swift's ONNX session and pyin's numba compile; methods alternate order file by file.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.common import machine, parse_args, render_bench_corpus, table, timed, write_results
from pipeline.audio.features import F0_METHODS, VOICED_THRESHOLD, estimate_f0
from pipeline.corpus.render import load_ground_truth

FRAME_RATE = 250
CENTS = 50.0
MAIN_JOB_AUDIO_SECS = 40 * 20.0  # the default corpus: 40 x 20 s


def cents_off(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return 1200 * np.abs(np.log2(np.maximum(estimate, 1e-3) / truth))


def score(f0_hz: np.ndarray, confidence: np.ndarray, truth_hz: np.ndarray, voiced: np.ndarray) -> dict:
    """Frame counts, summed over files before dividing, so long files weigh more than short ones."""
    error = cents_off(f0_hz[voiced], truth_hz[voiced])
    chroma = np.abs((error + 600) % 1200 - 600)
    said_voiced = confidence >= VOICED_THRESHOLD
    return {"voiced": int(voiced.sum()), "unvoiced": int((~voiced).sum()),
            "pitch_ok": int((error <= CENTS).sum()), "chroma_ok": int((chroma <= CENTS).sum()),
            "hits": int((said_voiced & voiced).sum()), "false_alarms": int((said_voiced & ~voiced).sum())}


def rates(counts: dict) -> dict:
    return {"raw_pitch_accuracy": counts["pitch_ok"] / counts["voiced"],
            "raw_chroma_accuracy": counts["chroma_ok"] / counts["voiced"],
            "voicing_recall": counts["hits"] / counts["voiced"],
            "voicing_false_alarm": counts["false_alarms"] / max(counts["unvoiced"], 1)}


def warm_up(methods: list[str], sample_rate: int) -> None:
    clip = np.sin(2 * np.pi * 220 * np.arange(sample_rate) / sample_rate).astype(np.float32) * 0.5
    for method in methods:
        estimate_f0(clip, sample_rate, FRAME_RATE, method=method)


def evaluate(wavs: list[Path], methods: list[str]) -> dict:
    totals = {m: {"counts": {}, "audio_secs": 0.0, "compute_secs": 0.0, "per_file": []} for m in methods}
    for i, wav in enumerate(wavs):
        audio, sample_rate = sf.read(str(wav), dtype="float32")
        _times, truth_hz, voiced = load_ground_truth(wav)
        # alternate which method runs first, so load drift does not always favour one
        for method in methods if i % 2 == 0 else methods[::-1]:
            secs, (f0_hz, confidence) = timed(estimate_f0, audio, sample_rate, FRAME_RATE, len(truth_hz), method)
            counts = score(f0_hz, confidence, truth_hz, voiced)
            total = totals[method]
            total["counts"] = {k: total["counts"].get(k, 0) + v for k, v in counts.items()}
            total["audio_secs"] += len(audio) / sample_rate
            total["compute_secs"] += secs
            total["per_file"].append({"file": wav.name, "secs": round(secs, 3), **rates(counts)})
    for total in totals.values():
        total.update(rates(total["counts"]), x_real_time=total["audio_secs"] / total["compute_secs"])
    return totals


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--secs", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--methods", nargs="+", choices=F0_METHODS, default=list(F0_METHODS))
    args = parse_args(parser, {"files": 2, "secs": 3.0}, argv)

    info = machine()
    work = Path(tempfile.mkdtemp(prefix="bench_f0_"))
    try:
        wavs = render_bench_corpus(work / "corpus", args.files, args.secs, args.seed)
        warm_up(args.methods, sf.info(str(wavs[0])).samplerate)
        totals = evaluate(wavs, args.methods)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = totals[args.methods[0]]["x_real_time"]
    rows = []
    for method, t in totals.items():
        rows.append([method, t["raw_pitch_accuracy"], t["raw_chroma_accuracy"], t["voicing_recall"],
                     t["voicing_false_alarm"], t["x_real_time"], t["x_real_time"] / base,
                     MAIN_JOB_AUDIO_SECS / t["x_real_time"] / 60])
    print(f"\n=== f0 accuracy: {args.files} x {args.secs:g} s rendered piano, {FRAME_RATE} frames/s, "
          f"{CENTS:g} cents (load average at start {info['load_average_start']}; speed is noisy, read the ratio) ===")
    print(table(["method", "raw pitch acc", "raw chroma acc", "voicing recall", "voicing false alarm",
                 "x real time", f"speed vs {args.methods[0]}", "min/40x20 s (1 core)"], rows))
    print("min/40x20 s: f0 compute for the default corpus (13.3 min of audio) on one core at this speed; "
          "2 Beam workers roughly halve it.")
    path = write_results("f0_accuracy", {"settings": vars(args), "frame_rate": FRAME_RATE, "cents": CENTS,
                                         "voiced_threshold": VOICED_THRESHOLD, "methods": totals}, info, args.smoke)
    print(f"results -> {path}")


if __name__ == "__main__":
    main()
