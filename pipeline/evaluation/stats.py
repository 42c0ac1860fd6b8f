"""Uncertainty and paired comparisons for the evaluation tables.

- :func:`bootstrap_mean_ci`: the mean of a metric over clips with a seeded bootstrap interval
  (``scipy.stats.bootstrap``; percentile method by default, which never fails on small or
  degenerate samples the way BCa's jackknife can).
- :func:`jackknife_ci`: an interval for a statistic of a whole set (a set-level distance, which is no
  mean over clips): delete-one-group jackknife over the examples, θ̂ ± t_{n-1} se with
  se² = (n-1)/n Σ (θ_(i) - θ̄)², consistent for U-statistics such as the unbiased MMD².
- :func:`paired_wilcoxon`: two methods measured on the same examples (same conditioning, same
  cluster, ...), compared by the Wilcoxon signed-rank test on the per-example differences a - b
  (``scipy.stats.wilcoxon``): no normality assumption, and pairing removes the between-example
  spread that would drown a real difference.
- :func:`holm_adjust`: Holm's step-down correction of a family of p-values (controls the
  family-wise error rate, uniformly more powerful than Bonferroni):
  for sorted p_(1) ≤ … ≤ p_(m), p̃_(i) = max_{j ≤ i} min(1, (m - j + 1) p_(j)).
- :func:`winner`: "A beats B" only when the corrected p-value is below alpha *and* the median
  difference points the way that is better for the metric (lower or higher is better).
- :func:`compare_methods`: all of it over a long clip table, one row per (metric, pair of methods).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

DEFAULT_N_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_ALPHA = 0.05
BOOTSTRAP_METHODS = ("percentile", "basic", "BCa")


@dataclass(frozen=True)
class MeanCI:
    """Mean of the finite values and its bootstrap interval; n counts the finite values used.
    (:func:`jackknife_ci` fills it with a set statistic, its jackknife interval and the number of groups.)"""

    mean: float
    ci_low: float
    ci_high: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, *, n_resamples: int = DEFAULT_N_RESAMPLES,
                      confidence: float = DEFAULT_CONFIDENCE, seed: int = 0, method: str = "percentile") -> MeanCI:
    """Mean and bootstrap CI of ``values`` [n]; NaNs (undefined metrics) are left out and not counted.

    Deterministic for a given ``seed``. One value gives a NaN interval (nothing to resample); values
    that are all equal give the degenerate interval [v, v].
    """
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of {BOOTSTRAP_METHODS}, got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    x = np.asarray(values, np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if not len(x):
        return MeanCI(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) == 1:
        return MeanCI(mean, math.nan, math.nan, 1)
    if np.all(x == x[0]):
        return MeanCI(mean, mean, mean, len(x))
    result = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                             method=method, rng=np.random.default_rng(seed), vectorized=True)
    return MeanCI(mean, float(result.confidence_interval.low), float(result.confidence_interval.high), len(x))


def jackknife_ci(full: float, leave_one_out: Sequence[float] | np.ndarray, *,
                 confidence: float = DEFAULT_CONFIDENCE) -> MeanCI:
    """``full`` (the statistic on all n groups) with the jackknife interval from ``leave_one_out`` [n]
    (the statistic with group i left out). Fewer than 3 groups, or a NaN among them, give a NaN interval."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    theta = np.asarray(leave_one_out, np.float64).reshape(-1)
    n = len(theta)
    if n < 3 or not np.isfinite(theta).all() or not math.isfinite(full):
        return MeanCI(float(full), math.nan, math.nan, n)
    se = math.sqrt((n - 1) / n * float(((theta - theta.mean()) ** 2).sum()))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * se
    return MeanCI(float(full), float(full) - half, float(full) + half, n)


@dataclass(frozen=True)
class PairedTest:
    """Wilcoxon signed-rank test of a - b over the pairs where both are finite."""

    n: int
    mean_diff: float
    median_diff: float
    statistic: float
    p_value: float


