"""Uncertainty of encoding scores: bootstrap CIs, block permutation tests, paired tests.

All tests work on the held-out predictions that the cross-validation already made, so
nothing is refitted. The score they judge is the robust protocol's headline
(:func:`headline_columns`): per neuroid, the held-out gain in signed R^2 of the model over
a baseline fitted on the same training rows (the controls-only model; none when there are
no control bands, and the gain is the model's own R^2); per fold the median over neuroids,
averaged over folds and then over partitions.

Resampling units respect the dependence in the data: a unit is a cv group (passage,
topic, story) for sentence data and a contiguous block of TRs for time series; units
never straddle folds.

- :func:`bootstrap_score_ci`: :func:`scipy.stats.bootstrap` (percentile method) over
  units, independently per partition. Each fold's gain is recomputed from per-unit sums
  (n, sums of y, y^2 and both models' squared errors), so a resample costs one small
  matrix product.
- :func:`permutation_p_value`: the null that the tested part of the model (the LLM band's
  contribution to the joint model; all of the model without a baseline) carries no
  information about the responses. That part is moved against the rest of the data
  under one of two schemes (:data:`PERMUTATION_SCHEMES`), the rest of the model's
  predictions and the baseline staying in place, and the gain recomputed; so what the
  joint model gains from fitting the control bands differently is in the observed and
  the null scores alike, and is not credited to the LLM. ``group_swap`` (sentences in
  passages or topics): within each fold, whole groups of the same size swap their
  tested parts (rows matched by order within the group), which is exact when groups are
  exchangeable and keeps any structure shared by all groups (e.g. a position template),
  so the test asks whether the tested part tells groups apart. ``circular_shift`` (TRs of
  stories or runs): within each fold, each stream's tested part is shifted circularly by
  at least ``min_shift`` rows, which keeps each series' autocorrelation and works for
  streams of any length, one per fold included. The observed score is the identity
  permutation through the same float64 arithmetic as the null scores, so a permutation
  that changes nothing ties with it. scipy's ``permutation_test`` has no block or
  circular schemes, hence the small generator here. p = (1 + #null >= observed) / (1 +
  n_permutations).
- :func:`paired_permutation_test`: two models on the same data; sign flips of the
  per-group differences with :func:`scipy.stats.permutation_test` (``samples`` type).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from brainalign.encoding.metrics import r2_columns

SUMS = ("n", "y", "yy", "model_sse", "baseline_sse")
PERMUTATION_SCHEMES = ("group_swap", "circular_shift")

logger = logging.getLogger(__name__)


@dataclass
class HeldOut:
    """Held-out predictions of one (partition, fold) and their resampling units.

    Attributes
    ----------
    predictions, observed : array of shape (n_test, n_targets)
        The model's held-out predictions (on the responses' scale) and the responses.
    units : array of int, shape (n_test,)
        Resampling unit of every test row (rows of a unit are contiguous and in order).
    streams : array, shape (n_test,), or None
        Stream (story, run) of every test row, for circular shifts; rows of a stream are
        contiguous and in temporal order. None: the fold is one stream.
    baseline : array of shape (n_test, n_targets), or None
        The baseline model's held-out predictions (controls only), fitted on the same
        training rows. None: no baseline, the headline is the model's own R^2.
    tested : array of shape (n_test, n_targets), or None
        The part of ``predictions`` whose link to the responses the permutation test
        breaks (the LLM band's contribution to the joint model); None: all of it.
    """

    predictions: np.ndarray
    observed: np.ndarray
    units: np.ndarray
    streams: np.ndarray | None = None
    baseline: np.ndarray | None = None
    tested: np.ndarray | None = None


def headline_columns(predictions: np.ndarray, observed: np.ndarray, baseline: np.ndarray | None) -> np.ndarray:
    """Per-neuroid headline: held-out R^2 of the model minus that of the baseline (or its own R^2
    when there is no baseline)."""
    gain = r2_columns(predictions, observed)
    return gain if baseline is None else gain - r2_columns(baseline, observed)


def unit_sums(held_out: HeldOut) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit sufficient statistics of the headline.

    Returns
    -------
    labels : array of shape (n_units,)
    sums : array of shape (n_units, 5, n_targets)
        In the order of ``SUMS``; ``baseline_sse`` is NaN without a baseline.
    """
    labels, index = np.unique(held_out.units, return_inverse=True)
    indicator = np.zeros((len(labels), len(index)))
    indicator[index, np.arange(len(index))] = 1.0
    # Centring on the fold mean keeps y^2 sums small (SST = yy - y^2 / n loses no digits);
    # squared errors do not change when responses and predictions shift together.
    offset = np.asarray(held_out.observed, dtype=np.float64).mean(axis=0)
    y = held_out.observed - offset
    model_error = (y - (held_out.predictions - offset)) ** 2
    baseline_error = np.full_like(y, np.nan) if held_out.baseline is None else (y - (held_out.baseline - offset)) ** 2
    terms = (np.ones_like(y), y, y * y, model_error, baseline_error)
    sums = np.stack([indicator @ term for term in terms], axis=1)
    return labels, sums


def headline_from_sums(sums: np.ndarray) -> np.ndarray:
    """The headline (:func:`headline_columns`) from summed statistics of shape (..., 5, n_targets)."""
    n, y, yy, model_sse, baseline_sse = (sums[..., k, :] for k in range(len(SUMS)))
    with np.errstate(invalid="ignore", divide="ignore"):
        total = yy - y * y / n
        baseline_sse = np.where(np.isnan(baseline_sse), total, baseline_sse)
        gain = (baseline_sse - model_sse) / total
    return np.where((n >= 2) & (total > 1e-12 * np.maximum(yy, 1e-300)), gain, np.nan)


def median_over_neuroids(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median over neuroids, ignoring undefined (NaN) neuroids (all NaN gives NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def _partition_statistic(fold_sums: list[np.ndarray], fold_of_unit: np.ndarray, resampled: np.ndarray) -> np.ndarray:
    """Fold-averaged median headline of one partition for resampled unit indices (batch, n_units)."""
    n_units = len(fold_of_unit)
    counts = np.zeros((resampled.shape[0], n_units))
    np.add.at(counts, (np.arange(resampled.shape[0])[:, None], resampled), 1.0)
    per_fold = []
    for fold, sums in enumerate(fold_sums):
        members = fold_of_unit == fold
        total = np.einsum("bu,ukt->bkt", counts[:, members], sums)
        per_fold.append(median_over_neuroids(headline_from_sums(total)))
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.stack(per_fold), axis=0)


def bootstrap_score_ci(
    partitions: list[list[HeldOut]],
    n_bootstrap: int = 1000,
    confidence_level: float = 0.95,
    random_state: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the headline score, resampling units per partition.

    Parameters
    ----------
    partitions : list (partitions) of list (folds) of HeldOut
    n_bootstrap : int
    confidence_level : float
    random_state : int

    Returns
    -------
    ci_low, ci_high : float (NaN when n_bootstrap is 0)
    """
    if n_bootstrap <= 0:
        return np.nan, np.nan
    fold_sums, fold_of_unit = [], []
    for folds in partitions:
        sums = [unit_sums(held_out)[1] for held_out in folds]
        fold_sums.append(sums)
        fold_of_unit.append(np.concatenate([np.full(len(s), k) for k, s in enumerate(sums)]))

    def statistic(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        per_partition = [
            _partition_statistic(fold_sums[k], fold_of_unit[k], np.atleast_2d(indices).astype(int))
            for k, indices in enumerate(resampled)
        ]
        return np.mean(per_partition, axis=0)

    data = tuple(np.arange(len(units)) for units in fold_of_unit)
    result = stats.bootstrap(
        data,
        statistic,
        n_resamples=n_bootstrap,
        batch=50,
        vectorized=True,
        paired=False,
        confidence_level=confidence_level,
        method="percentile",
        rng=np.random.default_rng(random_state),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def group_swap_permutation(units: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row order that swaps whole units of equal size, matching rows by order within unit."""
    _, starts, unit_of_row, sizes = np.unique(units, return_index=True, return_inverse=True, return_counts=True)
    target = np.arange(len(sizes))
    for size in np.unique(sizes):
        same_size = np.flatnonzero(sizes == size)
        target[same_size] = rng.permutation(same_size)
    # Row k of unit u (at starts[u] + k) takes row starts[target[u]] + k.
    return np.arange(len(units)) + (starts[target] - starts)[unit_of_row]


def can_swap_groups(units: np.ndarray) -> bool:
    """Whether any two units have the same size (else every group swap is the identity)."""
    sizes = np.unique(units, return_counts=True)[1]
    return len(np.unique(sizes)) < len(sizes)


def circular_shift_permutation(streams: np.ndarray, min_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Row order that shifts each stream's rows circularly, by at least ``min_shift`` rows in
    either direction (at most half the stream), each stream by its own shift."""
    order = np.arange(len(streams))
    for stream in pd.unique(streams):
        rows = np.flatnonzero(streams == stream)
        if len(rows) < 2:
            continue
        least = int(np.clip(min_shift, 1, len(rows) // 2))
        shift = rng.integers(least, len(rows) - least + 1)
        order[rows] = rows[(np.arange(len(rows)) + shift) % len(rows)]
    return order


class _IncrementNull:
    """One fold's headline with the tested part of the model's predictions moved by a row order.

    With ``rest = predictions - tested`` and ``residual = y - rest``, the model's squared
    error under ``order`` is ``sum((residual - tested[order])^2)``; the baseline's error
    (SST without a baseline) and SST do not move.
    """

    def __init__(self, held_out: HeldOut):
        observed = np.asarray(held_out.observed, dtype=np.float64)
        predictions = np.asarray(held_out.predictions, dtype=np.float64)
        if held_out.tested is not None:
            tested = np.asarray(held_out.tested, dtype=np.float64)
        elif held_out.baseline is not None:
            tested = predictions - held_out.baseline
        else:
            tested = predictions
        self.residual = observed - (predictions - tested)
        self.increment = tested
        self.total = ((observed - observed.mean(axis=0)) ** 2).sum(axis=0)
        self.baseline_sse = self.total if held_out.baseline is None else ((observed - held_out.baseline) ** 2).sum(axis=0)
        self.defined = self.total > 1e-12 * np.maximum((observed**2).sum(axis=0), 1e-300)

    def score(self, order: np.ndarray) -> float:
        model_sse = ((self.residual - self.increment[order]) ** 2).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = np.where(self.defined, (self.baseline_sse - model_sse) / self.total, np.nan)
        return float(median_over_neuroids(gain))


def permutation_p_value(
    partitions: list[list[HeldOut]],
    n_permutations: int = 1000,
    scheme: str = "group_swap",
    min_shift: int = 20,
    random_state: int = 0,
) -> tuple[float, np.ndarray]:
    """One-sided permutation p-value of the headline score (see module docstring).

    Parameters
    ----------
    partitions : list (partitions) of list (folds) of HeldOut
    n_permutations : int
    scheme : {"group_swap", "circular_shift"}
        Swaps of equal-size groups, or circular shifts within streams.
    min_shift : int
        Smallest circular shift, in rows.
    random_state : int

    Returns
    -------
    p_value : float
        NaN when ``n_permutations`` is 0, or when no fold can be permuted (group swaps of
        folds whose groups all differ in size; a warning names the fix).
    null : array of shape (n_permutations,)
        Scores under the null.
    """
    if scheme not in PERMUTATION_SCHEMES:
        raise ValueError(f"unknown permutation scheme {scheme!r}; use one of {list(PERMUTATION_SCHEMES)}")
    if n_permutations <= 0:
        return np.nan, np.empty(0)
    rng = np.random.default_rng(random_state)
    n_folds = sum(len(folds) for folds in partitions)
    n_fixed = 0
    # Column 0 is the identity (the observed score), computed exactly as the null scores are.
    scores = np.zeros((len(partitions), 1 + n_permutations))
    for k, folds in enumerate(partitions):
        fold_scores = np.empty((len(folds), 1 + n_permutations))
        for f, held_out in enumerate(folds):
            fold_null = _IncrementNull(held_out)
            streams = np.zeros(len(held_out.observed), dtype=int) if held_out.streams is None else held_out.streams
            n_fixed += scheme == "group_swap" and not can_swap_groups(held_out.units)
            fold_scores[f, 0] = fold_null.score(np.arange(len(streams)))
            for i in range(1, 1 + n_permutations):
                if scheme == "circular_shift":
                    order = circular_shift_permutation(streams, min_shift, rng)
                else:
                    order = group_swap_permutation(held_out.units, rng)
                fold_scores[f, i] = fold_null.score(order)
        scores[k] = np.nanmean(fold_scores, axis=0)
    if n_fixed:
        logger.warning(
            "permutation test: in %d of %d folds no two groups have the same size, so group swaps leave them "
            "as they are; for stories or runs of unequal length use the circular_shift scheme "
            "(datasets.<name>.permutation)", n_fixed, n_folds,
        )
    if n_fixed == n_folds:
        return np.nan, np.full(n_permutations, np.nan)
    observed, null = scores.mean(axis=0)[0], scores.mean(axis=0)[1:]
    p_value = (1 + np.sum(null >= observed)) / (1 + n_permutations)
    return float(p_value), null


def paired_permutation_test(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    groups: np.ndarray | None = None,
    n_permutations: int = 1000,
    random_state: int = 0,
) -> tuple[float, float]:
    """Two-sided paired permutation test of the mean difference between two models.

    Scores are paired items on the same data (e.g. per-neuroid r of an instruction-tuned
    model and of its base). Items that share a group (a subject, a cv group) are
    dependent, so their differences are averaged per group first and the signs of the
    group differences are flipped (:func:`scipy.stats.permutation_test` with
    ``permutation_type="samples"``, exact when there are few groups).

    Parameters
    ----------
    scores_a, scores_b : array of shape (n_items,)
        Paired scores; pairs with a NaN are dropped.
    groups : array of shape (n_items,) or None
        Exchangeability blocks; None treats every item as its own block.
    n_permutations : int
    random_state : int

    Returns
    -------
    difference : float
        Mean over groups of the mean difference a - b.
    p_value : float
    """
    scores_a = np.asarray(scores_a, dtype=np.float64)
    scores_b = np.asarray(scores_b, dtype=np.float64)
    groups = np.arange(len(scores_a)) if groups is None else np.asarray(groups)
    keep = np.isfinite(scores_a) & np.isfinite(scores_b)
    labels, index = np.unique(groups[keep], return_inverse=True)
    counts = np.bincount(index, minlength=len(labels))
    mean_a = np.bincount(index, weights=scores_a[keep], minlength=len(labels)) / counts
    mean_b = np.bincount(index, weights=scores_b[keep], minlength=len(labels)) / counts

    def mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(a - b, axis=axis)

    result = stats.permutation_test(
        (mean_a, mean_b),
        mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_permutations,
        alternative="two-sided",
        rng=np.random.default_rng(random_state),
    )
    return float(result.statistic), float(result.pvalue)
