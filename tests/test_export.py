"""The real-time export on a tiny real model: export, stream block by block, equal to the offline decode;
the TFLite model loads and streams with LiteRT in a process that never imports ddsp or our package."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
from test_generation import SPEC, in_project, project  # noqa: F401  (the tiny-model project fixtures)

HARMONIC_TOL, AUDIO_TOL = 1e-4, 1e-3  # of the offline signal's peak


def melody_inputs(n_frames: int, z_dims: int, seed: int = 0):
    """Decoder-rate inputs: a stepped melody with a loudness swell and a wandering z."""
    t = np.arange(n_frames)
    f0 = (196.0 * 2 ** ((t * 7 // n_frames * 2) / 12)).astype(np.float32)
    loudness = (-45.0 + 20.0 * np.sin(np.pi * t / n_frames)).astype(np.float32)
    z = np.cumsum(np.random.default_rng(seed).normal(0, 0.2, (n_frames, z_dims)), axis=0).astype(np.float32)
    return f0, loudness, z


@pytest.fixture(scope="module")
def synth(project):  # noqa: F811
    from pipeline.generation.synthesizer import load_synthesizer

    return load_synthesizer(project / "models/autoencoder")


@pytest.fixture(scope="module")
def exported(project):  # noqa: F811
    """`gddsp export` in the tiny project (20 ms blocks: one 50 Hz frame; float16 too)."""
    from pipeline import cli

    cwd = os.getcwd()
    params = project / "params.yaml"
    original = params.read_text()
    params.write_text(original + "export: {quantize: [float16]}\n")
    try:
        os.chdir(project)
        cli.main(["export"])
    finally:
        os.chdir(cwd)
        params.write_text(original)
    return project / "export"


def assert_equal_to_offline(streamed, offline):
    """The harmonic part within 1e-4 of its peak, the whole signal within 1e-3 of its peak, end included."""
    audio, harmonic, noise = streamed
    ref_audio, ref_harmonic, ref_noise = offline
    assert audio.shape == ref_audio.shape
    assert np.abs(ref_harmonic).max() > 1e-3 and np.abs(ref_noise).max() > 1e-5, "both parts sound"
    assert np.abs(harmonic - ref_harmonic).max() <= HARMONIC_TOL * np.abs(ref_harmonic).max()
    # the untrained model's noise is quiet: held to its own peak, not the mix's
    assert np.abs(noise - ref_noise).max() <= AUDIO_TOL * np.abs(ref_noise).max()
    assert np.abs(audio - ref_audio).max() <= AUDIO_TOL * np.abs(ref_audio).max()


def test_manifest_says_what_a_host_needs(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["sample_rate"] == 16000 and manifest["frame_rate"] == 50 and manifest["hop_samples"] == 320
    assert manifest["block_frames"] == 1 and manifest["block_ms"] == 20.0  # 20 ms = one 50 Hz frame
    assert manifest["latency_samples"] == 320 and manifest["z_dims"] == 4
    assert set(manifest["state"]) == {"gru_state", "prev_f0", "prev_amps"}
    assert manifest["training"]["train"]["decoder_rnn_channels"] == 32
    for name in ("model.tflite", "host.py", "reverb_ir.npy", "saved_model/saved_model.pb", "model_float16.tflite"):
        assert (exported / name).is_file(), name
    error = manifest["quantized"]["float16"]["audio_error"]
    assert 0.0 < error["max_over_peak"] < 0.05  # measured: float16 weights change the audio, a little


def test_stream_equals_the_offline_long_form_decode(exported, synth):
    from pipeline.export import host

    f0, loudness, z = melody_inputs(130, 4)  # 2.6 s: across what were once three 1 s windows
    offline = synth.decode_frames(f0, loudness, z, seed=11)
    assert_equal_to_offline(host.stream(exported, f0, loudness, z, seed=11, parts=True), offline)
    other_noise = host.stream(exported, f0, loudness, z, seed=12, parts=True)[2]
    assert np.abs(other_noise - offline[2]).max() > 0.1 * np.abs(offline[2]).max(), "the seed is the noise"


def test_blocks_of_several_frames_and_the_saved_model_agree(project, synth, tmp_path):  # noqa: F811
    import tensorflow as tf

    from pipeline.export import host
    from pipeline.export.bundle import export_model

    folder = export_model(project / "models/autoencoder", tmp_path / "export", block_ms=60.0)  # 3 frames
    assert folder["block_frames"] == 3
    f0, loudness, z = melody_inputs(52, 4, seed=3)  # not a whole number of blocks
    offline = synth.decode_frames(f0, loudness, z, seed=2)
    assert_equal_to_offline(host.stream(tmp_path / "export", f0, loudness, z, seed=2, parts=True), offline)
    # the SavedModel's signature computes what the TFLite model does
    stream = tf.saved_model.load(str(tmp_path / "export/saved_model")).signatures["stream"]
    phase = host.HarmonicPhase(320, 16000).process(f0[:3])
    state = {name: tf.zeros(shape) for name, shape in folder["state"].items()}
    saved = stream(f0_hz=tf.constant(f0[:3]), loudness_db=tf.constant(loudness[:3]), z=tf.constant(z[:3]),
                   phase=tf.constant(phase), hold=tf.zeros(3), **state)
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(tmp_path / "export/model.tflite")).get_signature_runner("stream")
    lite = runner(f0_hz=f0[:3], loudness_db=loudness[:3], z=z[:3], phase=phase, hold=np.zeros(3, np.float32),
                  **{k: v.numpy() for k, v in state.items()})
    np.testing.assert_allclose(lite["harmonic"], saved["harmonic"].numpy(), atol=1e-6)
    np.testing.assert_allclose(lite["gru_state"], saved["gru_state"].numpy(), atol=1e-6)


def test_a_model_without_reverb_streams_too(tmp_path):
    """No reverb: no IR in the export, and the dry stream equals the offline decode."""
    import tensorflow as tf
    from test_generation import TINY_TRAIN

    from pipeline.config import TrainParams
    from pipeline.export import host
    from pipeline.export.bundle import export_model
    from pipeline.generation.synthesizer import load_synthesizer
    from pipeline.model.build import build_autoencoder
    from pipeline.model.store import placeholder_batch, write_model

    train = TrainParams(**{**TINY_TRAIN, "reverb": False, "decoder_frame_rate": 100, "n_harmonics": 8})
    tf.keras.utils.set_random_seed(1)
    model = build_autoencoder(train, SPEC)
    model(placeholder_batch(SPEC), training=False)
    write_model(model, tmp_path / "model", train, SPEC)
    manifest = export_model(tmp_path / "model", tmp_path / "export", block_ms=20.0)
    assert manifest["reverb_ir"] is None and manifest["block_frames"] == 2 and manifest["hop_samples"] == 160
    assert not (tmp_path / "export/reverb_ir.npy").exists()
    f0, loudness, z = melody_inputs(91, 4, seed=8)
    offline = load_synthesizer(tmp_path / "model").decode_frames(f0, loudness, z, seed=3)
    assert_equal_to_offline(host.stream(tmp_path / "export", f0, loudness, z, seed=3, parts=True), offline)


def test_stream_command_writes_what_generate_writes(in_project, exported):  # noqa: F811
    from pipeline import cli
    from stages import fit_gmm

    if not (in_project / "models/gmm/k2/mixture.json").exists():
        fit_gmm.main(["--k", "2"])
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [pretty_midi.Note(90, 62 + 2 * i, 0.3 * i, 0.3 * i + 0.28) for i in range(5)]
    midi.instruments.append(piano)
    midi.write(str(in_project / "stream.mid"))
    common = ["--k", "2", "--cluster", "1", "--method", "temporal", "--midi", "stream.mid", "--seed", "6"]
    cli.main(["generate"] + common + ["--out", "gen/offline.wav"])
    cli.main(["stream"] + common + ["--out", "gen/streamed.wav"])
    offline, rate = sf.read(in_project / "gen/offline.wav")
    streamed, rate_streamed = sf.read(in_project / "gen/streamed.wav")
    assert rate == rate_streamed == 16000 and len(offline) == len(streamed)
    peak = np.abs(offline).max()
    assert peak > 1e-2
    # 16-bit files: a sample of rounding either way, plus the stream's float32 error
    assert np.abs(streamed - offline).max() <= AUDIO_TOL * peak + 2 / 32768
    cli.main(["stream"] + common[:-1] + ["7", "--quantized", "float16", "--out", "gen/f16.wav"])
    assert sf.read(in_project / "gen/f16.wav")[0].shape == offline.shape
    with pytest.raises(SystemExit, match="no export"):
        cli.main(["stream"] + common + ["--export-dir", "nowhere", "--out", "gen/x.wav"])


def test_export_takes_a_mixture_along(in_project, exported):  # noqa: F811
    from pipeline import cli
    from pipeline.prior.mixture import load_mixture
    from stages import fit_gmm

    if not (in_project / "models/gmm/k2/mixture.json").exists():
        fit_gmm.main(["--k", "2"])
    cli.main(["export", "--k", "2", "--out", "export_k2"])
    manifest = json.loads((in_project / "export_k2/manifest.json").read_text())
    assert manifest["mixture"] == "mixture" and manifest["quantized"] == {}
    # a host turns MIDI into contours as generate does: the envelope and tuning fitted on the train split
    from pipeline.config import load_params
    from pipeline.generation.longform import midi_envelope_for
    from pipeline.generation.midi_envelope import DEFAULT_ENVELOPE
    from pipeline.paths import Paths

    params = load_params()
    assert manifest["midi_envelope"] == midi_envelope_for(params, Paths(params, in_project)).as_dict()
    assert manifest["midi_envelope"] != DEFAULT_ENVELOPE.as_dict()
    copied, fitted = load_mixture(in_project / "export_k2/mixture"), load_mixture(in_project / "models/gmm/k2")
    np.testing.assert_array_equal(copied.means_, fitted.means_)
    # a live host's z: the temporal sampler over the exported mixture, frame by frame
    from pipeline.export import host

    sampler = host.TemporalZ(in_project / "export_k2", cluster=1, rho=0.9, seed=3)
    z = np.concatenate([sampler.next(n) for n in [1, 7, 992] * 20])  # 20000 decoder frames, 400 s
    chain = np.asarray(sampler.chain)
    assert z.shape == (20000, 4) and len(chain) >= 20000 * 32 / 50
    cluster_sd = np.sqrt(np.diag(fitted.covariances_[1]))
    assert np.all(np.abs(chain.mean(0) - fitted.means_[1]) < 0.2 * cluster_sd)
    assert np.allclose(chain.std(0), cluster_sd, rtol=0.15)
    lag1 = [np.corrcoef(chain[1:, d], chain[:-1, d])[0, 1] for d in range(4)]
    assert np.allclose(lag1, 0.9, atol=0.03)
    again = host.TemporalZ(in_project / "export_k2", cluster=1, rho=0.9, seed=3).next(1000)
    np.testing.assert_array_equal(again, z[:1000])  # the same seed, whatever the block lengths
    with pytest.raises(ValueError, match="holds no mixture"):
        host.TemporalZ(exported, cluster=0, rho=0.5, seed=0)
    with pytest.raises(SystemExit, match="no mixture for K=5"):
        cli.main(["export", "--k", "5", "--out", "export_k5"])
    assert not (in_project / "export_k5").exists()


HOST_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import host
data = np.load(sys.argv[2])
audio = host.stream(sys.argv[1], data["f0"], data["loudness"], data["z"], seed=int(data["seed"]))
banned = sorted(name for name in sys.modules if name.split(".")[0] in ("ddsp", "pipeline", "tensorflow", "keras"))
np.save(sys.argv[3], audio)
print("imported:", banned)
"""


