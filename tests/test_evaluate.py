"""evaluate on a fake project: hand-computed aggregates, the invalid cluster found, stale K ignored."""
from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from pipeline.evaluation.aggregate import summarise_reasons
from stages import evaluate

KS = [2, 3]
STALE_K = 9
WEIGHTS = {2: [0.6, 0.4], 3: [0.55, 0.40, 0.05], STALE_K: [1 / STALE_K] * STALE_K}
METHODS_AT = {2: ["direct", "inverse_transform", "temporal"],
              3: ["direct", "inverse_transform", "temporal", "temporal_hold"],
              STALE_K: ["direct", "inverse_transform"]}
CONDITIONINGS = {"seed": 0.0, "midi": 1.0}  # name -> hnr_db offset
BASE_HNR = {"direct": 2.0, "inverse_transform": 10.0, "temporal": 12.0, "temporal_hold": 11.0}
NOISE_CLUSTER = (3, 2)  # K=3, cluster 2: low weight, every clip noise-only
MIN_HNR_DB = 5.0
N_EXAMPLES, N_DRAWS = 3, 2
# spectral_distance_to_real per method (plus small example/draw/K offsets): temporal closest to real
SPECTRAL = {"resynthesis": 5.0, "temporal": 7.0, "temporal_hold": 7.5, "inverse_transform": 8.0, "mean_z": 9.0,
            "direct": 12.0}
# mixture metrics: K=3 has the lowest BIC among the listed Ks; the stale K=9 would win if counted
GMM = {2: dict(bic=100.0, aic=90.0, heldout_loglik=-5.0), 3: dict(bic=80.0, aic=70.0, heldout_loglik=-4.5),
       STALE_K: dict(bic=10.0, aic=5.0, heldout_loglik=0.0)}


def clip_row(k: int, method: str, cluster: int, conditioning: str, example: int = -1, draw: int = 0) -> dict:
    """Metrics chosen so means are easy by hand: hnr_db = method base + conditioning offset."""
    noise = (k, cluster) == NOISE_CLUSTER
    hnr = -3.0 if noise else BASE_HNR.get(method, 8.0) + CONDITIONINGS.get(conditioning, 0.5)
    if k == STALE_K:
        hnr = 1000.0
    f0_rpa = 0.4 if method == "direct" else 0.9
    failures = ([f"hnr_db {hnr:.1f} < {MIN_HNR_DB:.1f}"] * (hnr < MIN_HNR_DB)
                + [f"f0_rpa {f0_rpa} < 0.5"] * (f0_rpa < 0.5))
    name = "all" if cluster < 0 else f"c{cluster:02d}"
    key = conditioning if example < 0 else f"{conditioning}_e{example}_d{draw}"
    clip_id = f"k{k}_{method}_{name}_{key}" if k else f"anchor_{method}_{key}"
    distance = (SPECTRAL[method] + 0.3 * example + 0.05 * draw + 0.01 * k) if example >= 0 else math.nan
    return {"clip_id": clip_id, "k": k, "method": method, "cluster": cluster,
            "cluster_weight": math.nan if cluster < 0 else WEIGHTS[k][cluster], "conditioning": conditioning,
            "example": example, "draw": draw,
            "seed": 7, "rho": 0.8 if method.startswith("temporal") else 0.0,
            "wav": f"clips/{clip_id}.wav", "png": f"clips/{clip_id}.png" if example <= 0 else "",
            "f0_rpa": f0_rpa, "f0_median_cents": 10.0 + cluster, "loudness_l1_db": 2.0,
            "hnr_db": hnr, "spectral_flatness": 0.5 if noise else 0.1, "timbre_consistency": 1.0,
            "frechet_clip_to_set": 30.0, "reencode_loglik": math.nan if method == "direct" else -3.0,
            "spectral_distance_to_real": distance,
            "valid": not failures, "invalid_reason": "; ".join(failures), "component_switches": 0}


