"""The autoencoder: config validation, training, exact resume after kill -9, save/load, decoding.

Tiny models on 1 s synthetic tones keep this file to a few minutes on 2 cores.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.config import MFCC_ENCODER_HOPS, TRAIN_PRESETS, ConfigError, TrainParams, parse_params
from pipeline.dataset.tfrecord import DatasetSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = DatasetSpec(sample_rate=16000, frame_rate=250, example_secs=1.0, f0_method="swift")
TINY = dict(decoder_frame_rate=50, z_dims=4, z_time_steps=32, encoder_rnn_channels=16, decoder_rnn_channels=32,
            decoder_fc_channels=32, decoder_layers=1, n_harmonics=16, n_noise_bands=8, reverb=True,
            reverb_length=800, fft_sizes=[512, 128], batch_size=4, learning_rate=3e-3, eval_examples=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from tests.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("prepared"), SPEC, n_train=12, n_eval=4, seed=3)


def tiny(**overrides) -> TrainParams:
    return TrainParams(**{**TINY, **overrides})


# --- config --------------------------------------------------------------------------------------

def test_null_keys_take_the_preset_value_and_overrides_win():
    resolved = parse_params({"train": {"preset": "paper", "steps": 7, "n_harmonics": None}}).train.resolved()
    assert resolved.steps == 7
    assert resolved.n_harmonics == TRAIN_PRESETS["paper"]["n_harmonics"] == 100
    assert resolved.encoder_rnn_channels == 512 and resolved.fft_sizes == [2048, 1024, 512, 256, 128, 64]
    assert all(value is not None for value in resolved.model_dump().values())


def test_invalid_z_time_steps_names_the_key_and_the_allowed_values():
    with pytest.raises(ConfigError) as err:
        parse_params({"train": {"z_time_steps": 100}})
    message = str(err.value)
    assert "train.z_time_steps" in message and "[63, 125, 250, 500, 1000]" in message
    # the allowed set follows the example length: 1 s examples give other frame counts
    with pytest.raises(ConfigError, match=r"train\.z_time_steps.*\[16, 32, 63, 125, 250\]"):
        parse_params({"prepare": {"example_secs": 1.0}, "train": {"z_time_steps": 1000}})


def test_invalid_preset_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.preset.*'cpu' or 'paper'"):
        parse_params({"train": {"preset": "gpu"}})


def test_config_checked_against_the_prepared_data():
    from pipeline.model.build import resolve_for_dataset

    with pytest.raises(ConfigError, match=r"train\.z_time_steps"):
        resolve_for_dataset(TrainParams(z_time_steps=125 * 8), SPEC)


def test_z_frame_table_matches_ddsp_encoder(dataset):
    """Our table of ddsp's hops is ddsp's, and the encoder really gives z_time_steps frames."""
    import tensorflow as tf

    from pipeline.compat import import_ddsp
    from pipeline.model.build import build_autoencoder

    encoders = import_ddsp().training.encoders
    for key, hop in MFCC_ENCODER_HOPS.items():
        spec = encoders.MfccTimeDistributedRnnEncoder(z_time_steps=key).z_audio_spec[str(key)]
        assert spec["fft_size"] * (1 - spec["overlap"]) == hop
    for z_time_steps in (16, 63):
        model = build_autoencoder(tiny(z_time_steps=z_time_steps), SPEC)
        z = model.encoder.compute_z(tf.zeros([2, SPEC.n_samples]))
        assert z.shape == (2, z_time_steps, TINY["z_dims"])


def test_checkpoints_of_another_configuration_are_not_resumed(tmp_path):
    from pipeline.model.train import claim_checkpoint_dir

    folder = tmp_path / "checkpoints"
    assert not claim_checkpoint_dir(folder, {"train": {"z_dims": 4}})
    (folder / "ckpt-5.index").write_text("")
    assert not claim_checkpoint_dir(folder, {"train": {"z_dims": 4}})  # same run: keep, resume
    assert (folder / "ckpt-5.index").exists()
    assert claim_checkpoint_dir(folder, {"train": {"z_dims": 8}})  # another model: start afresh
    assert [p.name for p in folder.iterdir()] == ["run.json"]


# --- training ------------------------------------------------------------------------------------

def test_loss_falls_on_a_repeated_batch(dataset, tmp_path):
    import tensorflow as tf

    from pipeline.dataset.reader import train_batches
    from pipeline.model.build import build_autoencoder
    from pipeline.model.train import LOSS_LOG, Trainer

    tf.keras.utils.set_random_seed(0)
    train = tiny(steps=30, checkpoint_every=30)
    batch = next(iter(train_batches(dataset, SPEC, train.batch_size, seed=0)))
    trainer = Trainer(lambda: build_autoencoder(train, SPEC), train, tf.distribute.get_strategy(), tmp_path)
    trainer.build(batch)
    assert trainer.restore() == 0
    assert trainer.fit(tf.data.Dataset.from_tensors(batch).repeat()) == 30
    with (tmp_path / LOSS_LOG).open() as handle:
        rows = list(csv.DictReader(handle))
    losses = [float(row["loss"]) for row in rows]
    assert [int(row["step"]) for row in rows] == list(range(1, 31))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-30")


def test_batch_order_is_a_function_of_seed_and_step(dataset):
    """A pipeline started at step i yields exactly the batches a pipeline started at 0 yields from i on;
    every epoch visits each example once; another seed gives another order."""
    from pipeline.dataset.reader import train_batches

    def sources(start: int, n: int, seed: int = 1) -> list[list[float]]:
        batches = iter(train_batches(dataset, SPEC, 5, seed=seed, start_step=start))
        return [next(batches)["audio"][:, 100].numpy().tolist() for _ in range(n)]

    full = sources(0, 12)  # 12 train examples, batches of 5: batches straddle epochs
    for start in (1, 5, 7):
        assert sources(start, 12 - start) == full[start:], start
    stream = [x for batch in full for x in batch]
    for epoch in range(4):
        assert len(set(stream[12 * epoch:12 * (epoch + 1)])) == 12  # a permutation of the 12 examples
    assert stream[:12] != stream[12:24] and sources(0, 3, seed=2) != full[:3]


STEPS = 80
CHECKPOINT_EVERY = 10
WALL_CLOCK_COLUMNS = ("steps_per_s",)  # the loss log's only column that records time, not training
STAGE_DEADLINE_SECS = 600


def _project(tmp_path: Path, dataset: Path, steps: int, checkpoint_every: int) -> Path:
    params = {"seed": 5, "prepare": {"out_dir": str(dataset), "example_secs": SPEC.example_secs},
              "train": {**TINY, "steps": steps, "checkpoint_every": checkpoint_every, "eval_examples": 2,
                        "n_reconstructions": 1, "jit_compile": False},  # XLA compiles twice: slower here
              "tracking": {"enabled": False}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _shown_step(log: Path) -> int:
    """The last step tqdm's progress bar showed in the stage's log (0 before the first)."""
    shown = re.findall(rf"\b(\d+)/{STEPS}\b", log.read_text(errors="replace"))
    return int(shown[-1]) if shown else 0


def _run_stage(project: Path, kill_at_step: int | None = None) -> str:
    """Run ``python -m stages.train`` in ``project``; with ``kill_at_step``, kill -9 it once it shows that step."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log_path = project / "stage.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=project, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STAGE_DEADLINE_SECS
            while kill_at_step and process.poll() is None and _shown_step(log_path) < kill_at_step:
                assert time.monotonic() < deadline, f"no step {kill_at_step} in {STAGE_DEADLINE_SECS} s"
                time.sleep(0.05)
            if kill_at_step:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=STAGE_DEADLINE_SECS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log_path.read_text()
    if kill_at_step:
        assert process.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{output[-3000:]}"
    else:
        assert process.returncode == 0, output[-3000:]
    return output


