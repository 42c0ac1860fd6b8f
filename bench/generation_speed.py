"""Generation real-time factor: seconds of audio per second of compute (decoder + synthesiser), ours vs stock ddsp.

Three ways to turn (f0, loudness, z) into audio, timed on the same model, inputs and process:

- ``stock``: what a user of plain ddsp writes (the ddsp colab and the seed report's recipe), eager,
  on the model as plain ddsp builds it (ddsp's ``Harmonic`` synth), with the same weights:
  ``model.preprocessor`` on the contours, z stretched with ``model.encoder.expand_z``, then
  ``model.decoder`` and ``model.processor_group``, audio to numpy. This is the baseline.
- ``ours``: ``ModelSynthesizer.synthesize``, the path the sample stage and the generate command use:
  ``pipeline.model.decode.decoder_outputs`` compiled with ``tf.function`` once per input shape;
  the decoder network compiled with XLA when the preset trains with it (``cpu``); the harmonic
  synth is the model's ``pipeline.model.harmonic.FastHarmonic`` (ddsp's harmonic synthesis computed
  with one phase and frame-blocked amplitudes, compiled with XLA); the noise synth's white noise drawn statelessly
  from a seed tensor (a graph input, so a new seed does not retrace); audio and its harmonic and
  noise parts copied to numpy.
- ``ours_xla``: the same ``ModelSynthesizer`` with its whole decode function compiled with
  ``jit_compile=True`` instead. Built in the benchmark only: an option, not the production path.

The checks (first batch size only) record how far each variant's harmonic part is from a float64
rendering of the same controls (the noise part differs by design: stock draws from TensorFlow's
global generator, ours from its seed), and whether ours and ours_xla give the same audio for the
same seed and different audio for another. ``phase_accuracy`` shows where ddsp's error comes from.

Models are untrained (random weights: the cost does not depend on their values), built from a
preset with ``build_autoencoder`` for 4 s clips at 16 kHz with 250 Hz contours, as the prepared
data has. Each preset runs in its own process so its peak memory is its own. In that process, per
batch size, every variant first runs once (warm-up: tracing, XLA compilation, first-call costs;
reported apart and left out of the real-time factor), then ``rounds`` rounds run every variant in
turn, the order reversed every other round (ABC CBA ...). Nothing in the timed variants calls
``tf.random.set_seed`` (which clears TensorFlow's kernel cache), so no variant disturbs the next.
The ratio vs stock is the median over rounds of the ratio within each round. Peak RSS is the
process's high-water mark (``VmHWM``, reset before each timed block) while that variant runs: it
includes the TensorFlow runtime and the model and memory earlier blocks left allocated, so read it
per preset, not as one variant's own cost.

    python -m bench.generation_speed [--presets cpu paper] [--batch-sizes 1 8] [--rounds 4] [--paper-rounds 2] [--smoke]

Each preset's figures print as soon as its process is done; the target line comes last.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from bench.common import load_average, machine, median, parse_args, run_measurement, table, write_results

VARIANTS = ("stock", "ours", "ours_xla")
CLIP_SECS = 4.0
SAMPLE_RATE, FRAME_RATE = 16000, 250


# ---------------------------------------------------------------- memory (Linux /proc)

_PROCESS_PEAK_MB = [0.0]  # the high-water mark before each reset: ru_maxrss is reset along with VmHWM


def reset_peak_rss() -> None:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0), remembering the peak so far."""
    _PROCESS_PEAK_MB[0] = max(_PROCESS_PEAK_MB[0], peak_rss_mb())
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    return _status_mb("VmHWM")


# ---------------------------------------------------------------- the generation paths

