"""Statistics shared by every stage: Pearson helpers, bootstraps, sign flips, permutation schemes,
the smallest attainable p-value, and FDR.

This module imports nothing else from brainalign, so that encoding, behavior and analysis
share it without importing each other. It builds on the maintained libraries where they
fit: :func:`scipy.stats.permutation_test` for sign flips, :func:`scipy.stats.pearsonr` and
``spearmanr`` for correlations, statsmodels' ``multipletests`` for FDR. What they do not
offer is here, small and vectorized: bootstraps from per-cluster sums (one matrix product
per batch of resamples), crossed bootstraps of two factors, weighted medians, and the
block permutation schemes of fMRI data (swaps of equal-size groups, circular shifts).

Every resampling routine is seeded, so a rerun on the same numbers gives the same result.

Smallest attainable p-value (``p_min``): a permutation test cannot give a p-value below
the share of its permutations that are at least as extreme as the observed value when
the data are maximally extreme. Exact two-sided sign flips over n units reach 2 / 2**n
(the identity and the all-flipped pattern); Monte-Carlo tests with B resamples reach
1 / (B + 1) one-sided and 2 / (B + 1) two-sided (scipy doubles the smaller tail);
analytic tests (t, z, likelihood ratio) reach any p > 0. A test whose ``p_min`` exceeds
the significance level cannot reject however strong the effect: tables carry ``p_min``
and ``can_reach_alpha`` next to every p-value so that such a test is not read as evidence
of no effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

N_RESAMPLES = 10_000
CONFIDENCE = 0.95
ALPHA = 0.05
"""Significance level of the study's tests (``can_reach_alpha``, the summary's counts)."""
PERMUTATION_SCHEMES = ("group_swap", "circular_shift")


# --------------------------------------------------------------------------- Pearson
def pearson_columns(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of two (samples x targets) arrays.

    Computed in float64. A column that is constant in either array has no defined
    correlation and gets NaN (never 0), so callers can exclude and count it.

    Parameters
    ----------
    predicted, observed : array of shape (n_samples, n_targets)

    Returns
    -------
    r : array of shape (n_targets,)
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    if predicted.shape != observed.shape:
        raise ValueError(f"shape mismatch: {predicted.shape} vs {observed.shape}")
    predicted = predicted - predicted.mean(axis=0)
    observed = observed - observed.mean(axis=0)
    numerator = (predicted * observed).sum(axis=0)
    denominator = np.sqrt((predicted**2).sum(axis=0) * (observed**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = numerator / denominator
    scale = np.sqrt((observed**2).sum(axis=0) / len(observed))
    pscale = np.sqrt((predicted**2).sum(axis=0) / len(predicted))
    # Numerically constant columns (relative to their magnitude) have no correlation.
    r[(denominator == 0) | (scale <= 1e-12) | (pscale <= 1e-12)] = np.nan
    return r


def pearson_from_counts(x: np.ndarray, y: np.ndarray, counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Pearson r of (x, y) on every cluster-bootstrap resample, from per-cluster sums.

    Parameters
    ----------
    x, y : array of shape (n_samples,)
    counts : array of shape (n_resamples, n_clusters)
        How often each cluster is drawn (:func:`cluster_bootstrap_counts`).
    index : array of int, shape (n_samples,)
        Each sample's cluster column in ``counts``.

    Returns
    -------
    r : array of shape (n_resamples,)
    """
    # Centring first keeps the sums of squares small, so the variances lose no digits.
    x = x - x.mean()
    y = y - y.mean()
    moments = np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=1)
    per_cluster = np.zeros((counts.shape[1], moments.shape[1]))
    np.add.at(per_cluster, index, moments)
    n, sx, sy, sxx, syy, sxy = (counts @ per_cluster).T
    cov = sxy - sx * sy / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt((sxx - sx**2 / n) * (syy - sy**2 / n))


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


