"""Bootstrap intervals, paired signed-rank tests, Holm's correction and the 'A beats B' rule on known data."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.evaluation.stats import (
    COMPARISON_COLUMNS,
    bootstrap_mean_ci,
    compare_methods,
    holm_adjust,
    jackknife_ci,
    paired_wilcoxon,
    verdict,
    winner,
)


def test_bootstrap_interval_width_matches_the_standard_error():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=400)
    ci = bootstrap_mean_ci(x, seed=1)
    assert ci.n == 400 and ci.mean == pytest.approx(x.mean())
    assert ci.ci_low < ci.mean < ci.ci_high
    # a 95 % normal interval is ±1.96 s/√n
    assert ci.ci_high - ci.ci_low == pytest.approx(2 * 1.96 * x.std(ddof=1) / 20, rel=0.1)


def test_bootstrap_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    covered = 0
    trials = 200
    for i in range(trials):
        ci = bootstrap_mean_ci(rng.exponential(1.0, size=60), n_resamples=1000, seed=i)
        covered += ci.ci_low <= 1.0 <= ci.ci_high
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_is_seeded_and_skips_nan():
    x = [1.0, 2.0, np.nan, 4.0, 8.0, 3.0]
    a = bootstrap_mean_ci(x, seed=5)
    assert a == bootstrap_mean_ci(x, seed=5)
    assert a.n == 5 and a.mean == pytest.approx(3.6)
    assert a.as_dict().keys() == {"mean", "ci_low", "ci_high", "n"}


def test_bootstrap_seed_changes_the_resamples():
    x = np.random.default_rng(3).normal(size=100)
    assert bootstrap_mean_ci(x, seed=1) != bootstrap_mean_ci(x, seed=2)


def test_bootstrap_degenerate_samples():
    assert bootstrap_mean_ci([2.5, 2.5, 2.5]).as_dict() == {"mean": 2.5, "ci_low": 2.5, "ci_high": 2.5, "n": 3}
    one = bootstrap_mean_ci([4.0])
    assert one.mean == 4.0 and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    assert bootstrap_mean_ci([np.nan]).n == 0
    with pytest.raises(ValueError, match="method"):
        bootstrap_mean_ci([1.0, 2.0], method="jackknife")


def test_wilcoxon_exact_p_for_all_positive_differences():
    a = np.arange(10, dtype=float) + 1.0
    b = np.zeros(10)
    test = paired_wilcoxon(a, b)
    # every sign +: the exact two-sided p is 2 / 2^10
    assert test.p_value == pytest.approx(2 / 2**10)
    assert test.n == 10 and test.median_diff == 5.5 and test.mean_diff == 5.5


def test_wilcoxon_drops_nan_pairs_and_handles_no_difference():
    test = paired_wilcoxon([1.0, np.nan, 3.0, 4.0], [0.0, 1.0, np.nan, 3.0])
    assert test.n == 2
    same = paired_wilcoxon([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.p_value == 1.0 and same.median_diff == 0.0
    with pytest.raises(ValueError, match="same length"):
        paired_wilcoxon([1.0], [1.0, 2.0])


def test_holm_textbook_example():
    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 -> max(0.06, 0.04) = 0.06
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_adjust([0.5, 0.9]), [1.0, 1.0])
    nan_kept = holm_adjust([0.01, np.nan, 0.02])
    np.testing.assert_allclose(nan_kept[[0, 2]], [0.02, 0.02])
    assert math.isnan(nan_kept[1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_adjust([1.5])


def test_winner_needs_significance_and_the_right_direction():
    # a - b < 0: a is lower
    assert winner("a", "b", -1.0, 0.01, higher_is_better=False) == "a"
    assert winner("a", "b", -1.0, 0.01, higher_is_better=True) == "b"
    assert winner("a", "b", 2.0, 0.01, higher_is_better=True) == "a"
    assert winner("a", "b", -1.0, 0.2, higher_is_better=False) is None
    assert winner("a", "b", 0.0, 0.001, higher_is_better=False) is None
    assert winner("a", "b", 0.0, 0.001, higher_is_better=False, mean_diff=-0.3) == "a"
    assert winner("a", "b", -1.0, math.nan, higher_is_better=False) is None
    assert verdict("a", "b", "b") == "b beats a"
    assert verdict("a", "b", None).startswith("no significant")


def clip_table(n: int = 30) -> pd.DataFrame:
    """Three methods on the same n examples: 'good' has 1 unit lower error than the two others, which tie."""
    rng = np.random.default_rng(9)
    example_level = rng.normal(10.0, 3.0, n)  # a big between-example spread that pairing removes
    rows = []
    for method, offset in (("good", -1.0), ("plain", 0.0), ("same", 0.0)):
        noise = rng.normal(0.0, 0.3, n)
        for i in range(n):
            rows.append({"method": method, "conditioning": f"real_{i % 10}", "cluster": i // 10,
                         "error": example_level[i] + offset + noise[i], "score": -example_level[i] - offset})
    return pd.DataFrame(rows)


def test_compare_methods_finds_the_real_difference_only():
    clips = clip_table()
    table = compare_methods(clips, {"error": False}, [("good", "plain"), ("plain", "same"), ("good", "same")])
    assert list(table.columns) == list(COMPARISON_COLUMNS)
    by_pair = table.set_index(["a", "b"])
    assert by_pair.loc[("good", "plain"), "winner"] == "good"
    assert by_pair.loc[("good", "same"), "verdict"] == "good beats same"
    assert by_pair.loc[("plain", "same"), "winner"] is None
    assert by_pair.loc[("good", "plain"), "n"] == 30
    assert by_pair.loc[("good", "plain"), "median_diff"] == pytest.approx(-1.0, abs=0.2)
    # Holm: corrected p is never below the raw p
    assert np.all(table["p_holm"] >= table["p_value"] - 1e-15)
    # unpaired, the between-example spread (sd 3) hides the 1-unit effect
    from scipy.stats import mannwhitneyu

    good, plain = (clips.loc[clips.method == m, "error"] for m in ("good", "plain"))
    assert mannwhitneyu(good, plain).pvalue > 0.05


def test_compare_methods_respects_the_metric_direction():
    table = compare_methods(clip_table(), {"score": True, "error": False}, [("good", "plain")])
    assert list(table["winner"]) == ["good", "good"]  # higher score and lower error both favour 'good'
    flipped = compare_methods(clip_table(), {"error": True}, [("good", "plain")])
    assert flipped["winner"].iloc[0] == "plain"


def test_compare_methods_rejects_bad_tables():
    clips = clip_table()
    with pytest.raises(ValueError, match="lacks columns"):
        compare_methods(clips, {"nope": True}, [("good", "plain")])
    with pytest.raises(ValueError, match="not unique"):
        compare_methods(pd.concat([clips, clips.iloc[:1]]), {"error": False}, [("good", "plain")])
    with pytest.raises(ValueError, match="no clips of method 'absent'"):
        compare_methods(clips, {"error": False}, [("good", "absent")])


def test_jackknife_of_the_mean_is_the_t_interval():
    # for the mean, the delete-one jackknife's se is exactly s / sqrt(n)
    x = np.random.default_rng(4).normal(1.0, 3.0, size=9)
    leave_one_out = [(x.sum() - v) / (len(x) - 1) for v in x]
    ci = jackknife_ci(float(x.mean()), leave_one_out)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=x.std(ddof=1) / np.sqrt(len(x)))
    assert (ci.ci_low, ci.ci_high) == pytest.approx((low, high), rel=1e-12)
    assert ci.mean == x.mean() and ci.n == 9


def test_jackknife_needs_three_finite_groups():
    assert math.isnan(jackknife_ci(1.0, [1.0, 2.0]).ci_low)
    assert math.isnan(jackknife_ci(1.0, [1.0, 2.0, math.nan]).ci_high)
    assert jackknife_ci(1.0, [1.0, 1.0, 1.0]).as_dict() == {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 3}
    with pytest.raises(ValueError, match="confidence"):
        jackknife_ci(1.0, [1.0, 2.0, 3.0], confidence=1.0)
