"""extract_z: one parquet row per native z frame, per split, through the stage's own entry point."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.config import TrainParams
from pipeline.dataset.tfrecord import DatasetSpec

SPEC = DatasetSpec(sample_rate=16000, frame_rate=250, example_secs=1.0, f0_method="swift")
TINY = dict(decoder_frame_rate=50, z_dims=3, z_time_steps=63, encoder_rnn_channels=8, decoder_rnn_channels=8,
            decoder_fc_channels=8, decoder_layers=1, n_harmonics=4, n_noise_bands=4, reverb=False)
N_TRAIN, N_EVAL = 7, 3


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with prepared data, params.yaml and an (untrained) saved model."""
    import tensorflow as tf

    from pipeline.model.build import build_autoencoder
    from pipeline.model.store import placeholder_batch, write_model
    from tests.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("project")
    write_synthetic_dataset(root / "data" / "prepared", SPEC, n_train=N_TRAIN, n_eval=N_EVAL, seed=1, n_shards=2)
    params = {"prepare": {"example_secs": SPEC.example_secs}, "train": TINY, "extract_z": {"batch_size": 2}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    tf.keras.utils.set_random_seed(0)
    train = TrainParams(**TINY)
    model = build_autoencoder(train, SPEC)
    model(placeholder_batch(SPEC), training=False)
    write_model(model, root / "models" / "autoencoder", train, SPEC)
    return root


@pytest.fixture(scope="module")
def extracted(project) -> Path:
    from stages import extract_z

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        extract_z.main()
    return project


def test_schema_and_rows_per_split(extracted):
    table = pq.read_table(extracted / "data" / "z" / "z_frames.parquet")
    z_names = [f"z_{i}" for i in range(TINY["z_dims"])]
    assert table.schema.names == ["example_id", "source", "split", "frame", "f0_hz", "loudness_db", *z_names]
    rows = table.to_pandas()
    t = TINY["z_time_steps"]
    assert (rows["split"] == "train").sum() == N_TRAIN * t
    assert (rows["split"] == "eval").sum() == N_EVAL * t
    assert rows.groupby("example_id")["frame"].apply(list).map(lambda f: f == list(range(t))).all()
    assert rows.groupby("example_id")["split"].nunique().eq(1).all()
    assert rows["example_id"].nunique() == N_TRAIN + N_EVAL
    assert rows["source"].str.startswith("synthetic/").all()
    assert np.isfinite(rows[z_names].to_numpy()).all()
    assert not list((extracted / "data" / "z").glob("*.partial"))

    metrics = json.loads((extracted / "metrics" / "extract_z.json").read_text())
    assert metrics["rows"] == {"train": N_TRAIN * t, "eval": N_EVAL * t}
    assert metrics["z_dims"] == TINY["z_dims"] and metrics["z_time_steps"] == t
    assert "frames_per_s" not in metrics, "wall-clock time stays out of DVC-tracked metrics"


def test_contours_are_sampled_at_the_z_frame_times(extracted):
    """f0/loudness rows equal the dataset contours on ddsp's z grid (frame j at j * n_frames / t)."""
    import tensorflow as tf

    from pipeline.compat import import_ddsp
    from pipeline.dataset.reader import ordered_batches

    rows = pq.read_table(extracted / "data" / "z" / "z_frames.parquet").to_pandas()
    first = next(iter(ordered_batches(extracted / "data" / "prepared", "train", SPEC, 1)))
    expected = import_ddsp().core.resample(tf.constant(first["f0_hz"])[..., None], TINY["z_time_steps"])
    got = rows[rows["example_id"] == 0].sort_values("frame")["f0_hz"].to_numpy()
    np.testing.assert_allclose(got, expected.numpy()[0, :, 0], rtol=1e-6)
    np.testing.assert_allclose(got[0], first["f0_hz"].numpy()[0, 0], rtol=1e-6)
