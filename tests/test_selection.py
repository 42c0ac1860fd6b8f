"""The K sweep finds an interior optimum on data with a known cluster count, and flags a grid that is too short."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.prior.selection import dirichlet_effective_components, k_grid, sweep_k

D = 3


def blobs(n_clusters: int, n_per: int, seed: int, spread: float = 12.0) -> np.ndarray:
    """Well-separated Gaussian blobs (fixed centres per n_clusters, fresh draws per seed)."""
    centres = np.random.default_rng(100 + n_clusters).uniform(-spread, spread, size=(n_clusters, D))
    rng = np.random.default_rng(seed)
    return np.concatenate([c + rng.standard_normal((n_per, D)) for c in centres])


def test_k_grid():
    assert k_grid(2, 10, 3) == [2, 5, 8]
    assert k_grid(ks=[8, 2, 4, 4]) == [2, 4, 8]
    with pytest.raises(ValueError, match="k_max"):
        k_grid(5, 2)
    with pytest.raises(ValueError, match="at least 1"):
        k_grid(ks=[0, 2])


def test_five_blobs_give_an_interior_five():
    sweep = sweep_k(blobs(5, 400, seed=0), blobs(5, 200, seed=1), k_min=1, k_max=12, patience=2, seed=0)
    assert sweep.recommended_k == 5
    assert not sweep.recommended_k_at_grid_edge
    assert sweep.stopped_early and sweep.ks == [1, 2, 3, 4, 5, 6, 7]  # 6 and 7 did not improve: stop
    assert len(sweep.heldout_loglik) == len(sweep.ks)
    best = sweep.heldout_loglik[sweep.ks.index(5)]
    assert best > sweep.heldout_loglik[sweep.ks.index(4)] + 0.1
    assert "K = 5" in sweep.reason


def test_best_at_the_largest_k_is_flagged():
    sweep = sweep_k(blobs(9, 200, seed=2), blobs(9, 100, seed=3), k_min=1, k_max=5, seed=0)
    assert sweep.recommended_k == 5
    assert sweep.recommended_k_at_grid_edge
    assert not sweep.stopped_early
    assert "extend k_max" in sweep.reason


def test_sweep_subsamples_and_is_deterministic():
    train, heldout = blobs(5, 400, seed=4), blobs(5, 200, seed=5)
    a = sweep_k(train, heldout, ks=[2, 5, 8], max_frames=600, seed=3)
    assert a.n_train_frames == 600 and a.n_heldout_frames == 600
    assert a.as_dict() == sweep_k(train, heldout, ks=[2, 5, 8], max_frames=600, seed=3).as_dict()
    assert a.recommended_k == 5


def test_sweep_rejects_bad_params():
    train = blobs(2, 20, seed=6)
    with pytest.raises(ValueError, match="patience"):
        sweep_k(train, train, patience=0)
    with pytest.raises(ValueError, match="exceeds"):
        sweep_k(train, train, ks=[100])
    with pytest.raises(ValueError, match="dims"):
        sweep_k(train, train[:, :2], ks=[1])


def test_dirichlet_process_switches_off_unneeded_components():
    estimate = dirichlet_effective_components(blobs(5, 400, seed=7), max_components=12, seed=0)
    assert estimate.n_effective == 5
    assert sum(estimate.weights[:5]) > 0.98
    assert estimate.weights == sorted(estimate.weights, reverse=True)


def test_read_recommended_k_names_the_file_and_the_stage(tmp_path):
    from pipeline.prior.selection import read_recommended_k

    path = tmp_path / "choose_k.json"
    with pytest.raises(FileNotFoundError, match=r"choose_k\.json is missing: run the choose_k stage"):
        read_recommended_k(path)
    path.write_text('{"recommended_k": 0}')
    with pytest.raises(ValueError, match="no valid recommended_k"):
        read_recommended_k(path)
    path.write_text('{"recommended_k": 6, "ks": [1, 2]}')
    assert read_recommended_k(path) == 6
