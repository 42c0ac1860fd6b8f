"""sample@K and the generate command on a tiny real model: clips, manifest, metrics, determinism."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pretty_midi
import pytest
import soundfile as sf
import yaml

from pipeline.dataset.tfrecord import DatasetSpec
from pipeline.generation.render import CLIPS_FILE

SPEC = DatasetSpec(sample_rate=16000, frame_rate=250, example_secs=1.0, f0_method="swift")
TINY_TRAIN = dict(decoder_frame_rate=50, z_dims=4, z_time_steps=32, encoder_rnn_channels=16, decoder_rnn_channels=32,
                  decoder_fc_channels=32, decoder_layers=1, n_harmonics=16, n_noise_bands=8, reverb=True,
                  reverb_length=800, fft_sizes=[512, 128], batch_size=4)


def write_z_table(path, n_examples: int, z_frames: int, z_dims: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for example in range(n_examples):
        centre = (example % 2) * 3.0
        walk = centre + np.cumsum(rng.normal(0, 0.2, (z_frames, z_dims)), axis=0) * 0.3
        for frame in range(z_frames):
            rows.append({"example_id": example, "source": f"s{example}.wav", "split": "eval" if example % 4 == 0 else "train",
                         "frame": frame, "f0_hz": 220.0, "loudness_db": -20.0,
                         **{f"z_{d}": walk[frame, d] for d in range(z_dims)}})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    import tensorflow as tf

    from pipeline.config import TrainParams
    from pipeline.model.build import build_autoencoder
    from pipeline.model.store import placeholder_batch, write_model
    from tests.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("project")
    write_synthetic_dataset(root / "data/prepared", SPEC, n_train=6, n_eval=3, seed=1)
    tf.keras.utils.set_random_seed(0)
    train = TrainParams(**TINY_TRAIN)
    model = build_autoencoder(train, SPEC)
    model(placeholder_batch(SPEC), training=False)
    write_model(model, root / "models/autoencoder", train, SPEC)
    write_z_table(root / "data/z/z_frames.parquet", n_examples=24, z_frames=32, z_dims=4)
    params = {"seed": 3, "prepare": {"example_secs": 1.0}, "train": TINY_TRAIN,
              "gmm": {"n_components": [2], "n_init": 1},
              "sample": {"conditionings": ["seed", "seed_report_scale", "midi", "real"], "batch_size": 4,
                         "n_real": 2, "n_draws": 2, "report_scale_examples": 4}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    return project


def test_sample_stage_writes_every_planned_clip_with_its_metrics(in_project):
    from stages import fit_gmm, sample

    fit_gmm.main(["--k", "2"])
    assert (in_project / "models/gmm/k2/conditional/conditional.json").is_file()
    sample.main(["--k", "2"])
    clips = pd.read_csv(in_project / "samples/k2" / CLIPS_FILE)
    # 3 constant/MIDI conditionings x (1 direct + 2 clusters x {inverse_transform, temporal, temporal_hold,
    # conditional}), and on real contours 2 examples x 2 draws x 5 methods
    assert len(clips) == 3 * (1 + 2 * 4) + 2 * 2 * 5
    assert set(clips["method"]) == {"direct", "inverse_transform", "temporal", "temporal_hold", "conditional"}
    assert set(clips["conditioning"]) == {"seed", "seed_report_scale", "midi", "real"}
    real = clips[clips["conditioning"] == "real"]
    assert set(real["example"]) == {0, 1} and set(real["draw"]) == {0, 1}
    assert (clips.loc[clips["conditioning"] != "real", "example"] == -1).all()
    # the same (example, draw) gives every unconditional cluster method the same cluster, so they pair up
    per_draw = real[real["method"].isin(["inverse_transform", "temporal", "temporal_hold"])]
    assert (per_draw.groupby(["example", "draw"])["cluster"].nunique() == 1).all()
    for row in clips.itertuples():
        audio, rate = sf.read(in_project / "samples/k2" / row.wav)
        assert rate == 16000 and len(audio) == 16000
        # spectrograms only for what the report shows: non-real clips and real draw 0 of example 0
        shown = row.conditioning != "real" or (row.example == 0 and row.draw == 0)
        assert isinstance(row.png, str) == shown
        if shown:
            assert (in_project / "samples/k2" / row.png).stat().st_size > 1000
    for name in ("f0_rpa", "hnr_db", "spectral_flatness", "timbre_consistency", "frechet_clip_to_set", "reencode_loglik"):
        assert np.isfinite(clips[name]).all(), name
    assert np.isfinite(real["spectral_distance_to_real"]).all() and (real["spectral_distance_to_real"] > 0).all()
    assert clips.loc[clips["conditioning"] != "real", "spectral_distance_to_real"].isna().all()
    fitted = json.loads((in_project / "samples/k2/conditionings.json").read_text())
    assert fitted["seed_report_scale"]["loudness_db_v3"] > -80.0
    assert set(fitted["midi_envelope"]["params"]) >= {"floor_db", "peak_db_softest", "peak_db_loudest"}
    seed_report = clips[clips["conditioning"] == "seed_report_scale"]
    sf_seed, _ = sf.read(in_project / "samples/k2" / seed_report["wav"].iloc[0])
    assert sf_seed.std() > 0
    direct = clips[clips["method"] == "direct"]
    assert direct["cluster_weight"].isna().all() and (direct["component_switches"] > 0).all()
    per_cluster = clips[clips["method"] == "inverse_transform"]
    assert (per_cluster["component_switches"] == 0).all()
    assert set(per_cluster["cluster"]) == {0, 1}
    assert clips["invalid_reason"].astype("string").fillna("").eq("").eq(clips["valid"]).all()


def test_anchors_stage_decodes_mean_z_everywhere_and_resynthesis_on_real_contours(in_project):
    from stages import anchors

    anchors.main()
    folder = in_project / "samples/anchors"
    clips = pd.read_csv(folder / CLIPS_FILE)
    # mean_z on seed, seed_report_scale, midi and 2 real examples; resynthesis on the 2 real examples
    assert sorted(zip(clips["method"], clips["conditioning"], clips["example"])) == sorted(
        [("mean_z", c, -1) for c in ("seed", "seed_report_scale", "midi")]
        + [(m, "real", e) for m in ("mean_z", "resynthesis") for e in (0, 1)])
    real = clips[clips["conditioning"] == "real"]
    assert np.isfinite(real["spectral_distance_to_real"]).all()
    assert sorted(p.name for p in (folder / "real").glob("*.wav")) == ["real_e0.wav", "real_e1.wav"]
    reference, rate = sf.read(folder / "real/real_e0.wav")
    assert rate == 16000 and len(reference) == 16000 and np.abs(reference).max() > 0.01
    # anchors and samples decode the same contours: the same fitted loudness map and envelope
    if (in_project / "samples/k2/conditionings.json").is_file():
        assert (folder / "conditionings.json").read_text() == (in_project / "samples/k2/conditionings.json").read_text()
    assert json.loads((in_project / "metrics/anchors.json").read_text())["real"]["resynthesis"]["n_clips"] == 2


def test_generate_plays_a_midi_melody_deterministically(in_project):
    from pipeline import cli
    from stages import fit_gmm

    if not (in_project / "models/gmm/k2/mixture.json").exists():
        fit_gmm.main(["--k", "2"])
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [pretty_midi.Note(90, 60 + i, 0.4 * i, 0.4 * i + 0.35) for i in range(6)]  # 2.35 s: three windows
    midi.instruments.append(piano)
    midi.write(str(in_project / "tune.mid"))
    outs = []
    for name in ("a.wav", "b.wav"):
        cli.main(["generate", "--k", "2", "--cluster", "1", "--method", "temporal", "--midi", "tune.mid", "--seed", "4",
                       "--out", f"gen/{name}"])
        outs.append(sf.read(in_project / "gen" / name)[0])
    assert len(outs[0]) == int(np.ceil((2.35 + 0.5) * 250)) * 16000 // 250  # the melody plus 0.5 s release
    np.testing.assert_array_equal(outs[0], outs[1])
    assert (in_project / "gen/a.png").is_file()
    cli.main(["generate", "--k", "2", "--cluster", "0", "--method", "temporal", "--midi", "tune.mid", "--seed", "4",
                   "--out", "gen/c.wav"])
    assert not np.array_equal(sf.read(in_project / "gen/c.wav")[0], outs[0]), "another cluster, another timbre"


def test_generate_plays_midi_with_the_envelope_and_tuning_fitted_on_the_train_split(in_project):
    import argparse
    import dataclasses

    from pipeline import cli
    from pipeline.config import load_params
    from pipeline.generation.fits import fit_conditioning_data
    from pipeline.generation.longform import midi_envelope_for
    from pipeline.generation.midi_envelope import DEFAULT_ENVELOPE
    from pipeline.paths import CONDITIONINGS_FILE, Paths

    params = load_params()
    paths = Paths(params, in_project)
    fitted = fit_conditioning_data(paths.prepared_dir, SPEC, loudness_n_fft=params.prepare.loudness_n_fft, n_audio=0,
                                   want_mapping=False).envelope.params
    assert fitted != DEFAULT_ENVELOPE
    written = paths.anchors_dir / CONDITIONINGS_FILE
    elsewhere = params.model_copy(update={"anchors": params.anchors.model_copy(update={"out_dir": "no_anchors"})})
    # no anchors stage output: fitted from the prepared data
    assert midi_envelope_for(elsewhere, Paths(elsewhere, in_project)) == fitted
    saved = written.read_text() if written.is_file() else None
    try:
        # the anchors stage's fit is what generate plays (here with a tuning only this file has)
        sharp = dataclasses.replace(fitted, tuning_cents=13.0)
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text(json.dumps({"midi_envelope": {"params": sharp.as_dict()}}))
        assert midi_envelope_for(params, paths) == sharp
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(program=0)
        piano.notes.append(pretty_midi.Note(100, 69, 0.1, 0.6))
        midi.instruments.append(piano)
        midi.write(str(in_project / "a4.mid"))
        args = argparse.Namespace(midi=in_project / "a4.mid", audio=None)
        cond = cli.conditioning_for(args, SPEC, params, paths)
        assert cond.f0_hz[cond.voiced][0] == pytest.approx(440.0 * 2 ** (13 / 1200), rel=1e-6)
        assert cond.loudness_db[cond.voiced].max() == pytest.approx(sharp.peak_db(100), abs=1e-4)
        default = params.model_copy(update={"sample": params.sample.model_copy(update={"midi_envelope": "default"})})
        assert midi_envelope_for(default, paths) == DEFAULT_ENVELOPE
    finally:
        if saved is None:
            written.unlink()
        else:
            written.write_text(saved)


def test_generate_refuses_bad_arguments(in_project, capsys):
    from pipeline import cli

    with pytest.raises(SystemExit):
        cli.main(["generate", "--k", "2", "--method", "temporal", "--f0-hz", "220", "--out", "x.wav"])
    assert "--cluster is required" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no mixture for K=7"):
        cli.main(["generate", "--k", "7", "--method", "direct", "--f0-hz", "220", "--out", "x.wav"])


def test_generate_k_recommended_plays_choose_ks_mixture_where_it_was_rendered(in_project, capsys):
    import shutil

    from pipeline import cli
    from stages import fit_gmm

    if not (in_project / "models/gmm/k2/mixture.json").exists():
        fit_gmm.main(["--k", "2"])
    args = ["--cluster", "1", "--method", "temporal", "--f0-hz", "220", "--secs", "1", "--seed", "5"]
    choose_k = in_project / "metrics/choose_k.json"
    recommended = in_project / "models/gmm/recommended"
    try:
        with pytest.raises(SystemExit, match="choose_k.json is missing"):
            cli.main(["generate", "--k", "recommended", *args, "--out", "gen/r.wav"])
        choose_k.write_text(json.dumps({"recommended_k": 2}))
        with pytest.raises(SystemExit, match=r"no mixture for K=2 at \S*recommended: run `dvc repro fit_gmm_recommended`"):
            cli.main(["generate", "--k", "recommended", *args, "--out", "gen/r.wav"])
        # a listed K: fit_gmm_recommended only points at its folder
        recommended.mkdir(parents=True)
        (recommended / "rendered_as.json").write_text(json.dumps({"k": 2, "rendered_as": "k2"}))
        cli.main(["generate", "--k", "recommended", *args, "--out", "gen/r.wav"])
        cli.main(["generate", "--k", "2", *args, "--out", "gen/k2.wav"])
        np.testing.assert_array_equal(sf.read(in_project / "gen/r.wav")[0], sf.read(in_project / "gen/k2.wav")[0])
        # an unlisted K: its own folder
        (recommended / "rendered_as.json").unlink()
        shutil.copytree(in_project / "models/gmm/k2", recommended, dirs_exist_ok=True)
        cli.main(["generate", "--k", "recommended", *args, "--out", "gen/r2.wav"])
        np.testing.assert_array_equal(sf.read(in_project / "gen/r2.wav")[0], sf.read(in_project / "gen/k2.wav")[0])
        capsys.readouterr()
        with pytest.raises(SystemExit):
            cli.main(["generate", "--k", "best", *args, "--out", "gen/x.wav"])
        assert "expected a K (an integer) or 'recommended', got 'best'" in capsys.readouterr().err
    finally:
        choose_k.unlink(missing_ok=True)
        shutil.rmtree(recommended, ignore_errors=True)


def test_generate_draws_conditional_z_from_the_joint_mixture_given_the_melody(in_project):
    from pipeline import cli
    from pipeline.generation.longform import constant_conditioning, long_form_z
    from pipeline.generation.plans import ClipPlan
    from pipeline.prior.conditional import controls, load_conditional
    from pipeline.prior.mixture import load_mixture
    from stages import fit_gmm

    if not (in_project / "models/gmm/k2/mixture.json").exists():
        fit_gmm.main(["--k", "2"])
    args = ["generate", "--k", "2", "--cluster", "1", "--method", "conditional", "--f0-hz", "220", "--loudness-db", "-20",
            "--secs", "2", "--seed", "3"]
    for name in ("a.wav", "b.wav"):
        cli.main([*args, "--out", f"gen/cond-{name}"])
    a, b = (sf.read(in_project / f"gen/cond-{name}")[0] for name in ("a.wav", "b.wav"))
    assert len(a) == 2 * 16000 and np.abs(a).max() > 0
    np.testing.assert_array_equal(a, b)
    # the z it plays: the joint mixture's cluster given this pitch and loudness, one continuous AR(1) draw
    conditional = load_conditional(in_project / "models/gmm/k2/conditional")
    gmm = load_mixture(in_project / "models/gmm/k2")
    cond = constant_conditioning(220.0, -20.0, 2.0, SPEC)
    plan = ClipPlan(2, "conditional", 1, cond.name)
    z = long_form_z(plan, gmm, cond, SPEC, 32, 3, 0.9, conditional)
    assert z.shape == (64, 4)
    expected = conditional.conditional_mean(1, controls(np.array([220.0]), np.array([-20.0])))[0]
    assert np.abs(z.mean(axis=0) - expected).max() < 4 * np.sqrt(np.diag(conditional.cond_cov[1])).max()
    with pytest.raises(ValueError, match="joint mixture"):
        long_form_z(plan, gmm, cond, SPEC, 32, 3, 0.9)