def _checkpoint_state(folder: Path) -> dict[str, np.ndarray]:
    """Every variable of the newest checkpoint: weights, Adam's moments and iterations, the step counter."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(folder)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def _loss_rows(project: Path) -> list[dict]:
    with (project / "metrics" / "train_loss.csv").open() as handle:
        return [{key: value for key, value in row.items() if key not in WALL_CLOCK_COLUMNS}
                for row in csv.DictReader(handle)]


def test_resume_after_kill_at_a_random_step_ends_bit_for_bit_where_an_uninterrupted_run_ends(dataset, tmp_path):
    """kill -9 at a random step (not only right after a checkpoint), rerun the same command: the final
    weights, optimiser state, loss curve and held-out metrics equal those of a run never killed."""
    kill_at = random.SystemRandom().randrange(CHECKPOINT_EVERY + 1, STEPS - 5)
    where = f"(killed at step {kill_at})"
    straight = _project(tmp_path / "straight", dataset, STEPS, CHECKPOINT_EVERY)
    _run_stage(straight)

    resumed = _project(tmp_path / "resumed", dataset, STEPS, CHECKPOINT_EVERY)
    first = _run_stage(resumed, kill_at_step=kill_at)
    checkpoints = resumed / "models" / "checkpoints"
    restored = max(int(p.stem.split("-")[1]) for p in checkpoints.glob("ckpt-*.index"))
    assert CHECKPOINT_EVERY <= restored < STEPS, first[-2000:]
    assert not (resumed / "models" / "autoencoder").exists()
    second = _run_stage(resumed)
    assert f"resuming from step {restored}" in second, where

    a, b = _checkpoint_state(straight / "models" / "checkpoints"), _checkpoint_state(checkpoints)
    assert sorted(a) == sorted(b)
    # Adam's moments and iteration count are compared too, not only the weights
    assert "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE" in a
    n_weights = sum(name.startswith("model/") for name in a)
    assert sum(name.startswith("optimizer/_variables/") for name in a) >= 2 * n_weights  # m and v per weight
    assert int(b["step/.ATTRIBUTES/VARIABLE_VALUE"]) == STEPS
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{name} {where}")
    # the loss curve continues: every step once, each loss as in the uninterrupted run
    assert [int(row["step"]) for row in _loss_rows(resumed)] == list(range(1, STEPS + 1))
    assert _loss_rows(resumed) == _loss_rows(straight), where
    metrics = json.loads((resumed / "metrics" / "train.json").read_text())
    assert metrics == json.loads((straight / "metrics" / "train.json").read_text()), where
    assert metrics["steps"] == STEPS
    assert set(metrics["untrained"]) == set(metrics["trained"]) == {
        "loudness_l1_db", "f0_l1_cents", "f0_rpa", "f0_outlier_ratio", "spectral_distance"}
    model_dir = resumed / "models" / "autoencoder"
    assert {p.name for p in (model_dir / "reconstructions").iterdir()} == {
        "example_00.png", "example_00_original.wav", "example_00_resynthesis.wav"}
    assert json.loads((model_dir / "config.json").read_text())["train"]["steps"] == STEPS
    for path in sorted(p for p in (straight / "models" / "autoencoder").rglob("*") if p.is_file()):
        twin = model_dir / path.relative_to(straight / "models" / "autoencoder")
        assert twin.read_bytes() == path.read_bytes(), f"{twin} differs {where}"


# --- the saved model and its halves --------------------------------------------------------------

def test_load_model_round_trip_gives_identical_outputs(dataset, tmp_path):
    import tensorflow as tf

    from pipeline.dataset.reader import ordered_batches
    from pipeline.model.build import build_autoencoder
    from pipeline.model.decode import encode_z, synthesize
    from pipeline.model.store import load_model, write_model

    tf.keras.utils.set_random_seed(1)
    train = tiny()
    model = build_autoencoder(train, SPEC)
    batch = next(iter(ordered_batches(dataset, "eval", SPEC, 2)))
    features = {key: batch[key] for key in ("audio", "f0_hz", "loudness_db")}
    model(dict(features), training=False)
    write_model(model, tmp_path / "model", train, SPEC)
    loaded = load_model(tmp_path / "model")

    def outputs(m):
        tf.random.set_seed(7)  # the filtered-noise synth draws noise: same seed, same draw
        return m(dict(features), training=False)["audio_synth"].numpy()

    np.testing.assert_array_equal(outputs(model), outputs(loaded))
    np.testing.assert_array_equal(encode_z(model, features).numpy(), encode_z(loaded, features).numpy())
    z = encode_z(model, features)
    a = synthesize(model, batch["f0_hz"], batch["loudness_db"], z, SPEC.frame_rate)
    b = synthesize(loaded, batch["f0_hz"], batch["loudness_db"], z, SPEC.frame_rate)
    np.testing.assert_array_equal(a.harmonic, b.harmonic)
    for name in a.controls:
        np.testing.assert_array_equal(a.controls[name], b.controls[name])


def test_decode_any_length_with_separate_harmonic_and_noise():
    import tensorflow as tf

    from pipeline.model.build import build_autoencoder
    from pipeline.model.decode import decode, decoder_outputs, encode_z, noise_seed_tensor, synthesize
    from pipeline.model.store import placeholder_batch

    model = build_autoencoder(tiny(reverb=False), SPEC)
    model(placeholder_batch(SPEC), training=False)
    frames = 3 * SPEC.frame_rate  # 3 s, three times the training example length
    f0 = np.full([2, frames], 220.0, np.float32)
    loudness = np.full([2, frames], -30.0, np.float32)
    z = np.random.default_rng(0).normal(size=[2, 3 * TINY["z_time_steps"], TINY["z_dims"]]).astype(np.float32)

    out = synthesize(model, f0, loudness, z, SPEC.frame_rate)
    assert out.audio.shape == out.harmonic.shape == out.noise.shape == (2, 3 * SPEC.sample_rate)
    np.testing.assert_allclose(out.audio, out.harmonic + out.noise, atol=1e-6)  # no reverb: the mix is the sum
    assert out.controls["harmonic_distribution"].shape == (2, 3 * TINY["decoder_frame_rate"], TINY["n_harmonics"])
    assert np.isfinite(out.audio).all() and np.abs(out.harmonic).max() > 0
    # ddsp's encoder hops 512 samples for 32 frames per 1 s example: ceil(48000 / 512) frames for 3 s
    assert encode_z(model, {"audio": out.audio}).shape == (2, math.ceil(out.audio.shape[1] / 512), TINY["z_dims"])
    # the same noise draw gives the same audio, and the model keeps its training length afterwards
    tf.random.set_seed(3)
    first = decode(model, f0[:1], loudness[:1], z[:1], SPEC.frame_rate)
    tf.random.set_seed(3)
    np.testing.assert_array_equal(first, decode(model, f0[:1], loudness[:1], z[:1], SPEC.frame_rate))
    # a noise seed makes the noise part reproducible without touching the global seed, compiled too
    seeded = decode(model, f0[:1], loudness[:1], z[:1], SPEC.frame_rate, noise_seed=3)
    np.testing.assert_array_equal(seeded, decode(model, f0[:1], loudness[:1], z[:1], SPEC.frame_rate, noise_seed=3))
    assert not np.array_equal(seeded, decode(model, f0[:1], loudness[:1], z[:1], SPEC.frame_rate, noise_seed=4))
    compiled = tf.function(lambda seed: decoder_outputs(model, f0[:1], loudness[:1], z[:1], SPEC.frame_rate, seed))
    once, twice = (compiled(noise_seed_tensor(3))["audio"].numpy() for _ in range(2))
    np.testing.assert_array_equal(once, twice)
    np.testing.assert_allclose(once, seeded, atol=1e-4)  # graph and eager round differently, same noise
    assert model.processor_group.harmonic.n_samples == SPEC.n_samples