# --------------------------------------------------------------------------- bootstrap
def bootstrap_indices(n_samples: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Return (n_resamples, n_samples) indices drawn with replacement (NumPy generator ``seed``)."""
    return np.random.default_rng(seed).integers(0, n_samples, size=(n_resamples, n_samples))


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Return the percentile interval of bootstrap values (undefined resamples ignored)."""
    tail = 100 * (1 - confidence) / 2
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.nan, np.nan
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_mean_ci(
    values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap CI of a mean; NaN for fewer than two values."""
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


def multinomial_counts(n_units: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of ``n_units`` units is drawn in each of ``n_resamples`` bootstrap resamples
    (n_units draws with replacement), as float array of shape (n_resamples, n_units)."""
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_resamples).astype(np.float64)


def cluster_bootstrap_counts(clusters: np.ndarray, n_resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample whole clusters (sentences, bases) with replacement.

    Returns
    -------
    counts : array of shape (n_resamples, n_clusters)
        How often each cluster is drawn, clusters in sorted order.
    index : array of int, shape (n_samples,)
        Each sample's cluster column in ``counts``.
    """
    _, index = np.unique(clusters, return_inverse=True)
    return multinomial_counts(int(index.max()) + 1, n_resamples, np.random.default_rng(seed)), index


def mean_from_counts(values: np.ndarray, counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Mean of ``values`` on every cluster-bootstrap resample (see :func:`cluster_bootstrap_counts`)."""
    sums = np.bincount(index, weights=values, minlength=counts.shape[1])
    sizes = np.bincount(index, minlength=counts.shape[1]).astype(np.float64)
    return (counts @ sums) / (counts @ sizes)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Median along the last axis of ``values`` with each entry repeated ``weights`` times.

    Equals ``np.nanmedian`` of the expanded array (the mean of the two middle entries for
    an even total weight). NaN values and zero weights are left out; rows without any
    weight give NaN.

    Parameters
    ----------
    values : array of shape (..., n)
    weights : array of non-negative integers (as floats), broadcastable to ``values``
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.where(np.isnan(values), 0.0, np.broadcast_to(weights, values.shape))
    order = np.argsort(values, axis=-1)  # NaN sorts last, where its weight 0 adds nothing
    sorted_values = np.take_along_axis(values, order, axis=-1)
    cumulative = np.cumsum(np.take_along_axis(weights, order, axis=-1), axis=-1)
    total = cumulative[..., -1:]
    # 0-based positions of the two middle entries of the expanded, sorted array.
    lower, upper = np.floor((total - 1) / 2), np.floor(total / 2)
    pick = [np.minimum((cumulative <= k).sum(axis=-1, keepdims=True), values.shape[-1] - 1) for k in (lower, upper)]
    middle = [np.take_along_axis(sorted_values, position, axis=-1) for position in pick]
    median = ((middle[0] + middle[1]) / 2)[..., 0]
    return np.where(total[..., 0] > 0, median, np.nan)


# --------------------------------------------------------------------------- tests
def clustered_mean_p_value(values: np.ndarray, index: np.ndarray) -> float:
    """Two-sided z-test p-value that the mean of ``values`` is zero, with cluster-robust errors.

    ``index`` gives each value's cluster (e.g. sentence); NaN for fewer than two clusters.
    """
    sums = np.bincount(index, weights=values)
    sizes = np.bincount(index).astype(np.float64)
    mean = sums.sum() / sizes.sum()
    n_groups = len(sums)
    if n_groups < 2:
        return float("nan")
    variance = n_groups / (n_groups - 1) * np.sum((sums - mean * sizes) ** 2) / sizes.sum() ** 2
    return float(2 * stats.norm.sf(abs(mean) / np.sqrt(variance))) if variance > 0 else float("nan")


def sign_flip_test(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> float:
    """Two-sided test of a zero mean by flipping the signs of independent units' values.

    :func:`scipy.stats.permutation_test` (``samples`` type): exact (all 2**n sign
    patterns) when 2**n <= ``n_resamples``, else Monte Carlo. Sign flips are valid when
    each unit's value is symmetric around zero under the null and units are independent,
    so dependent values (pairs sharing a base, neuroids of one subject) must be averaged
    per independent unit first. The mean and the one-sample t statistic order sign
    patterns identically (the sum of squares does not change under flips), so this is
    also the sign-flip t-test.

    Parameters
    ----------
    values : array of shape (n_units,)

    Returns
    -------
    p_value : float
        NaN for fewer than two values (one unit cannot be tested).
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


def sign_flip_p_min(n_units: int, n_resamples: int = N_RESAMPLES) -> float:
    """Smallest p-value :func:`sign_flip_test` can give over ``n_units`` units: 2 / 2**n when
    exact, 2 / (n_resamples + 1) when Monte Carlo; NaN for fewer than two units (no test)."""
    if n_units < 2:
        return np.nan
    if 2.0**n_units <= n_resamples:
        return float(2.0 / 2.0**n_units)
    return float(2.0 / (n_resamples + 1))


def paired_sign_flip_test(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: np.ndarray | None = None,
    n_permutations: int = 1000,
    random_state: int = 0,
) -> tuple[float, float, int]:
    """Two-sided paired test of the mean difference a - b with sign flips of whole groups.

    Items that share a group (a subject, a cv group) are dependent, so their differences
    are averaged per group first and the signs of the group means are flipped
    (:func:`sign_flip_test`).

    Parameters
    ----------
    scores_a, scores_b : array of shape (n_items,)
        Paired scores; pairs with a NaN are dropped.
    groups : array of shape (n_items,) or None
        Exchangeability blocks; None treats every item as its own block.
    n_permutations, random_state : int

    Returns
    -------
    difference : float
        Mean over groups of the mean difference a - b.
    p_value : float
    n_groups : int
        Groups with at least one defined pair (the units flipped, for :func:`sign_flip_p_min`).
    """
    scores_a = np.asarray(scores_a, dtype=np.float64)
    scores_b = np.asarray(scores_b, dtype=np.float64)
    groups = np.arange(len(scores_a)) if groups is None else np.asarray(groups)
    keep = np.isfinite(scores_a) & np.isfinite(scores_b)
    labels, index = np.unique(groups[keep], return_inverse=True)
    counts = np.bincount(index, minlength=len(labels))
    differences = np.bincount(index, weights=scores_a[keep] - scores_b[keep], minlength=len(labels)) / counts
    return float(differences.mean()), sign_flip_test(differences, n_permutations, random_state), len(labels)


def group_swap_permutations(units: np.ndarray, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Row orders that swap whole units of equal size, matching rows by order within unit,
    shape (n_permutations, n_rows).

    Rows of a unit must be contiguous. Exact when units of a size are exchangeable, and
    keeps any structure shared by all units (e.g. a position template).
    """
    _, starts, unit_of_row, sizes = np.unique(units, return_index=True, return_inverse=True, return_counts=True)
    units_by_size = [np.flatnonzero(sizes == size) for size in np.unique(sizes)]
    rows = np.arange(len(units))
    orders = np.empty((n_permutations, len(units)), dtype=np.intp)
    target = np.arange(len(sizes))
    for draw in range(n_permutations):
        for same_size in units_by_size:
            target[same_size] = rng.permutation(same_size)
        # Row k of unit u (at starts[u] + k) takes row starts[target[u]] + k.
        orders[draw] = rows + (starts[target] - starts)[unit_of_row]
    return orders


def can_swap_groups(units: np.ndarray) -> bool:
    """Whether any two units have the same size (else every group swap is the identity)."""
    sizes = np.unique(units, return_counts=True)[1]
    return len(np.unique(sizes)) < len(sizes)


def circular_shift_permutations(
    streams: np.ndarray, n_permutations: int, min_shift: int, rng: np.random.Generator
) -> np.ndarray:
    """Row orders that shift each stream's rows circularly, by at least ``min_shift`` rows in
    either direction (at most half the stream), each stream by its own shift, shape
    (n_permutations, n_rows).

    Keeps each series' autocorrelation; works for streams of any length."""
    stream_rows = [np.flatnonzero(streams == stream) for stream in pd.unique(streams)]
    movable = [(rows, int(np.clip(min_shift, 1, len(rows) // 2))) for rows in stream_rows if len(rows) >= 2]
    orders = np.tile(np.arange(len(streams)), (n_permutations, 1))
    for draw in range(n_permutations):
        for rows, least in movable:
            shift = rng.integers(least, len(rows) - least + 1)
            orders[draw, rows] = rows[(np.arange(len(rows)) + shift) % len(rows)]
    return orders


def monte_carlo_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided Monte-Carlo p-value ``(1 + #{null >= observed}) / (1 + n)`` (never 0)."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.sum(null >= observed)) / (1 + null.size))


def monte_carlo_p_min(n_permutations: int) -> float:
    """Smallest one-sided Monte-Carlo p-value over ``n_permutations``: 1 / (n + 1); NaN for none."""
    return float(1.0 / (n_permutations + 1)) if n_permutations > 0 else np.nan


def reach_columns(p_value: float, p_min: float, alpha: float = ALPHA) -> dict[str, object]:
    """``p_min`` and ``can_reach_alpha`` (whether p < alpha is attainable; None without a test)."""
    tested = np.isfinite(p_value) and np.isfinite(p_min)
    return {"p_min": p_min if tested else np.nan, "can_reach_alpha": bool(p_min < alpha) if tested else None}


# --------------------------------------------------------------------------- FDR
def fdr_bh(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values; NaN entries stay NaN and do not count as tests."""
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p_values, np.nan)
    finite = np.isfinite(p_values)
    if finite.any():
        adjusted[finite] = multipletests(p_values[finite], method="fdr_bh")[1]
    return adjusted


def with_fdr(tables: dict[str, pd.DataFrame], family: list[str]) -> dict[str, pd.DataFrame]:
    """Add ``p_fdr`` to every table: Benjamini-Hochberg over the ``p_value`` column of all tables
    together, within each family of tests (rows sharing the values of the ``family`` columns).

    ``p_fdr`` goes right after ``can_reach_alpha`` where a table has it, else after ``p_value``.
    """
    pooled = pd.concat(
        [table[family + ["p_value"]].assign(_table=name, _row=np.arange(len(table))) for name, table in tables.items()],
        ignore_index=True,
    )
    pooled["p_fdr"] = np.nan
    for _, group in pooled.groupby(family, sort=False):
        pooled.loc[group.index, "p_fdr"] = fdr_bh(group["p_value"].to_numpy(dtype=np.float64))
    adjusted = {}
    for name, table in tables.items():
        table = table.copy()
        after = "can_reach_alpha" if "can_reach_alpha" in table.columns else "p_value"
        values = pooled.loc[pooled["_table"] == name].sort_values("_row")["p_fdr"].to_numpy()
        table.insert(table.columns.get_loc(after) + 1, "p_fdr", values)
        adjusted[name] = table
    return adjusted


def median_absolute_deviation(values: np.ndarray) -> float:
    """Median absolute deviation from the median (unscaled), ignoring NaN."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    return float(np.median(np.abs(values - np.median(values))))
