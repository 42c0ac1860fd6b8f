"""Ingest decisions on a folder of mixed real and broken files, each built here: short files used
(their last window padded once), unpitched files rejected, every format and layout read right,
broken containers rejected, clipping warned about, and every decision reported under its own name."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from pipeline.audio.features import loudness_floor_db
from pipeline.config import BeamParams, F0Params, PrepareParams
from pipeline.dataset.reader import iter_examples
from pipeline.prepare.beam import describe, run_prepare
from tests.conftest import harmonic_tone, write_audio

SR = 16000
FR = 250
EXAMPLE_SECS, HOP_SECS = 2.0, 1.0

# name -> (seconds, file rate, f0, channels, soundfile kwargs); every one is used
USED = {
    "u8_8k.wav": (2.0, 8000, 220.0, 1, {"subtype": "PCM_U8"}),
    "hires_96k_24bit.flac": (2.0, 96000, 330.0, 1, {"subtype": "PCM_24"}),
    "six_channels_48k.wav": (2.0, 48000, 262.0, 6, {"subtype": "PCM_16"}),
    "eight_channels_22k.wav": (2.5, 22050, 294.0, 8, {"subtype": "PCM_16"}),
    "float32.wav": (3.0, 44100, 196.0, 2, {"subtype": "FLOAT"}),
    "short.mp3": (2.0, 44100, 247.0, 1, {}),
    "short.ogg": (2.0, 44100, 392.0, 2, {}),
    "three_secs.wav": (3.0, 16000, 175.0, 1, {}),
    "UPPER CASE.AIFF": (2.0, 44100, 440.0, 1, {"subtype": "PCM_16"}),
    "ünïcødé name – ♪.WAV": (2.0, 32000, 349.0, 1, {}),
    "sub folder/half second.flac": (0.6, 16000, 523.0, 1, {}),
}
CLIPPED = "clipped.wav"
REJECTED = {
    "too_short.wav": "too_short",
    "dc.wav": "unpitched",
    "white_noise.flac": "unpitched",
    "clicks.wav": "unpitched",
    "truncated.flac": "unreadable",
    "corrupt.flac": "unreadable",
    "truncated.ogg": "truncated",
    "corrupt.ogg": "unreadable",
    "truncated.mp3": "truncated",
    "corrupt.mp3": "unreadable",
}


def tiny_params(**overrides) -> PrepareParams:
    base = dict(sample_rate=SR, frame_rate=FR, example_secs=EXAMPLE_SECS, hop_secs=HOP_SECS, chunk_secs=10.0,
                eval_fraction=0.0, num_shards=1, f0=F0Params(method="swift"),
                beam=BeamParams(mode="in_memory", num_workers=1))
    base.update(overrides)
    return PrepareParams(**base)


def windows(secs: float) -> int:
    return 1 + max(0, int(np.ceil((secs - EXAMPLE_SECS) / HOP_SECS - 1e-9)))


def _cut(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _scramble(path: Path, start: float, length: int) -> None:
    data = bytearray(path.read_bytes())
    at = int(len(data) * start)
    data[at:at + length] = np.random.default_rng(0).integers(0, 256, length, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def make_mixed_folder(root: Path) -> Path:
    for i, (name, (secs, rate, f0, channels, kwargs)) in enumerate(USED.items()):
        write_audio(root / name, harmonic_tone(secs, rate, f0, seed=i), rate, channels=channels, **kwargs)
    loud = np.clip(harmonic_tone(3.0, SR, 220.0) * 6.0, -1.0, 1.0)  # a hot take: peaks flattened at full scale
    write_audio(root / CLIPPED, loud, SR, subtype="PCM_16")
    write_audio(root / "too_short.wav", harmonic_tone(0.3, SR, 300.0), SR)
    write_audio(root / "dc.wav", np.full(5 * SR, 0.3, np.float32), SR)
    write_audio(root / "white_noise.flac", np.random.default_rng(1).normal(0, 0.2, 3 * SR).astype(np.float32), SR)
    clicks = np.zeros(4 * SR, np.float32)
    clicks[:: SR // 4] = 0.9
    write_audio(root / "clicks.wav", clicks, SR)
    for ext in ("flac", "ogg", "mp3"):
        for kind in ("truncated", "corrupt"):
            write_audio(root / f"{kind}.{ext}", harmonic_tone(6.0, 44100, 220.0), 44100)
        _cut(root / f"truncated.{ext}", 0.5)
    _scramble(root / "corrupt.flac", 0.4, 2000)   # frames in the middle: the decoder fails there
    _scramble(root / "corrupt.ogg", 0.0, 200)     # the stream header: not recognisable as Ogg Vorbis
    _scramble(root / "corrupt.mp3", 0.0, 1200)    # the first frames: no MPEG sync where the header says
    (root / "notes.txt").write_text("not audio by extension: not even considered")
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = make_mixed_folder(tmp_path_factory.mktemp("mixed") / "audio")
    out = tmp_path_factory.mktemp("prepared") / "prepared"
    report = run_prepare(tiny_params(), root, out, seed=5)
    return root, out, report


def examples_by_source(out: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for ex in iter_examples(out, "train"):
        found.setdefault(ex["source"], []).append(ex)
    return found


def test_every_file_gets_one_decision_with_its_reason(mixed):
    _, _, report = mixed
    decisions = {d["source"]: d for d in report["decisions"]}
    assert sorted(decisions) == sorted([*USED, CLIPPED, *REJECTED])
    assert {s: d["reason"] for s, d in decisions.items() if d["decision"] == "rejected"} == REJECTED
    assert {s for s, d in decisions.items() if d["decision"] == "used"} == {*USED, CLIPPED}
    for source, d in decisions.items():
        assert d["detail"], source
        line = describe(d)
        assert source in line and (d["reason"] in line or d["decision"] == "used")
    assert "unpitched" in report["stats"]["rejected_by_reason"]


def test_short_files_are_used_with_their_last_window_padded_once(mixed):
    _, out, report = mixed
    found = examples_by_source(out)
    floor = loudness_floor_db()
    for name, (secs, *_rest) in USED.items():
        exs = sorted(found[name], key=lambda ex: ex["offset_secs"])
        assert [ex["offset_secs"] for ex in exs] == [float(j) for j in range(windows(secs))], name
        last = exs[-1]
        real = secs - last["offset_secs"]
        if real < EXAMPLE_SECS:  # padding: zero audio, loudness at the floor, confidence 0
            first_pad_frame = int(np.ceil(real * FR))
            assert np.all(last["audio"][int(np.ceil(real * SR)) + 1:] == 0.0), name
            np.testing.assert_array_equal(last["loudness_db"][first_pad_frame:], floor)
            np.testing.assert_array_equal(last["f0_confidence"][first_pad_frame:], 0.0)
            assert last["loudness_db"][: first_pad_frame - 10].max() > -60, name
    half = found["sub folder/half second.flac"]
    assert len(half) == 1 and half[0]["audio"].shape == (int(EXAMPLE_SECS * SR),)
    decision = next(d for d in report["decisions"] if d["source"] == "sub folder/half second.flac")
    assert decision["padded_secs"] == pytest.approx(1.4)


def test_formats_and_layouts_are_read_at_the_right_level_and_pitch(mixed):
    _, out, _ = mixed
    found = examples_by_source(out)
    for name, (secs, rate, f0, channels, _kwargs) in USED.items():
        ex = found[name][0]
        n_real = int(min(secs, EXAMPLE_SECS) * SR) - 200
        audio = ex["audio"][:n_real]
        expected = harmonic_tone(min(secs, EXAMPLE_SECS), SR, f0)[:n_real]
        # the right scale and no DC offset (8-bit unsigned is centred: no +0.5 left over)
        assert abs(float(audio.mean())) < 0.01, name
        assert np.std(audio) == pytest.approx(np.std(expected), rel=0.15), name
        voiced = ex["f0_confidence"][: int(min(secs, EXAMPLE_SECS) * FR) - 20] >= 0.5
        assert voiced.mean() > 0.6, name
        cents = 1200 * np.abs(np.log2(ex["f0_hz"][: len(voiced)][voiced] / f0))
        assert np.median(cents) < 25, name


def test_unpitched_files_name_their_voiced_share(mixed):
    _, out, report = mixed
    found = examples_by_source(out)
    for name in ("dc.wav", "white_noise.flac", "clicks.wav"):
        decision = next(d for d in report["decisions"] if d["source"] == name)
        assert "voiced share 0.0" in decision["detail"] and "min_voiced_fraction" in decision["detail"]
        assert name not in found, f"{name}'s windows reached the shards"
    written = sum(len(v) for v in found.values())
    assert written == report["stats"]["examples_train"]


def test_clipped_audio_is_used_with_a_warning(mixed):
    _, out, report = mixed
    decision = next(d for d in report["decisions"] if d["source"] == CLIPPED)
    assert decision["decision"] == "used"
    assert [w["warning"] for w in decision["warnings"]] == ["clipped"]
    assert all(not d["warnings"] for d in report["decisions"] if d["source"] in USED)
    assert len(examples_by_source(out)[CLIPPED]) == windows(3.0)
    assert report["stats"]["files_with_warnings"] == 1


def test_report_json_keeps_names_unmangled(mixed):
    root, out, _ = mixed
    text = (out / "report.json").read_text(encoding="utf-8")
    assert str(root.resolve()) not in text  # files are named relative to the folder, decoder messages too
    assert "ünïcødé name – ♪.WAV" in text and "UPPER CASE.AIFF" in text and "sub folder/half second.flac" in text
    assert {ex["source"] for ex in iter_examples(out, "train")} >= {"ünïcødé name – ♪.WAV", "UPPER CASE.AIFF"}


def test_stage_console_lists_every_decision_and_skips_the_default_corpus(tmp_path):
    """The real stages in a project whose prepare.audio_dir is the user's own folder: corpus renders
    nothing, prepare prints one line per file with its reason."""
    from services import REPO_ROOT, stage_env

    project = tmp_path / "project"
    audio = project / "my recordings"
    write_audio(audio / "cello ♪.wav", harmonic_tone(2.0, SR, 131.0), SR)
    write_audio(audio / "viola.flac", harmonic_tone(2.5, SR, 196.0, seed=1), SR)
    write_audio(audio / "dc.wav", np.full(3 * SR, 0.2, np.float32), SR)
    write_audio(audio / "tiny.wav", harmonic_tone(0.2, SR, 300.0), SR)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["prepare"].update(audio_dir="my recordings", example_secs=2.0, eval_fraction=0.0, num_shards=1,
                             n_plot_examples=0)
    params["tracking"]["enabled"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    for folder in ("pipeline", "stages"):
        subprocess.run(["cp", "-r", str(REPO_ROOT / folder), str(project / folder)], check=True)
    env = stage_env()
    corpus = subprocess.run([sys.executable, "-m", "stages.corpus"], cwd=project, env=env, capture_output=True,
                            text=True, timeout=300)
    assert corpus.returncode == 0, corpus.stderr[-3000:]
    assert "not rendered" in corpus.stdout
    assert [p.name for p in (project / "data/corpus").iterdir()] == ["NOT_RENDERED.txt"]
    prepare = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=project, env=env, capture_output=True,
                             text=True, timeout=600)
    assert prepare.returncode == 0, prepare.stderr[-3000:]
    lines = [line for line in prepare.stderr.splitlines() if line.startswith("prepare: ")]
    assert any(line.startswith("prepare: used cello ♪.wav: 2.00 s") for line in lines), lines
    assert any(line.startswith("prepare: used viola.flac: 2.50 s") for line in lines), lines
    assert any(line.startswith("prepare: rejected dc.wav: unpitched (voiced share") for line in lines), lines
    assert any(line.startswith("prepare: rejected tiny.wav: too_short") for line in lines), lines
    report = json.loads((project / "data/prepared/report.json").read_text(encoding="utf-8"))
    assert [d["decision"] for d in report["decisions"]] == ["used", "rejected", "rejected", "used"]
    assert sf.info(str(audio / "cello ♪.wav")).frames == 2 * SR  # inputs untouched
