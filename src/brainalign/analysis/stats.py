"""Statistics over models and model pairs: bootstrap CIs, sign-flip tests, FDR, correlations.

All resampling is seeded so that an analysis rerun on the same scores gives the same
numbers. Sample sizes here are small (tens of models), so every routine is exact or
vectorized over resamples rather than clever.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from brainalign.encoding.metrics import pearson_columns

N_RESAMPLES = 10_000
CONFIDENCE = 0.95


def bootstrap_indices(n_samples: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Return (n_resamples, n_samples) indices drawn with replacement.

    Parameters
    ----------
    n_samples : int
        Number of units to resample (model pairs, models).
    n_resamples : int
        Number of bootstrap resamples.
    seed : int
        Seed of the NumPy generator.
    """
    return np.random.default_rng(seed).integers(0, n_samples, size=(n_resamples, n_samples))


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Return the percentile interval of bootstrap values (undefined resamples ignored)."""
    tail = 100 * (1 - confidence) / 2
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.nan, np.nan
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_mean_ci(
    values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap CI of a mean; NaN for fewer than two values.

    Parameters
    ----------
    values : array of shape (n_samples,)
    n_resamples, seed, confidence
        Resampling settings (see :func:`bootstrap_indices`).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return np.nan, np.nan
    means = values[bootstrap_indices(values.size, n_resamples, seed)].mean(axis=1)
    return percentile_interval(means, confidence)


def bootstrap_pearson_ci(
    x: np.ndarray, y: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap CI of Pearson r, resampling (x, y) pairs together.

    Resamples in which x or y is constant have no r and are left out; NaN for fewer
    than four pairs.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 4:
        return np.nan, np.nan
    indices = bootstrap_indices(x.size, n_resamples, seed)
    # Columns of the transposed matrices are resamples: one vectorized Pearson call.
    r = pearson_columns(x[indices].T, y[indices].T)
    return percentile_interval(r, confidence)


def sign_flip_test(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> float:
    """Two-sided paired permutation test of a zero mean by flipping signs of the differences.

    Exact (all 2**n sign patterns) when 2**n <= ``n_resamples``, else Monte Carlo.

    Parameters
    ----------
    values : array of shape (n_pairs,)
        Paired differences (tuned minus base).

    Returns
    -------
    p_value : float
        NaN for fewer than two values (one pair cannot be tested).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return np.nan
    result = stats.permutation_test(
        (values,),
        np.mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def fdr_bh(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN entries stay NaN and do not count as tests."""
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p_values, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        adjusted[finite] = multipletests(p_values[finite], method="fdr_bh")[1]
    return adjusted

def with_fdr(table: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """Add ``p_fdr`` (Benjamini-Hochberg within each family of tests) after ``p_value``."""
    adjusted = pd.Series(np.nan, index=table.index)
    for _, group in table.groupby(family, sort=False):
        adjusted[group.index] = fdr_bh(group["p_value"].to_numpy())
    table.insert(table.columns.get_loc("p_value") + 1, "p_fdr", adjusted)
    return table



def correlation(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlations with two-sided p-values.

    Returns NaN statistics (never an error) for fewer than three pairs or a constant input,
    so that a sparse property yields an explicit empty row.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    empty = {"pearson_r": np.nan, "p_value": np.nan, "spearman_r": np.nan, "spearman_p": np.nan}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return empty
    pearson = stats.pearsonr(x, y)
    spearman = stats.spearmanr(x, y)
    return {
        "pearson_r": float(pearson.statistic),
        "p_value": float(pearson.pvalue),
        "spearman_r": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
    }


def partial_correlation(x: np.ndarray, y: np.ndarray, covariate: np.ndarray) -> tuple[float, float]:
    """Pearson correlation of x and y after regressing a covariate (and an intercept) out of both.

    Parameters
    ----------
    x, y, covariate : array of shape (n_samples,)

    Returns
    -------
    r : float
        Partial correlation.
    p_value : float
        Two-sided t-test with n - 3 degrees of freedom (one covariate). NaN when n < 4.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    design = np.column_stack([np.ones_like(x), np.asarray(covariate, dtype=np.float64)])
    n = x.size
    if n < 4:
        return np.nan, np.nan
    residuals = np.column_stack([x, y]) - design @ np.linalg.lstsq(design, np.column_stack([x, y]), rcond=None)[0]
    r = float(pearson_columns(residuals[:, :1], residuals[:, 1:])[0])
    if not np.isfinite(r):
        return np.nan, np.nan
    dof = n - 3
    t = r * np.sqrt(dof / max(1 - r**2, np.finfo(float).tiny))
    return r, float(2 * stats.t.sf(abs(t), dof))