def paired_wilcoxon(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
    """Two-sided signed-rank test of the paired differences a_i - b_i ([n] each, aligned by example).

    Pairs with a NaN on either side are dropped. Zero differences are discarded (``zero_method``
    'wilcox'); with no non-zero difference there is no evidence either way and p = 1. Fewer than
    two usable pairs give p = NaN.
    """
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    n = len(diff)
    if n == 0:
        return PairedTest(0, math.nan, math.nan, math.nan, math.nan)
    mean_diff, median_diff = float(diff.mean()), float(np.median(diff))
    if not np.any(diff != 0):
        return PairedTest(n, mean_diff, median_diff, 0.0, 1.0)
    if n < 2:
        return PairedTest(n, mean_diff, median_diff, math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scipy notes the normal approximation for ties
        result = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
    return PairedTest(n, mean_diff, median_diff, float(result.statistic), float(result.pvalue))


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-corrected p-values [m], in the input order. NaNs stay NaN and do not count in m."""
    p = np.asarray(p_values, np.float64).reshape(-1)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if not len(finite):
        return adjusted
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError(f"p-values must be in [0, 1], got {p[finite]}")
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(stepped)
    return adjusted


def winner(a: str, b: str, median_diff: float, p_adjusted: float, higher_is_better: bool,
           alpha: float = DEFAULT_ALPHA, mean_diff: float | None = None) -> str | None:
    """The better of methods ``a`` and ``b`` (differences a - b), or None when the evidence is not enough.

    A winner needs a corrected p-value below ``alpha`` and a difference that points the metric's
    better way: a - b > 0 means a is higher. A median difference of exactly 0 takes the sign of
    ``mean_diff`` (when given), else there is no winner.
    """
    if not (np.isfinite(p_adjusted) and p_adjusted < alpha):
        return None
    direction = median_diff if median_diff != 0 else (mean_diff or 0.0)
    if not np.isfinite(direction) or direction == 0:
        return None
    a_is_higher = direction > 0
    return a if a_is_higher == higher_is_better else b


def verdict(a: str, b: str, best: str | None) -> str:
    """A readable sentence for a table cell."""
    if best is None:
        return f"no significant difference between {a} and {b}"
    return f"{best} beats {b if best == a else a}"


COMPARISON_COLUMNS = ("metric", "a", "b", "n", "mean_diff", "median_diff", "statistic", "p_value", "p_holm",
                      "winner", "verdict")


def compare_methods(clips: pd.DataFrame, metrics: Mapping[str, bool], pairs: Sequence[tuple[str, str]], *,
                    method_column: str = "method", pair_on: Sequence[str] = ("conditioning", "cluster"),
                    alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """Paired comparisons of methods over the same examples, Holm-corrected over the whole family.

    ``clips`` is long form: one row per clip with ``method_column``, the ``pair_on`` key columns
    that say which clips of two methods are the same example, and one column per metric.
    ``metrics`` maps each metric to ``higher_is_better``. The family is every (metric, pair) row
    returned, so adding metrics or pairs makes each test stricter. Returns the
    :data:`COMPARISON_COLUMNS`, one row per (metric, pair) in the given order.
    """
    missing = [c for c in (method_column, *pair_on, *metrics) if c not in clips.columns]
    if missing:
        raise ValueError(f"clip table lacks columns {missing}")
    key = list(pair_on)
    duplicated = clips.duplicated([method_column, *key])
    if duplicated.any():
        first = clips.loc[duplicated, [method_column, *key]].iloc[0].to_dict()
        raise ValueError(f"clips are not unique per ({method_column}, {', '.join(key)}): e.g. {first}")
    rows = []
    for metric in metrics:
        for a, b in pairs:
            left = clips.loc[clips[method_column] == a, [*key, metric]]
            right = clips.loc[clips[method_column] == b, [*key, metric]]
            if left.empty or right.empty:
                raise ValueError(f"no clips of method {a if left.empty else b!r} to compare")
            merged = left.merge(right, on=key, suffixes=("_a", "_b"))
            test = paired_wilcoxon(merged[f"{metric}_a"].to_numpy(), merged[f"{metric}_b"].to_numpy())
            rows.append({"metric": metric, "a": a, "b": b, **asdict(test)})
    table = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c not in ("p_holm", "winner", "verdict")])
    table["p_holm"] = holm_adjust(table["p_value"].to_numpy())
    # object dtype keeps None (pandas 3 would infer a string column and turn None into NaN)
    table["winner"] = pd.Series([winner(r.a, r.b, r.median_diff, r.p_holm, metrics[r.metric], alpha, r.mean_diff)
                                 for r in table.itertuples()], index=table.index, dtype=object)
    table["verdict"] = [verdict(r.a, r.b, r.winner) for r in table.itertuples()]
    return table[list(COMPARISON_COLUMNS)]
