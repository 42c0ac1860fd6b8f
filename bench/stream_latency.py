"""Streaming latency: per-block time of the exported TFLite model + numpy host, against the offline decode.

For each block length (10, 20, 50 ms by default) the untrained model of a preset is exported
(``pipeline.export.bundle.export_model``, float32) and ``secs`` seconds of a melody are played
through :class:`pipeline.export.host.StreamingVoice` on one thread (LiteRT ``num_threads=1``,
TensorFlow's thread pools at 1 for the offline path), timing every block: the whole ``process``
call, and within it the LiteRT call alone. The offline path is
``ModelSynthesizer.decode_frames`` (the long-form decode ``generate`` uses) on the same contour,
after one warm-up call. Each round runs every configuration once, the order rotating. Reported:
per-block median and 99th percentile, the
fraction of blocks over 1 ms (the target at 20 ms blocks: every block under 1 ms, >= 20x real
time), and real-time factors (audio seconds per compute second) of streaming and offline.

Models are untrained (the cost does not depend on the weights), for 4 s examples at 16 kHz with
250 Hz contours, as the prepared data has. Run from the repository root:

    .venv/bin/python -m bench.stream_latency                     # cpu preset, 10 s, 10/20/50 ms
    .venv/bin/python -m bench.stream_latency --secs 4 --blocks 20
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from bench.common import machine, median, table, write_results  # noqa: E402


def melody(n_frames: int, z_dims: int):
    t = np.arange(n_frames)
    f0 = (220.0 * 2 ** (((t // 50) % 8) * 2 / 12)).astype(np.float32)
    loudness = (-40.0 + 10.0 * np.sin(t / 40.0)).astype(np.float32)
    z = np.cumsum(np.random.default_rng(0).normal(0, 0.05, (n_frames, z_dims)), axis=0).astype(np.float32)
    return f0, loudness, z


def time_stream(folder: Path, f0, loudness, z) -> list[float]:
    """Seconds per block (after five warm-up blocks) and the LiteRT call's share, one pass over the clip."""
    from pipeline.export.host import StreamingVoice

    voice = StreamingVoice(folder, seed=0, num_threads=1)
    block, hop = voice.block_frames, voice.hop
    n = len(f0) // block * block
    runner = voice.runner
    lite_times = []

    def timed_runner(**kwargs):  # the LiteRT call alone, inside the block's time
        start = time.perf_counter()
        out = runner(**kwargs)
        lite_times.append(time.perf_counter() - start)
        return out

    voice.runner = timed_runner
    for i in range(0, 5 * block, block):  # warm-up blocks, not counted
        voice.process(f0[i:i + block], loudness[i:i + block], z[i:i + block])
    lite_times.clear()
    block_times = []
    for i in range(0, n, block):
        start = time.perf_counter()
        voice.process(f0[i:i + block], loudness[i:i + block], z[i:i + block])
        block_times.append(time.perf_counter() - start)
    return block_times, lite_times, block * hop / voice.manifest["sample_rate"], block


def summary(rounds: list, offline_rtf: float) -> dict:
    """Per-block figures pooled over rounds; the median and the best round's p99 (the machine is shared)."""
    block_secs, block = rounds[0][2], rounds[0][3]
    ms = np.concatenate([np.array(r[0]) for r in rounds]) * 1e3
    lite = np.concatenate([np.array(r[1]) for r in rounds]) * 1e3
    p99_per_round = [float(np.percentile(np.array(r[0]) * 1e3, 99)) for r in rounds]
    median_s = float(np.median(ms)) / 1e3
    return {"block_frames": block, "block_ms": 1e3 * block_secs, "blocks": int(len(ms)),
            "median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "best_round_p99_ms": min(p99_per_round), "max_ms": float(ms.max()), "over_1ms": float((ms > 1.0).mean()),
            "litert_median_ms": float(np.median(lite)), "stream_rtf": block_secs / median_s,
            "vs_offline": block_secs / median_s / offline_rtf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=("cpu", "paper"))
    parser.add_argument("--secs", type=float, default=10.0, help="audio streamed per block length")
    parser.add_argument("--blocks", type=float, nargs="+", default=[10.0, 20.0, 50.0], help="block lengths in ms")
    parser.add_argument("--rounds", type=int, default=4, help="rounds: each streams the clip at every block "
                        "length and decodes it offline once, in rotating order")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import pipeline  # noqa: F401
    from pipeline.config import TrainParams
    from pipeline.dataset.tfrecord import DatasetSpec
    from pipeline.export.bundle import export_model
    from pipeline.generation.synthesizer import load_synthesizer
    from pipeline.model.build import build_autoencoder
    from pipeline.model.store import placeholder_batch, write_model

    info = machine()
    spec = DatasetSpec(sample_rate=16000, frame_rate=250, example_secs=4.0, f0_method="swift")
    train = TrainParams(preset=args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tf.keras.utils.set_random_seed(0)
        model = build_autoencoder(train, spec)
        model(placeholder_batch(spec), training=False)
        write_model(model, tmp / "model", train, spec)
        synth = load_synthesizer(tmp / "model")
        n_frames = int(args.secs * synth.decoder_frame_rate)
        f0, loudness, z = melody(n_frames, train.resolved().z_dims)
        for block_ms in args.blocks:
            export_model(tmp / "model", tmp / f"export_{block_ms:g}", block_ms)
        synth.decode_frames(f0, loudness, z, seed=0)  # warm-up: tracing and compilation
        configs = ["offline", *args.blocks]
        timings = {c: [] for c in configs}
        for round_index in range(args.rounds):  # every configuration once per round, the order rotating
            shift = round_index % len(configs)
            for config in configs[shift:] + configs[:shift]:
                if config == "offline":
                    start = time.perf_counter()
                    synth.decode_frames(f0, loudness, z, seed=0)
                    timings[config].append(time.perf_counter() - start)
                else:
                    timings[config].append(time_stream(tmp / f"export_{config:g}", f0, loudness, z))
    offline_rtf = n_frames / synth.decoder_frame_rate / median(timings["offline"])
    results = [summary(timings[b], offline_rtf) for b in args.blocks]
    rows = [[f"{r['block_ms']:g} ms ({r['block_frames']} fr)", r["median_ms"], r["p99_ms"], r["best_round_p99_ms"],
             r["max_ms"], f"{100 * r['over_1ms']:.1f}%", r["litert_median_ms"], r["stream_rtf"], r["vs_offline"]]
            for r in results]
    print(f"preset {args.preset}, {args.secs:g} s streamed per block length, one thread; "
          f"offline decode (TF, one thread): {offline_rtf:.1f}x real time")
    print(table(["block", "median ms", "p99 ms", "best-round p99", "max ms", "> 1 ms", "LiteRT median ms",
                 "stream x RT", "vs offline"], rows))
    path = write_results("stream_latency", {"settings": vars(args), "offline_rtf": offline_rtf,
                                            "offline_secs": timings["offline"], "streaming": results}, info)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