def tone(example: int, noisy: bool, seed: int) -> np.ndarray:
    """Half a second of a 220 Hz harmonic tone (one level per example), or white noise for a noisy method."""
    t = np.arange(8000) / 16000
    if noisy:
        return np.random.default_rng(seed).normal(0, 0.1, len(t)).astype(np.float32)
    level = 0.2 + 0.05 * example
    return (level * sum(np.sin(2 * np.pi * 220 * h * t) / h for h in (1, 2, 3))).astype(np.float32)


def write_clip_files(folder, row: dict, seed: int) -> None:
    audio = (tone(row["example"], row["method"] == "direct", seed) if row["example"] >= 0
             else np.zeros(160, np.float32))
    sf.write(folder / row["wav"], audio, 16000)
    if row["png"]:
        plt.imsave(folder / row["png"], np.zeros((2, 2)))


def write_samples(root, k: int) -> pd.DataFrame:
    rows = [clip_row(k, method, cluster, cond) for method in METHODS_AT[k]
            for cluster in ([-1] if method == "direct" else range(k)) for cond in CONDITIONINGS]
    # real contours: every method on every example and draw; cluster methods on clusters 0 and 1 only
    rows += [clip_row(k, method, -1 if method == "direct" else draw % 2, "real", example, draw)
             for method in METHODS_AT[k] for example in range(N_EXAMPLES) for draw in range(N_DRAWS)]
    folder = root / "samples" / f"k{k}"
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        write_clip_files(folder, row, seed=1000 * k + i)
    clips = pd.DataFrame(rows)
    clips.to_csv(folder / "clips.csv", index=False)
    return clips


def write_anchors(root) -> pd.DataFrame:
    rows = [clip_row(0, "mean_z", -1, cond) for cond in CONDITIONINGS]
    rows += [clip_row(0, anchor, -1, "real", example) for anchor in ("mean_z", "resynthesis")
             for example in range(N_EXAMPLES)]
    folder = root / "samples" / "anchors"
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    (folder / "real").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        write_clip_files(folder, row, seed=i)
    for example in range(N_EXAMPLES):
        sf.write(folder / "real" / f"real_e{example}.wav", tone(example, False, 0), 16000)
    clips = pd.DataFrame(rows).assign(rho=0.0)
    clips.to_csv(folder / "clips.csv", index=False)
    return clips


def write_gmm_metrics(root, k: int) -> None:
    folder = root / "metrics" / "gmm"
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {"k": k, **GMM[k], "train_loglik": GMM[k]["heldout_loglik"] + 0.5, "weights": WEIGHTS[k],
               "converged": True, "n_iter": 12, "n_train_frames": 1000, "n_eval_frames": 200, "fit_secs": 0.1}
    (folder / f"k{k}.json").write_text(json.dumps(metrics))


