"""fit_gmm@K on a synthetic z table: deterministic fits, no pickle, metrics per K, K validated."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import GmmParams
from pipeline.prior.mixture import fit_for_k, load_mixture, save_mixture
from pipeline.vocab import WALL_CLOCK_FIELDS
from stages import fit_gmm


def write_z_table(path, n_examples=40, frames=50, dims=3, seed=0):
    """Three well separated clusters, each example drawn from one cluster (as a timbre would be)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-4.0] * dims, [0.0] * dims, [4.0] * dims])
    rows = []
    for example in range(n_examples):
        centre = centres[example % 3]
        z = centre + rng.normal(0, 0.5, (frames, dims))
        split = "eval" if example % 5 == 0 else "train"
        for frame in range(frames):
            # each cluster (timbre) plays in its own register, so the pitch says which cluster a frame is in
            rows.append({"example_id": f"e{example}", "source": f"f{example}.wav", "split": split, "frame": frame,
                         "f0_hz": (110.0, 220.0, 440.0)[example % 3] * (1 + 0.01 * rng.normal()),
                         "loudness_db": -20.0 + rng.normal(), **{f"z_{d}": z[frame, d] for d in range(dims)}})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    write_z_table(tmp_path / "data/z/z_frames.parquet")
    params = {"seed": 5, "gmm": {"n_components": [1, 3, 5], "max_train_frames": 1000, "n_init": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def test_fit_is_deterministic_and_saved_without_pickle(project):
    cfg = GmmParams(n_components=[3], max_train_frames=1000, n_init=1)
    z_path = project / "data/z/z_frames.parquet"
    (gmm_a, first, _), (gmm_b, second, _) = (fit_for_k(z_path, cfg, 3, seed=5) for _ in range(2))
    save_mixture(gmm_a, project / "a")
    save_mixture(gmm_b, project / "b")
    assert first["bic"] == second["bic"] and first["weights"] == second["weights"]
    assert not set(first) & set(WALL_CLOCK_FIELDS), "wall-clock time stays out of DVC-tracked metrics"
    a, b = load_mixture(project / "a"), load_mixture(project / "b")
    np.testing.assert_array_equal(a.means_, b.means_)
    with np.load(project / "a/mixture.npz", allow_pickle=False) as arrays:
        assert set(arrays.files) >= {"weights", "means", "covariances"}
    assert sorted(np.round(np.sort(a.means_[:, 0]))) == [-4.0, 0.0, 4.0]
    assert first["n_train_frames"] == 1000 and first["n_eval_frames"] == 8 * 50


def test_stage_writes_metrics_per_k_and_the_right_k_scores_best(project):
    for k in (1, 3, 5):
        fit_gmm.main(["--k", str(k)])
    metrics = {k: json.loads((project / f"metrics/gmm/k{k}.json").read_text()) for k in (1, 3, 5)}
    for k, m in metrics.items():
        assert {"bic", "aic", "train_loglik", "heldout_loglik", "weights"} <= set(m)
        assert len(m["weights"]) == k and abs(sum(m["weights"]) - 1) < 1e-9
        assert (project / f"models/gmm/k{k}/mixture.json").is_file()
    assert min(metrics, key=lambda k: metrics[k]["bic"]) == 3
    assert metrics[3]["heldout_loglik"] > metrics[1]["heldout_loglik"] + 1.0
    # the joint mixture beside each unconditional one
    from pipeline.prior.conditional import load_conditional

    conditional = load_conditional(project / "models/gmm/k3/conditional")
    assert conditional.n_components == 3 and conditional.n_z == 3
    # with three components the pitch tells the cluster, so log p(z | f0, loudness) beats log p(z) by a lot
    assert metrics[3]["heldout_conditional_loglik"] > metrics[3]["heldout_loglik"] + 0.5
    assert metrics[1]["heldout_conditional_loglik"] < metrics[3]["heldout_conditional_loglik"]


def test_k_not_in_params_is_refused(project):
    with pytest.raises(SystemExit, match=r"--k 7 is neither 'recommended' nor in gmm.n_components \[1, 3, 5\]"):
        fit_gmm.main(["--k", "7"])


def test_recommended_k_gets_its_own_folder_unless_it_is_listed(project):
    """DVC's matrix of listed Ks is static: fit_gmm --k recommended fits choose_k's K into models/gmm/recommended,
    or, when that K is listed, only points at the listed K's folder (nothing fitted twice)."""
    with pytest.raises(FileNotFoundError, match="run the choose_k stage"):
        fit_gmm.main(["--k", "recommended"])
    choose_k = project / "metrics/choose_k.json"
    choose_k.parent.mkdir(parents=True, exist_ok=True)
    choose_k.write_text(json.dumps({"recommended_k": 4, "recommended_k_at_grid_edge": False}))
    fit_gmm.main(["--k", "recommended"])
    metrics = json.loads((project / "metrics/gmm/recommended.json").read_text())
    assert metrics["k"] == 4 and len(metrics["weights"]) == 4 and "bic" in metrics
    assert load_mixture(project / "models/gmm/recommended").n_components == 4
    assert (project / "models/gmm/recommended/conditional/mixture.json").is_file()

    choose_k.write_text(json.dumps({"recommended_k": 3, "recommended_k_at_grid_edge": False}))
    fit_gmm.main(["--k", "recommended"])
    assert json.loads((project / "metrics/gmm/recommended.json").read_text()) == {"k": 3, "rendered_as": "k3"}
    assert [p.name for p in (project / "models/gmm/recommended").iterdir()] == ["rendered_as.json"]
