"""Statistics of the analysis against independent computations on the same numbers."""

from __future__ import annotations

import itertools

import mne
import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from brainalign.analysis.stats import (
    bootstrap_indices,
    bootstrap_mean_ci,
    bootstrap_pearson_ci,
    correlation,
    fdr_bh,
    partial_correlation,
    sign_flip_test,
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
    finite = p[:4]
    np.testing.assert_allclose(fdr_bh(finite), mne.stats.fdr_correction(finite)[1])


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