def test_litert_streams_in_a_process_without_ddsp(exported, synth, tmp_path):
    """The export folder alone (host.py + model.tflite) plays the model; our package is not on the path."""
    f0, loudness, z = melody_inputs(60, 4, seed=5)
    np.savez(tmp_path / "inputs.npz", f0=f0, loudness=loudness, z=z, seed=4)
    script = tmp_path / "play.py"
    script.write_text(HOST_SCRIPT)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}  # no PYTHONPATH, no TF flags
    result = subprocess.run([sys.executable, "-I", str(script), str(exported), str(tmp_path / "inputs.npz"),
                             str(tmp_path / "out.npy")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported: []" in result.stdout, result.stdout
    streamed = np.load(tmp_path / "out.npy")
    offline = synth.decode_frames(f0, loudness, z, seed=4)[0]
    assert np.abs(streamed - offline).max() <= AUDIO_TOL * np.abs(offline).max()


def test_the_offline_helpers_match_ddsp():
    """host.resample_frames is ddsp's core.resample; the noise draws the same numbers block by block."""
    from pipeline.compat import import_ddsp
    from pipeline.export import host

    x = np.random.default_rng(0).normal(size=(37, 3)).astype(np.float32)
    for n_out in (37, 100, 8):
        np.testing.assert_allclose(host.resample_frames(x, n_out),
                                   import_ddsp().core.resample(x[None], n_out).numpy()[0], atol=1e-6)
    stream = host.noise_stream(9)
    blocks = np.concatenate([stream.uniform(-1, 1, n).astype(np.float32) for n in (320, 17, 1000)])
    np.testing.assert_array_equal(blocks, host.white_noise(9, 1337)[0])