class Paths:
    """One preset's model and a callable per variant: (f0_hz, loudness_db, z, seed) -> audio numpy."""

    def __init__(self, preset: str):
        from functools import partial

        import tensorflow as tf

        from pipeline.compat import import_ddsp
        from pipeline.config import TrainParams
        from pipeline.dataset.tfrecord import DatasetSpec
        from pipeline.generation.synthesizer import ModelSynthesizer
        from pipeline.model.build import build_autoencoder
        from pipeline.model.decode import decoder_outputs
        from pipeline.model.store import placeholder_batch

        tf.keras.utils.set_random_seed(0)
        self.tf = tf
        self.spec = DatasetSpec(sample_rate=SAMPLE_RATE, frame_rate=FRAME_RATE, example_secs=CLIP_SECS,
                                f0_method="swift")
        self.train = TrainParams(preset=preset).resolved()
        self.model = build_autoencoder(self.train, self.spec)
        self.model(placeholder_batch(self.spec), training=False)  # create the variables
        # stock gets plain ddsp's model (ddsp's Harmonic synth) with the same weights, and its own copy:
        # ModelSynthesizer switches its model's GRUs to the generic kernel for XLA, which would slow
        # an eager decoder
        self.stock_model = build_autoencoder(self.train, self.spec, harmonic_synth=import_ddsp().synths.Harmonic)
        self.stock_model(placeholder_batch(self.spec), training=False)
        self.stock_model.set_weights(self.model.get_weights())
        self.synth = ModelSynthesizer(self.model, self.spec.sample_rate, self.spec.frame_rate,
                                      self.train.z_time_steps, jit_decoder=self.train.jit_compile)
        # the same adapter, its decode function compiled with XLA instead (benchmark only)
        self.synth_xla = ModelSynthesizer(self.model, self.spec.sample_rate, self.spec.frame_rate,
                                          self.train.z_time_steps)
        self.synth_xla._decode = tf.function(partial(decoder_outputs, self.model, frame_rate=self.spec.frame_rate),
                                             jit_compile=True)

    def params(self) -> int:
        return int(self.model.count_params())

    def stock_outputs(self, f0_hz, loudness_db, z):
        """ddsp as its colab / the seed report use it: preprocessor -> decoder -> processor_group, eager."""
        model = self.stock_model
        features = model.preprocessor({"f0_hz": f0_hz[..., None], "loudness_db": loudness_db[..., None]},
                                      training=False)
        features["z"] = model.encoder.expand_z(self.tf.convert_to_tensor(z), int(features["f0_hz"].shape[1]))
        features.update(model.decoder(features, training=False))
        return model.processor_group(features, return_outputs_dict=True)

    def stock(self, f0_hz, loudness_db, z, seed):
        del seed  # plain ddsp has no seed argument; FilteredNoise draws from TF's global generator
        return self.stock_outputs(f0_hz, loudness_db, z)["signal"].numpy()

    def ours(self, f0_hz, loudness_db, z, seed):
        return self.synth.synthesize(f0_hz, loudness_db, z, seed)[0]

    def ours_xla(self, f0_hz, loudness_db, z, seed):
        return self.synth_xla.synthesize(f0_hz, loudness_db, z, seed)[0]

    def traces(self) -> dict[str, int]:
        return {"ours": int(self.synth._decode.experimental_get_tracing_count()),
                "ours_xla": int(self.synth_xla._decode.experimental_get_tracing_count())}