def make_project(root) -> dict[int, pd.DataFrame]:
    """params.yaml for KS, their inputs, and a stale K=9 left on disk from an earlier run."""
    params = {"seed": 7, "gmm": {"n_components": KS},
              "sample": {"min_hnr_db": MIN_HNR_DB, "methods": ["direct", "inverse_transform", "temporal"],
                         "conditionings": ["seed", "midi", "real"]},
              "evaluate": {"n_resamples": 200}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    write_anchors(root)
    clips = {}
    for k in [*KS, STALE_K]:
        write_gmm_metrics(root, k)
        clips[k] = write_samples(root, k)
    return clips


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    clips = make_project(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        evaluate.main()
    return root, clips


def strict_json(path):
    def refuse(token):
        raise ValueError(f"{path} contains {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_method_aggregates_equal_hand_computed_means_per_conditioning(project):
    root, _ = project
    metrics = strict_json(root / "metrics/evaluate.json")
    assert "methods" not in metrics, "nothing is pooled over conditionings"
    seed = metrics["by_conditioning"]["seed"]
    # direct on seed: hnr 2 at K=2 and K=3; both equal, so the interval is [2, 2]
    assert seed["direct"]["hnr_db"] == {"mean": 2.0, "ci_low": 2.0, "ci_high": 2.0, "n": 2}
    assert metrics["by_conditioning"]["midi"]["direct"]["hnr_db"]["mean"] == pytest.approx(3.0)
    assert seed["direct"]["valid_share"]["mean"] == 0.0
    assert "reencode_loglik" not in seed["direct"]  # undefined for every direct clip: left out, never NaN
    # inverse transform on seed: 4 clusters at 10 plus the noise cluster's -3
    inverse = seed["inverse_transform"]["hnr_db"]
    assert inverse["mean"] == pytest.approx(37 / 5) and inverse["ci_low"] < inverse["mean"] < inverse["ci_high"]
    assert metrics["per_k"]["k3"]["by_conditioning"]["seed"]["temporal"]["hnr_db"]["mean"] == pytest.approx(
        (12 + 12 - 3) / 3)
    assert metrics["per_k"]["k2"]["by_conditioning"]["midi"]["temporal"]["hnr_db"]["mean"] == pytest.approx(13.0)
    # the anchors sit beside the methods, in every scope
    assert seed["mean_z"]["hnr_db"]["mean"] == pytest.approx(8.0)
    assert set(metrics["per_k"]["k2"]["by_conditioning"]["real"]) == {"direct", "inverse_transform", "temporal",
                                                                     "mean_z", "resynthesis"}
    assert metrics["clusters"]["k3"]["c2"] == pytest.approx({"weight": 0.05, "valid_share": 0.0, "invalid": 1,
                                                            "hnr_db": -3.0, "f0_rpa": 0.9, "timbre_consistency": 1.0})


def test_real_contours_have_best_of_draws_set_distances_and_paired_verdicts(project):
    root, _ = project
    metrics = strict_json(root / "metrics/evaluate.json")
    real = metrics["per_k"]["k2"]["by_conditioning"]["real"]
    # temporal at K=2: 7 + 0.3 e + 0.05 d + 0.02; best of the 2 draws is draw 0
    expected = [7.0 + 0.3 * e + 0.05 * d + 0.02 for e in range(N_EXAMPLES) for d in range(N_DRAWS)]
    assert real["temporal"]["spectral_distance_to_real"]["mean"] == pytest.approx(np.mean(expected))
    assert real["temporal"]["spectral_distance_to_real_best"]["mean"] == pytest.approx(7.0 + 0.3 + 0.02)
    assert real["temporal"]["spectral_distance_to_real_best"]["n"] == N_EXAMPLES
    assert real["resynthesis"]["spectral_distance_to_real"]["mean"] == pytest.approx(5.3)
    # set level: the tone-like clips are closer to the real tones than direct's noise
    assert real["temporal"]["kad_to_real"]["mean"] < real["direct"]["kad_to_real"]["mean"]
    assert real["temporal"]["frechet_to_real"]["mean"] < real["direct"]["frechet_to_real"]["mean"]
    kad = real["temporal"]["kad_to_real"]  # over the 3 examples, by the delete-one-example jackknife
    assert kad["ci_low"] < kad["mean"] < kad["ci_high"] and kad["n"] == N_EXAMPLES * N_DRAWS
    # 6 pairs per K cannot survive Holm over the family; 12 pooled over K can
    per_k = {(r["a"], r["b"]): r for r in metrics["per_k"]["k2"]["comparisons"]["real"]}
    assert per_k[("temporal", "mean_z")]["winner"] is None
    pooled = {(r["a"], r["b"]): r for r in metrics["comparisons"]["real"]}
    assert pooled[("temporal", "mean_z")]["winner"] == "temporal" and pooled[("temporal", "mean_z")]["n"] == 12
    assert pooled[("temporal", "resynthesis")]["winner"] == "resynthesis"
    assert pooled[("direct", "mean_z")]["verdict"] == "mean_z beats direct"
    markdown = (root / "reports/evaluate/comparison.md").read_text()
    assert "temporal beats mean_z on spectral_distance_to_real" in markdown
    paired = pd.read_csv(root / "reports/evaluate/paired_tests.csv")
    assert set(paired["scope"]) == {"all", "k2", "k3"}


def test_seed_experiment_compares_direct_with_per_cluster_sampling(project):
    root, _ = project
    seed = strict_json(root / "metrics/evaluate.json")["seed_experiment"]["seed"]
    assert seed["direct"]["hnr_db"]["mean"] == pytest.approx(2.0)
    # per cluster: inverse_transform (10), temporal (12), temporal_hold (11) over K=2 and K=3, noise cluster -3
    values = [10, 10, 12, 12, 10, 10, -3, 12, 12, -3, 11, 11, -3]
    assert seed["per_cluster"]["hnr_db"]["mean"] == pytest.approx(np.mean(values))
    assert seed["direct_noisier"] is False  # direct's flatness (0.1) is not above per-cluster's
    assert seed["direct_lower_hnr"] is True and seed["direct_flatter"] is False


def test_invalid_cluster_is_flagged_with_reason_and_low_weight(project):
    root, _ = project
    invalid = pd.read_csv(root / "reports/evaluate/invalid_clusters.csv")
    assert invalid[["k", "cluster"]].values.tolist() == [[3, 2]]
    row = invalid.iloc[0]
    assert row["weight"] == pytest.approx(0.05) and row["valid_share"] == 0.0
    assert row["reasons"] == "hnr_db -3.0 < 5.0 in 6/6 clips"
    metrics = strict_json(root / "metrics/evaluate.json")
    assert metrics["per_k"]["k2"]["n_invalid_clusters"] == 0
    assert metrics["per_k"]["k3"]["n_invalid_clusters"] == 1
    assert metrics["per_k"]["k3"]["invalid_weight"] == pytest.approx(0.05)
    weights = metrics["invalid_clusters"]
    assert weights["n_clusters"] == 5 and weights["n_invalid"] == 1
    assert weights["mean_weight_invalid"] == pytest.approx(0.05)
    assert weights["mean_weight_valid"] == pytest.approx((0.6 + 0.4 + 0.55 + 0.40) / 4)
    assert weights["mean_relative_weight_invalid"] == pytest.approx(0.15)
    assert weights["share_invalid_below_uniform_weight"] == 1.0
    assert weights["spearman_relative_weight_valid_share"] > 0


def test_stale_k_on_disk_is_not_counted_and_recommended_k_is_lowest_bic(project):
    root, clips = project
    metrics = strict_json(root / "metrics/evaluate.json")
    assert metrics["recommended_k"] == 3  # K=9 has a lower BIC but is not in gmm.n_components
    assert set(metrics["per_k"]) == {"k2", "k3"} and set(metrics["clusters"]) == {"k2", "k3"}
    assert metrics["n_clips"] == len(clips[2]) + len(clips[3])
    assert metrics["recommended_k_at_grid_edge"] is True and metrics["recommended_k_listed"] is True
    assert metrics["per_k"]["k3"]["bic"] == 80.0
    assert pd.read_csv(root / "metrics/evaluate/model_selection.csv")["k"].tolist() == KS
    assert set(pd.read_csv(root / "metrics/evaluate/clusters.csv")["k"]) == set(KS)
    comparison = pd.read_csv(root / "reports/evaluate/comparison.csv")
    assert set(comparison["scope"]) == {"all", "k2", "k3"}
    assert comparison["hnr_db_mean"].max() < 1000  # the stale clips' hnr_db


def test_comparison_has_a_row_per_conditioning_and_method_in_csv_and_markdown(project):
    root, _ = project
    comparison = pd.read_csv(root / "reports/evaluate/comparison.csv")
    overall = comparison[(comparison["scope"] == "all") & (comparison["conditioning"] == "seed")]
    assert overall["method"].tolist() == ["direct", "inverse_transform", "temporal", "temporal_hold", "mean_z"]
    assert overall.set_index("method").loc["temporal_hold", "n_clips"] == 3
    assert set(comparison["conditioning"]) == {"seed", "midi", "real"}
    markdown = (root / "reports/evaluate/comparison.md").read_text()
    assert markdown.count("| temporal_hold |") == 2 * 3  # pooled and K=3, on each of 3 conditionings
    assert "| direct | 2 | 0% | 0.4 [0.4, 0.4] |" in markdown


def test_plots_data_is_one_column_per_method_and_figures_exist(project):
    root, _ = project
    hnr = pd.read_csv(root / "metrics/evaluate/vs_k/hnr_db.csv")
    # the real conditioning only: means are never pooled over conditionings
    assert hnr.columns.tolist() == ["k", "direct", "inverse_transform", "temporal", "temporal_hold", "conditional"]
    assert hnr["k"].tolist() == KS
    assert hnr["direct"].tolist() == [2.5, 2.5]
    assert math.isnan(hnr.loc[0, "temporal_hold"])  # K=2 sampled no hold clips: an empty cell
    assert hnr["conditional"].isna().all()
    assert hnr.loc[1, "temporal_hold"] == pytest.approx(11.5)
    assert (root / "metrics/evaluate/vs_k/valid_share.csv").is_file()
    for name in ("metric_vs_k.png", "model_selection.png", "weight_vs_validity.png"):
        assert (root / "reports/evaluate" / name).stat().st_size > 1000


def test_stage_logged_metrics_and_artifacts_to_mlflow(project):
    from mlflow import MlflowClient

    root, _ = project
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")  # not mlflow.set_tracking_uri: it sets os.environ
    experiment = client.get_experiment_by_name("generative-ddsp")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.stage = 'evaluate'")
    assert run.data.metrics["recommended_k"] == 3
    assert run.data.metrics["per_k.k3.n_invalid_clusters"] == 1
    # each K's run carries the same per-K numbers as evaluate.json
    (k3,) = client.search_runs([experiment.experiment_id], filter_string="tags.k = '3'")
    per_k = strict_json(root / "metrics/evaluate.json")["per_k"]["k3"]["by_conditioning"]
    assert k3.data.metrics["stats.real.temporal.spectral_distance_to_real.mean"] == pytest.approx(
        per_k["real"]["temporal"]["spectral_distance_to_real"]["mean"])
    assert k3.data.metrics["stats.seed.temporal.hnr_db.ci_low"] == pytest.approx(
        per_k["seed"]["temporal"]["hnr_db"]["ci_low"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluate")}
    assert "evaluate/comparison.md" in artifacts and "evaluate/weight_vs_validity.png" in artifacts


def test_reasons_group_checks_whose_values_differ():
    reasons = ["hnr_db -3.1 < 5; f0_rpa 0 < 0.5", "hnr_db -2.9 < 5", ""]
    assert summarise_reasons(reasons, 4) == ("hnr_db failed in 2/4 clips (e.g. hnr_db -3.1 < 5); "
                                             "f0_rpa 0 < 0.5 in 1/4 clips; no reason given in 1/4 clips")


def test_rendered_mixtures_add_the_recommended_k_only_when_it_is_not_listed(tmp_path):
    from pipeline.evaluation.aggregate import load_clips, load_gmm_table, rendered_mixtures

    for k in (2, 3):
        write_gmm_metrics(tmp_path, k)
    folder = tmp_path / "metrics" / "gmm"
    assert rendered_mixtures(folder, [3, 2]) == {2: "k2", 3: "k3"}  # no recommended fit yet
    (folder / "recommended.json").write_text(json.dumps({"k": 3, "rendered_as": "k3"}))
    assert rendered_mixtures(folder, [2, 3]) == {2: "k2", 3: "k3"}
    (folder / "recommended.json").write_text(json.dumps({**json.loads((folder / "k3.json").read_text()), "k": 4}))
    mixtures = rendered_mixtures(folder, [2, 3])
    assert mixtures == {2: "k2", 3: "k3", 4: "recommended"}
    assert load_gmm_table(folder, mixtures)["k"].tolist() == [2, 3, 4]
    with pytest.raises(FileNotFoundError, match="run sample_recommended"):
        load_clips(tmp_path / "samples", {4: "recommended"})


def test_missing_clips_of_a_listed_k_is_an_error(tmp_path):
    from pipeline.evaluation.aggregate import load_clips

    with pytest.raises(FileNotFoundError, match="run sample@4"):
        load_clips(tmp_path / "samples", [4])
