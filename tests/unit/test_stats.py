"""Shared statistics (brainalign.stats) against independent computations on the same numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from brainalign.stats import (
    bootstrap_indices,
    bootstrap_mean_ci,
    bootstrap_pearson_ci,
    cluster_bootstrap_counts,
    correlation,
    fdr_bh,
    mean_from_counts,
    paired_sign_flip_test,
    partial_correlation,
    pearson_from_counts,
    sign_flip_p_min,
    sign_flip_test,
    weighted_median,
    with_fdr,
)


def test_bootstrap_mean_ci_matches_naive_loop():
    values = np.random.default_rng(1).normal(0.05, 0.02, size=12)
    indices = bootstrap_indices(values.size, 2000, seed=3)
    naive = [np.mean([values[i] for i in row]) for row in indices]
    expected = np.percentile(naive, [2.5, 97.5])
    np.testing.assert_allclose(bootstrap_mean_ci(values, 2000, seed=3), expected)


def test_bootstrap_mean_ci_undefined_for_one_value():
    assert np.isnan(bootstrap_mean_ci(np.array([0.3]))).all()


def test_bootstrap_pearson_ci_matches_scipy_loop():
    rng = np.random.default_rng(2)
    x = rng.normal(size=15)
    y = 0.7 * x + rng.normal(size=15)
    indices = bootstrap_indices(x.size, 500, seed=5)
    naive = [stats.pearsonr(x[row], y[row]).statistic for row in indices]
    np.testing.assert_allclose(bootstrap_pearson_ci(x, y, 500, seed=5), np.percentile(naive, [2.5, 97.5]))


@pytest.mark.parametrize("n", [6, 9])
def test_sign_flip_test_is_exact_enumeration(n):
    values = np.random.default_rng(n).normal(0.3, 1.0, size=n)
    observed = abs(values.mean())
    flipped = [abs(np.mean(values * np.array(signs))) for signs in itertools.product([-1, 1], repeat=n)]
    # Same tolerance scipy uses for ties in the null distribution.
    expected = np.mean(np.array(flipped) >= observed * (1 - 1e-14))
    assert sign_flip_test(values, n_resamples=10_000) == pytest.approx(expected)


def test_sign_flip_test_detects_planted_shift_and_not_noise():
    rng = np.random.default_rng(0)
    assert sign_flip_test(rng.normal(1.0, 0.3, size=20), n_resamples=2000) < 0.01
    p_null = [sign_flip_test(rng.normal(0, 1, size=15), n_resamples=999, seed=s) for s in range(40)]
    # Under the null hypothesis, p-values are roughly uniform: not concentrated near zero.
    assert 0.3 < np.mean(p_null) < 0.7


def test_fdr_bh_known_example_and_nan():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # By hand: sorted 0.005, 0.01, 0.03, 0.04 (m = 4) -> 0.02, 0.02, 0.04, 0.04.
    np.testing.assert_allclose(fdr_bh(p), [0.02, 0.04, 0.04, 0.02, np.nan])


def test_correlation_matches_scipy_and_is_nan_for_constant_input():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=10), rng.normal(size=10)
    found = correlation(x, y)
    assert found["pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert found["p_value"] == pytest.approx(stats.pearsonr(x, y).pvalue)
    assert found["spearman_r"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert found["spearman_p"] == pytest.approx(stats.spearmanr(x, y).pvalue)
    assert np.isnan(correlation(np.ones(10), y)["pearson_r"])


def test_partial_correlation_matches_formula_and_regression_t_test():
    rng = np.random.default_rng(6)
    z = rng.normal(size=30)
    x = z + 0.5 * rng.normal(size=30)
    y = z + 0.3 * x + rng.normal(size=30)
    r, p = partial_correlation(x, y, z)
    r_xy, r_xz, r_yz = (stats.pearsonr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    formula = (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    assert r == pytest.approx(formula)
    # The partial correlation's test is the t-test of x's coefficient in y ~ 1 + z + x.
    fit = sm.OLS(y, sm.add_constant(np.column_stack([z, x]))).fit()
    assert p == pytest.approx(fit.pvalues[2])


def test_paired_test_equals_exact_sign_flip_enumeration():
    rng = np.random.default_rng(6)
    groups = np.repeat(np.arange(8), 5)
    a = rng.standard_normal(40) + 0.3
    b = rng.standard_normal(40)
    difference, p_value, n_groups = paired_sign_flip_test(a, b, groups, n_permutations=10_000)
    per_group = np.array([np.mean(a[groups == g] - b[groups == g]) for g in range(8)])
    flips = np.array(list(itertools.product([-1, 1], repeat=8)))
    null = (flips * per_group).mean(axis=1)
    assert difference == pytest.approx(per_group.mean()) and n_groups == 8
    assert p_value == pytest.approx(np.mean(np.abs(null) >= abs(per_group.mean()) - 1e-12))


def test_paired_test_detects_a_shift_and_ignores_nan_pairs():
    rng = np.random.default_rng(7)
    a = rng.standard_normal(60)
    b = a - 0.5 + 0.1 * rng.standard_normal(60)
    a[0] = np.nan
    difference, p_value, _ = paired_sign_flip_test(a, b, n_permutations=2000)
    assert difference == pytest.approx(np.nanmean(a - b))
    assert p_value < 0.01
    assert paired_sign_flip_test(a, a, n_permutations=500)[1] == pytest.approx(1.0)


@pytest.mark.parametrize("n", [3, 5, 9])
def test_sign_flips_reach_exactly_p_min(n):
    """Values all of one sign give the smallest attainable p, 2 / 2**n; any other values more."""
    values = np.random.default_rng(n).normal(0.4, 1.0, size=n)
    values[0] = -abs(values[0])
    assert sign_flip_test(values) > sign_flip_p_min(n)
    extreme = np.abs(values) + 0.1
    assert sign_flip_test(extreme) == pytest.approx(sign_flip_p_min(n)) == pytest.approx(2 / 2**n)
    assert sign_flip_p_min(5) == 0.0625 and sign_flip_p_min(20, 999) == pytest.approx(2 / 1000)
    assert np.isnan(sign_flip_p_min(1))


def test_cluster_bootstrap_from_sums_equals_a_naive_resample():
    rng = np.random.default_rng(9)
    clusters = np.repeat(np.arange(15), rng.integers(1, 6, size=15))
    x = rng.normal(size=len(clusters))
    y = 0.5 * x + rng.normal(size=len(clusters))
    counts, index = cluster_bootstrap_counts(clusters, 30, seed=2)
    for b in (0, 17):
        rows = np.concatenate([np.flatnonzero(clusters == c) for c, k in enumerate(counts[b]) for _ in range(int(k))])
        assert pearson_from_counts(x, y, counts, index)[b] == pytest.approx(stats.pearsonr(x[rows], y[rows]).statistic)
        assert mean_from_counts(x, counts, index)[b] == pytest.approx(x[rows].mean())


def test_weighted_median_equals_the_median_of_the_repeated_values():
    rng = np.random.default_rng(10)
    values = rng.normal(size=(50, 9))
    values[rng.random(values.shape) < 0.2] = np.nan
    weights = rng.integers(0, 4, size=values.shape).astype(float)
    expected = []
    for row, weight in zip(values, weights):
        repeated = np.repeat(row, weight.astype(int))
        repeated = repeated[np.isfinite(repeated)]
        expected.append(np.median(repeated) if repeated.size else np.nan)
    np.testing.assert_allclose(weighted_median(values, weights), expected)


def test_fdr_pools_every_table_within_a_family():
    first = pd.DataFrame({"protocol": ["a", "a", "b"], "p_value": [0.01, 0.04, 0.03]})
    second = pd.DataFrame({"protocol": ["a", "b"], "p_value": [0.02, np.nan], "can_reach_alpha": [True, None]})
    adjusted = with_fdr({"first": first, "second": second}, ["protocol"])
    pooled_a = fdr_bh(np.array([0.01, 0.04, 0.02]))
    np.testing.assert_allclose(adjusted["first"]["p_fdr"], [pooled_a[0], pooled_a[1], 0.03])
    np.testing.assert_allclose(adjusted["second"]["p_fdr"], [pooled_a[2], np.nan])
    assert list(adjusted["second"].columns) == ["protocol", "p_value", "can_reach_alpha", "p_fdr"]