def clip_inputs(batch_size: int, n_frames: int, n_z_frames: int, z_dims: int, seed: int):
    """A piano-like melody per clip (held notes, decaying loudness) and N(0, 1) z on the encoder's grid."""
    import numpy as np

    rng = np.random.default_rng(seed)
    note_frames = FRAME_RATE // 4
    n_notes = -(-n_frames // note_frames)
    midi = rng.integers(40, 85, size=(batch_size, n_notes))
    f0 = 440.0 * 2.0 ** ((np.repeat(midi, note_frames, axis=1)[:, :n_frames] - 69) / 12)
    decay = -10.0 * np.arange(note_frames) / FRAME_RATE
    loudness = np.tile(-25.0 + decay, n_notes)[:n_frames]
    loudness = np.broadcast_to(loudness, (batch_size, n_frames))
    z = rng.standard_normal((batch_size, n_z_frames, z_dims))
    return f0.astype(np.float32), np.ascontiguousarray(loudness, np.float32), z.astype(np.float32)


def checks(paths: Paths, f0, loudness, z) -> dict:
    """How close is each variant's harmonic part to float64? Same seed -> same audio, another -> other?

    The harmonic part has no randomness, so it is compared with a float64 rendering of stock's own
    harmonic controls (``pipeline.model.harmonic.float64_harmonic_audio``): ddsp's float32 phase
    sum drifts along a 4 s clip, the single float64 phase of ours does not.
    """
    import numpy as np

    from pipeline.model.build import HARMONIC, NOISE
    from tests.synthetic import float64_harmonic_audio

    stock = paths.stock_outputs(f0, loudness, z)
    harmonic_controls = stock["controls"][HARMONIC]["controls"]
    reference = float64_harmonic_audio(harmonic_controls["amplitudes"], harmonic_controls["harmonic_distribution"],
                                       harmonic_controls["f0_hz"], SAMPLE_RATE * int(CLIP_SECS), SAMPLE_RATE)
    harmonic_error = lambda harmonic: float(np.abs(harmonic - reference).max())  # noqa: E731
    result = {"audio_peak": float(np.abs(stock["signal"].numpy()).max()),
              "harmonic_peak": float(np.abs(reference).max()),
              "noise_peak": float(np.abs(stock["controls"][NOISE]["signal"].numpy()).max()),
              "stock_harmonic_vs_float64_max_abs_diff": harmonic_error(
                  stock["controls"][HARMONIC]["signal"].numpy())}
    parts = {}
    for name, synth in (("ours", paths.synth), ("ours_xla", paths.synth_xla)):
        audio, harmonic, noise = synth.synthesize(f0, loudness, z, 7)
        again = synth.synthesize(f0, loudness, z, 7)[0]
        other = synth.synthesize(f0, loudness, z, 8)[0]
        parts[name] = (harmonic, noise)
        result[f"{name}_harmonic_vs_float64_max_abs_diff"] = harmonic_error(harmonic)
        result[f"{name}_same_seed_identical"] = bool(np.array_equal(audio, again))
        result[f"{name}_other_seed_differs"] = not bool(np.array_equal(audio, other))
    result["ours_xla_noise_vs_ours_max_abs_diff"] = float(np.abs(parts["ours_xla"][1] - parts["ours"][1]).max())
    return result


def phase_accuracy(seconds: float = CLIP_SECS, n_harmonics: int = 40) -> dict:
    """Error of ddsp's ``oscillator_bank`` (the Harmonic synth's core) against a float64 reference.

    The phase is a float32 ``tf.cumsum`` over every sample of the clip. Eager TensorFlow sums it
    one sample after another, so the rounding error grows along the clip; XLA sums it in a tree.
    Ours (``pipeline.model.harmonic``) sums one phase in float64 instead.
    Frequencies: 0.25 s notes, each harmonic uniform in 100-7000 Hz, amplitude 0.01.
    """
    import numpy as np
    import tensorflow as tf
    from scipy.signal import stft

    from pipeline.compat import import_ddsp

    core = import_ddsp().core
    rng = np.random.default_rng(0)
    n_notes, note = int(seconds * 4), SAMPLE_RATE // 4
    freq = np.repeat(rng.uniform(100, 7000, size=(n_notes, n_harmonics)), note, axis=0)[None].astype(np.float32)
    amp = np.full(freq.shape, 0.01, np.float32)
    phase64 = np.cumsum(freq.astype(np.float64) * 2 * np.pi / SAMPLE_RATE, axis=1)
    reference = (amp.astype(np.float64) * np.sin(phase64)).sum(-1)[0]
    spectrum = lambda x: np.abs(stft(x, nperseg=1024)[2])  # noqa: E731
    result = {}
    for name, fn in (("eager", lambda f, a: core.oscillator_bank(f, a, SAMPLE_RATE)),
                     ("xla", tf.function(lambda f, a: core.oscillator_bank(f, a, SAMPLE_RATE), jit_compile=True)),
                     ("eager_angular_cumsum",
                      lambda f, a: core.oscillator_bank(f, a, SAMPLE_RATE, use_angular_cumsum=True))):
        audio = fn(tf.constant(freq), tf.constant(amp)).numpy()[0]
        result[name] = {"max_abs_err": float(np.abs(audio - reference).max()),
                        "stft_rel_err": float(np.abs(spectrum(audio) - spectrum(reference)).sum()
                                              / spectrum(reference).sum())}
    result["reference_peak"] = float(np.abs(reference).max())
    return result


COMPONENTS = ("decoder", "harmonic_ddsp", "harmonic_ours", "noise", "reverb")
MODES = ("eager", "compiled", "compiled_xla")


def breakdown(paths: Paths, batch_size: int, rounds: int, say) -> dict:
    """Seconds per call of each stage of ``decoder_outputs``, eager, tf.function and tf.function + XLA.

    ``decoder`` is contour resampling and scaling plus ``model.decoder``; ``harmonic_ours``
    (``FastHarmonic``, whose sine bank is XLA-compiled in every mode), ``harmonic_ddsp`` (ddsp's
    ``Harmonic``), ``noise`` and ``reverb`` are the synths, each on the decoder's real outputs. Each
    stage gets its first call (trace) apart; rounds alternate order as above.
    """
    import numpy as np

    from pipeline.model.build import HARMONIC, NOISE, REVERB
    from pipeline.model.decode import decoder_features

    tf, model, spec, train = paths.tf, paths.model, paths.spec, paths.train
    f0, loudness, z = clip_inputs(batch_size, spec.n_frames, train.z_time_steps, train.z_dims, seed=batch_size)
    features = decoder_features(model, f0, loudness, z, spec.frame_rate)
    controls = {**features, **model.decoder(features, training=False)}
    procs = {p.name: p for p in model.processor_group.processors}
    harmonic, noise = procs[HARMONIC], procs[NOISE]  # harmonic: FastHarmonic
    ddsp_harmonic = next(p for p in paths.stock_model.processor_group.processors if p.name == HARMONIC)
    reverb = procs.get(REVERB)
    synth_inputs = (controls["amps"], controls["harmonic_distribution"], controls["f0_hz"])
    mix = harmonic(*synth_inputs) + noise(controls["noise_magnitudes"])
    n_harmonics = int(controls["harmonic_distribution"].shape[-1])
    stages = {
        "decoder": lambda: model.decoder(decoder_features(model, f0, loudness, z, spec.frame_rate), training=False),
        "harmonic_ddsp": lambda: ddsp_harmonic(*synth_inputs),
        "harmonic_ours": lambda: harmonic(*synth_inputs),
        "noise": lambda: noise(controls["noise_magnitudes"]),
    }
    if reverb is not None:
        stages["reverb"] = lambda: reverb(mix)
    calls = {}
    for name, fn in stages.items():
        calls[(name, "eager")] = fn
        calls[(name, "compiled")] = tf.function(fn)
        calls[(name, "compiled_xla")] = tf.function(fn, jit_compile=True)
    run = lambda fn: tf.nest.map_structure(lambda t: np.asarray(t), fn())  # noqa: E731
    first, times = {}, {key: [] for key in calls}
    for key, fn in calls.items():
        wall = time.perf_counter()
        run(fn)
        first[key] = time.perf_counter() - wall
    for round_index in range(rounds):
        keys = list(calls) if round_index % 2 == 0 else list(reversed(calls))
        for key in keys:
            wall = time.perf_counter()
            run(calls[key])
            times[key].append(time.perf_counter() - wall)
    result = {mode: {name: median(times[(name, mode)]) for name in stages} for mode in MODES}
    say(f"b{batch_size} breakdown (s per call): {result}")
    return {"s_per_call": result, "first_call_s": {f"{n}/{m}": v for (n, m), v in first.items()},
            "rounds": rounds, "n_harmonics": n_harmonics}


def run_preset(preset: str, batch_sizes: list[int], rounds: int, variants: list[str],
               breakdown_rounds: int = 0) -> dict:
    """Everything for one preset, in this process."""
    started = time.perf_counter()
    paths = Paths(preset)
    build_s = time.perf_counter() - started
    spec, train = paths.spec, paths.train

    def say(msg: str) -> None:
        print(f"[{preset} {time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    say(f"built ({paths.params()} parameters) in {build_s:.1f}s, rss {rss_mb():.0f} MB")
    out = {"preset": preset, "params": paths.params(), "build_s": build_s, "rounds": rounds,
           "decoder_frames": int(round(CLIP_SECS * train.decoder_frame_rate)), "batches": {}}
    for batch_size in batch_sizes:
        f0, loudness, z = clip_inputs(batch_size, spec.n_frames, train.z_time_steps, train.z_dims, seed=batch_size)
        audio_secs = batch_size * CLIP_SECS
        stats = {name: {"warmup_s": 0.0, "wall": [], "cpu": [], "peak_rss_mb": 0.0, "rss_before_mb": []}
                 for name in variants}
        for name in variants:  # warm-up: the first call per shape (tracing, XLA compilation, lazy set-up)
            wall = time.perf_counter()
            getattr(paths, name)(f0, loudness, z, 0)
            stats[name]["warmup_s"] = time.perf_counter() - wall
            say(f"b{batch_size} warm-up {name}: {stats[name]['warmup_s']:.2f}s")
        # the checks test the code, which is the same at every batch size
        check = checks(paths, f0, loudness, z) if batch_size == min(batch_sizes) else None
        if check:
            say(f"b{batch_size} checks: {check}")
        for round_index in range(rounds):
            order = variants if round_index % 2 == 0 else list(reversed(variants))
            for name in order:
                stats[name]["rss_before_mb"].append(rss_mb())
                reset_peak_rss()
                wall, cpu = time.perf_counter(), time.process_time()
                getattr(paths, name)(f0, loudness, z, round_index + 1)
                stats[name]["wall"].append(time.perf_counter() - wall)
                stats[name]["cpu"].append(time.process_time() - cpu)
                stats[name]["peak_rss_mb"] = max(stats[name]["peak_rss_mb"], peak_rss_mb())
            say(f"b{batch_size} round {round_index + 1}/{rounds}: "
                + ", ".join(f"{n} {audio_secs / stats[n]['wall'][-1]:.1f}x" for n in variants)
                + f" (load {load_average()[0]})")
        rows = {}
        for name in variants:
            s = stats[name]
            rows[name] = {
                "rtf": audio_secs * rounds / sum(s["wall"]),  # seconds of audio per second of wall time
                "rtf_cpu": audio_secs * rounds / sum(s["cpu"]),  # ... per second of CPU time (all threads)
                "s_per_clip": sum(s["wall"]) / (rounds * batch_size),
                "ratio_vs_stock": median(s_w / w for s_w, w in zip(stats["stock"]["wall"], s["wall"]))
                if "stock" in stats else None,
                "ratio_vs_ours": median(o_w / w for o_w, w in zip(stats["ours"]["wall"], s["wall"]))
                if "ours" in stats else None,
                "warmup_s": s["warmup_s"], "peak_rss_mb": s["peak_rss_mb"],
                "rss_before_mb": max(s["rss_before_mb"]), "wall_s": s["wall"], "cpu_s": s["cpu"]}
        out["batches"][str(batch_size)] = {"audio_secs_per_call": audio_secs, "variants": rows, "checks": check}
        if breakdown_rounds:
            out["batches"][str(batch_size)]["breakdown"] = breakdown(paths, batch_size, breakdown_rounds, say)
    out["traces"] = paths.traces()
    out["phase_accuracy"] = phase_accuracy()
    say(f"phase accuracy: {out['phase_accuracy']}")
    out["process_peak_rss_mb"] = max(_PROCESS_PEAK_MB[0], peak_rss_mb(),
                                     resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["seconds"] = time.perf_counter() - started
    return out


def preset_in_subprocess(preset: str, args, rounds: int) -> dict:
    return run_measurement("bench.generation_speed", "--run-preset", preset, "--rounds", str(rounds),
                           "--batch-sizes", *map(str, args.batch_sizes), "--variants", *args.variants,
                           "--breakdown-rounds", str(args.breakdown_rounds if preset in args.breakdown_presets else 0),
                           what=f"preset {preset}")

def print_preset(preset: str, result: dict) -> None:
    """One preset's figures: real-time factors per batch size and variant, checks, stage breakdown."""
    columns = ["rtf", "ratio_vs_stock", "ratio_vs_ours", "rtf_cpu", "s_per_clip", "warmup_s", "peak_rss_mb"]
    rows = [[preset, batch_size, name, *(row[c] for c in columns)]
            for batch_size, batch in result["batches"].items() for name, row in batch["variants"].items()]
    print(f"\n{preset} preset:")
    print(table(["preset", "batch", "variant", *columns], rows))
    print(f"{preset}: {result['params']} parameters, {result['rounds']} rounds, process peak RSS "
          f"{result['process_peak_rss_mb']:.0f} MB, traces {result['traces']}, {result['seconds']:.0f}s")
    for batch_size, batch in result["batches"].items():
        if batch["checks"]:
            print(f"  b{batch_size} checks: {batch['checks']}")
    print(f"  oscillator_bank vs float64: {result['phase_accuracy']}")
    stage_rows = [[preset, batch_size, mode, *(stages.get(c, float("nan")) for c in COMPONENTS)]
                  for batch_size, batch in result["batches"].items() if "breakdown" in batch
                  for mode, stages in batch["breakdown"]["s_per_call"].items()]
    if stage_rows:
        print("seconds per call of each stage:")
        print(table(["preset", "batch", "mode", *COMPONENTS], stage_rows))
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"], choices=["cpu", "paper"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per batch size (cpu preset)")
    parser.add_argument("--paper-rounds", type=int, default=2, help="rounds per batch size for the paper preset")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--breakdown-presets", nargs="*", default=["cpu"], choices=["cpu", "paper"],
                        help="presets whose stages are also timed one by one")
    parser.add_argument("--breakdown-rounds", type=int, default=3)
    parser.add_argument("--run-preset", choices=["cpu", "paper"], help=argparse.SUPPRESS)
    args = parse_args(parser, {"presets": ["cpu"], "batch_sizes": [1], "rounds": 1, "paper_rounds": 1,
                               "breakdown_rounds": 1})
    if "stock" not in args.variants:
        args.variants.insert(0, "stock")
    if args.run_preset:
        print(json.dumps(run_preset(args.run_preset, args.batch_sizes, args.rounds, args.variants,
                                    args.breakdown_rounds)))
        return

    info = machine()
    presets = {}
    for preset in args.presets:
        rounds = args.paper_rounds if preset == "paper" else args.rounds
        presets[preset] = preset_in_subprocess(preset, args, rounds)
        presets[preset]["load_average_after"] = load_average()
        print_preset(preset, presets[preset])
    cpu_best = {b: max(v["rtf"] for v in batch["variants"].values())
                for b, batch in presets.get("cpu", {}).get("batches", {}).items()}
    cpu_ours = {b: batch["variants"]["ours"]["rtf"] for b, batch in presets.get("cpu", {}).get("batches", {}).items()
                if "ours" in batch["variants"]}
    if cpu_ours:
        print(f"target >= 100x real time for cpu: ours {cpu_ours}, best variant {cpu_best}")
    path = write_results("generation_speed", {
        "settings": {"clip_secs": CLIP_SECS, "sample_rate": SAMPLE_RATE, "frame_rate": FRAME_RATE,
                     "batch_sizes": args.batch_sizes, "rounds": args.rounds, "paper_rounds": args.paper_rounds,
                     "variants": args.variants},
        "target": {"preset": "cpu", "min_rtf": 100.0, "ours_rtf": cpu_ours, "best_rtf": cpu_best,
                   "met_by_ours": bool(cpu_ours) and all(v >= 100.0 for v in cpu_ours.values())},
        "presets": presets}, info, args.smoke)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
