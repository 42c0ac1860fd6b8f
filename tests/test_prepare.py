"""The Beam prepare stage on tiny real audio: formats, bad input, splits, ddsp compatibility, atomicity."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import yaml

from pipeline.config import BeamParams, F0Params, PrepareParams
from pipeline.dataset.reader import iter_examples
from pipeline.dataset.tfrecord import DatasetSpec, shard_pattern
from pipeline.prepare.beam import PrepareFailed, assign_splits, run_prepare
from tests.conftest import harmonic_tone, write_audio

SR = 16000
GOOD = {  # name -> (seconds, file rate, f0, channels, soundfile kwargs)
    "a/tone_220.wav": (6.5, 44100, 220.0, 2, {"subtype": "FLOAT"}),
    "a/tone_330.flac": (6.0, 22050, 330.0, 1, {}),
    "b/tone_440.ogg": (5.0, 48000, 440.0, 2, {}),
    "b/tone_262.mp3": (5.0, 44100, 262.0, 1, {}),
    "tone_196.wav": (12.5, 16000, 196.0, 1, {}),
}
BAD = {  # name -> expected reason
    "bad/empty.wav": "empty",
    "bad/truncated.wav": "truncated",
    "bad/not_audio.wav": "unreadable",
    "bad/silent.wav": "silent",
    "bad/has_nan.wav": "non_finite",
    "bad/has_inf.wav": "non_finite",
    "bad/too_short.wav": "too_short",
}


def tiny_params(**overrides) -> PrepareParams:
    base = dict(sample_rate=SR, frame_rate=250, example_secs=2.0, hop_secs=1.0, chunk_secs=10.0,
                eval_fraction=0.3, num_shards=2, f0=F0Params(method="swift"),
                beam=BeamParams(mode="in_memory", num_workers=1))
    base.update(overrides)
    return PrepareParams(**base)


def make_bad_files(root: Path) -> None:
    (root / "bad").mkdir(parents=True, exist_ok=True)
    sf.write(str(root / "bad/empty.wav"), np.zeros(0, np.float32), SR)
    write_audio(root / "bad/truncated.wav", harmonic_tone(3.0, SR, 300.0), SR, subtype="PCM_16")
    data = (root / "bad/truncated.wav").read_bytes()
    (root / "bad/truncated.wav").write_bytes(data[: len(data) // 2])
    (root / "bad/not_audio.wav").write_text("this is a text file with an audio extension\n" * 50)
    write_audio(root / "bad/silent.wav", np.zeros(SR * 3, np.float32), SR)
    for name, value in (("has_nan", np.nan), ("has_inf", np.inf)):
        audio = harmonic_tone(3.0, SR, 300.0)
        audio[SR] = value
        write_audio(root / f"bad/{name}.wav", audio, SR, subtype="FLOAT")
    write_audio(root / "bad/too_short.wav", harmonic_tone(0.3, SR, 300.0), SR)  # below prepare.min_secs
    (root / "notes.txt").write_text("not an audio extension: ignored, not rejected")


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audio")
    for i, (name, (secs, rate, f0, channels, kwargs)) in enumerate(GOOD.items()):
        write_audio(root / name, harmonic_tone(secs, rate, f0, seed=i), rate, channels=channels, **kwargs)
    make_bad_files(root)
    return root


@pytest.fixture(scope="module")
def prepared(audio_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "prepared"
    report = run_prepare(tiny_params(), audio_dir, out, seed=7)
    return out, report


def windows_in(secs: float, example_secs: float = 2.0, hop_secs: float = 1.0) -> int:
    """Windows until the file is covered (the last one padded)."""
    return 1 + max(0, int(np.ceil((secs - example_secs) / hop_secs - 1e-9)))


def test_every_bad_file_is_reported_with_its_reason_and_the_rest_goes_on(prepared):
    _, report = prepared
    reasons = {r["source"]: r["reason"] for r in report["rejected"]}
    assert reasons == BAD
    stats = report["stats"]
    assert stats["files_found"] == len(GOOD) + len(BAD)
    assert stats["files_used"] == len(GOOD)
    assert stats["rejected_by_reason"]["non_finite"] == 2
    assert report["counts"]["rejected_truncated"] == 1
    assert report["counts"]["files_read"] == len(GOOD)


def test_window_counts_and_split_by_file(prepared):
    out, report = prepared
    stats = report["stats"]
    splits = report["splits"]
    seen: dict[str, set] = {}
    counts: dict[str, int] = {}
    for split in ("train", "eval"):
        for ex in iter_examples(out, split):
            seen.setdefault(ex["source"], set()).add(split)
            counts[ex["source"]] = counts.get(ex["source"], 0) + 1
            assert splits[ex["source"]] == split
    assert all(len(s) == 1 for s in seen.values()), "a file landed in both splits"
    assert {"train", "eval"} == {next(iter(s)) for s in seen.values()}
    for name, (secs, *_rest) in GOOD.items():
        assert counts[name] == windows_in(secs), name
    assert stats["examples_train"] + stats["examples_eval"] == sum(windows_in(v[0]) for v in GOOD.values())
    assert 0.9 < stats["voiced_fraction_train"] <= 1.0


def test_features_are_finite_and_measure_the_known_pitch(prepared):
    out, _ = prepared
    spec = DatasetSpec.load(out)
    for split in ("train", "eval"):
        for ex in iter_examples(out, split):
            assert ex["audio"].shape == (spec.n_samples,) and ex["f0_hz"].shape == (spec.n_frames,)
            for key in ("audio", "audio_16k", "f0_hz", "f0_confidence", "loudness_db"):
                assert np.isfinite(ex[key]).all(), key
            secs, _rate, true_f0 = GOOD[ex["source"]][:3]
            real = int(min(spec.example_secs, secs - ex["offset_secs"]) * spec.frame_rate)  # before any padding
            voiced = ex["f0_confidence"][:real] >= 0.5
            cents = 1200 * np.abs(np.log2(ex["f0_hz"][:real][voiced] / true_f0))
            assert voiced.mean() > 0.8 and np.median(cents) < 20, ex["source"]
            assert -1.0 <= ex["audio"].min() and ex["audio"].max() <= 1.0
            assert ex["loudness_db"].max() > -60


def test_ddsp_tfrecord_provider_reads_the_shards_unchanged(prepared):
    from pipeline.compat import import_ddsp

    out, report = prepared
    spec = DatasetSpec.load(out)
    ddsp = import_ddsp()
    for split in ("train", "eval"):
        provider = ddsp.training.data.TFRecordProvider(shard_pattern(out, split), example_secs=spec.example_secs,
                                                       sample_rate=spec.sample_rate, frame_rate=spec.frame_rate)
        examples = list(provider.get_dataset(shuffle=False).as_numpy_iterator())
        assert len(examples) == report["stats"][f"examples_{split}"]
        assert examples[0]["audio"].shape == (spec.n_samples,)
        assert examples[0]["f0_hz"].shape == examples[0]["loudness_db"].shape == (spec.n_frames,)
        batch = next(provider.get_batch(batch_size=2, shuffle=False, repeats=1).as_numpy_iterator())
        assert batch["audio"].shape == (2, spec.n_samples)


def test_chunking_changes_no_window(audio_dir, tmp_path, prepared):
    """Chunk boundaries (10 s here vs one chunk for the 12.5 s file) leave the windows the same."""
    only = tmp_path / "one"
    write_audio(only / "tone_196.wav", harmonic_tone(12.5, 16000, 196.0, seed=4), 16000)
    write_audio(only / "tone_99.wav", harmonic_tone(4.0, 16000, 99.0, seed=9), 16000)
    run_prepare(tiny_params(chunk_secs=60.0), only, tmp_path / "big_chunks", seed=7)
    out, _ = prepared
    small = {ex["offset_secs"]: ex for s in ("train", "eval") for ex in iter_examples(out, s)
             if ex["source"] == "tone_196.wav"}
    big = {ex["offset_secs"]: ex for s in ("train", "eval") for ex in iter_examples(tmp_path / "big_chunks", s)
           if ex["source"] == "tone_196.wav"}
    assert sorted(small) == sorted(big) == [float(i) for i in range(windows_in(12.5))]
    for offset in big:
        np.testing.assert_allclose(small[offset]["audio"], big[offset]["audio"], atol=1e-6)
        np.testing.assert_allclose(small[offset]["loudness_db"], big[offset]["loudness_db"], atol=0.5)
        np.testing.assert_allclose(small[offset]["f0_hz"], big[offset]["f0_hz"], rtol=0.01)


def test_a_file_whose_chunk_fails_analysis_is_dropped_whole(tmp_path, monkeypatch):
    """NaN features in the middle chunk of a 25 s file (chunks of 10 s): that file is rejected and none of its
    windows reach the shards, though its other chunks analysed fine; the other file is untouched."""
    import pipeline.prepare.beam as prepare_beam

    folder = tmp_path / "audio"
    write_audio(folder / "flaky.wav", harmonic_tone(25.0, SR, 196.0, seed=4), SR)
    write_audio(folder / "fine.wav", harmonic_tone(5.0, SR, 262.0, seed=5), SR)
    read_segment, loudness = prepare_beam.read_segment, prepare_beam.compute_loudness_db
    reading = {}

    def noting_the_chunk(info, start, stop, sample_rate):
        reading["flaky"] = Path(info.path).name == "flaky.wav" and 8.0 <= start < 18.0
        return read_segment(info, start, stop, sample_rate)

    def nan_in_one_chunk(*args, **kwargs):
        out = loudness(*args, **kwargs)
        if reading.get("flaky"):
            out = out.copy()
            out[len(out) // 2] = np.nan  # as an analysis glitch mid-file would be
        return out

    monkeypatch.setattr(prepare_beam, "read_segment", noting_the_chunk)
    monkeypatch.setattr(prepare_beam, "compute_loudness_db", nan_in_one_chunk)
    params = tiny_params(chunk_secs=10.0, eval_fraction=0.0)
    report = run_prepare(params, folder, tmp_path / "out", seed=3)
    assert [(r["source"], r["reason"]) for r in report["rejected"]] == [("flaky.wav", "non_finite_features")]
    sources = [ex["source"] for split in ("train", "eval") for ex in iter_examples(tmp_path / "out", split)]
    assert sources == ["fine.wav"] * windows_in(5.0)
    assert report["stats"]["files_used"] == 1 and report["stats"]["examples_train"] == windows_in(5.0)
    decisions = {d["source"]: d["decision"] for d in report["decisions"]}
    assert decisions == {"fine.wav": "used", "flaky.wav": "rejected"}


def test_any_runner_writes_byte_identical_shards(tmp_path):
    """multi_processing (what scales out locally) gives exactly the in-process shards, byte for byte:
    the same audio always gives the same training order and the same evaluated examples."""
    folder = tmp_path / "audio"
    for i in range(3):
        write_audio(folder / f"t{i}.wav", harmonic_tone(5.0, SR, 180.0 + 50 * i, seed=i), SR)
    shards = {}
    for mode, workers in (("in_memory", 1), ("multi_processing", 2)):
        out = tmp_path / mode
        run_prepare(tiny_params(beam=BeamParams(mode=mode, num_workers=workers)), folder, out, seed=3)
        shards[mode] = {path.name: path.read_bytes() for path in sorted(out.glob("*.tfrecord-*"))}
    assert sorted(shards["in_memory"]) == [f"{split}.tfrecord-0000{i}-of-00002" for split in ("eval", "train")
                                           for i in range(2)]
    assert shards["in_memory"] == shards["multi_processing"]
    examples = [(ex["source"], ex["offset_secs"]) for split in ("train", "eval")
                for ex in iter_examples(tmp_path / "in_memory", split)]
    assert len(examples) == len(set(examples)) == 3 * windows_in(5.0)
    # a shard (its chunks' piece files concatenated) is what one TFRecordWriter writes, in (source, offset) order
    for name, data in shards["in_memory"].items():
        path = tmp_path / "in_memory" / name
        records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
        features = [tf.train.Example.FromString(r).features.feature for r in records]
        keys = [(f["source"].bytes_list.value[0], f["offset_secs"].float_list.value[0]) for f in features]
        assert keys == sorted(keys)
        with tf.io.TFRecordWriter(str(tmp_path / "rewritten")) as writer:
            for record in records:
                writer.write(record)
        assert (tmp_path / "rewritten").read_bytes() == data
    assert not (tmp_path / "in_memory" / "pieces").exists()


def test_zero_usable_examples_fails_and_says_why(tmp_path):
    make_bad_files(tmp_path / "audio")
    with pytest.raises(PrepareFailed, match=r"zero usable examples.*silent"):
        run_prepare(tiny_params(), tmp_path / "audio", tmp_path / "out", seed=0)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_splits_are_stable_and_both_present():
    sources = [f"f{i}.wav" for i in range(30)]
    splits = assign_splits(sources, 0.2, seed=3)
    assert 2 <= sum(v == "eval" for v in splits.values()) <= 12
    grown = assign_splits(sources + ["new.wav"], 0.2, seed=3)
    assert all(grown[s] == splits[s] for s in sources), "adding a file moved another file's split"
    two = assign_splits(["x.wav", "y.wav"], 0.2, seed=0)
    assert sorted(two.values()) == ["eval", "train"]


def test_killed_run_leaves_nothing_complete_looking_and_rerun_starts_clean(tmp_path):
    """kill -9 mid-run: no out folder appears, the old one is untouched; the rerun replaces it."""
    project = tmp_path / "project"
    for i in range(4):
        write_audio(project / "audio" / f"t{i}.wav", harmonic_tone(12.0, SR, 150.0 + 40 * i, seed=i), SR)
    params = {"seed": 1, "prepare": {"audio_dir": "audio", "out_dir": "data/prepared", "example_secs": 2.0,
                                     "chunk_secs": 10.0, "eval_fraction": 0.25, "num_shards": 1,
                                     "n_plot_examples": 1, "beam": {"mode": "in_memory", "num_workers": 1}}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    out = project / "data/prepared"
    out.mkdir(parents=True)
    (out / "old_marker").write_text("previous complete output")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.Popen([sys.executable, "-m", "stages.prepare"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not list((project / "data").glob("prepared.partial/*")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "old_marker").exists() and not list(out.glob("*.tfrecord-*"))
    rerun = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not (project / "data/prepared.partial").exists()
    assert not (out / "old_marker").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "eval.tfrecord-00000-of-00001", "report.json", "spec.json", "train.tfrecord-00000-of-00001"]
    metrics = json.loads((project / "metrics/prepare.json").read_text())
    assert metrics["examples_train"] + metrics["examples_eval"] == 4 * windows_in(12.0)
    assert len(list((project / "reports/prepare").glob("*.png"))) == 1
