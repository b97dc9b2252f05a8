"""Resampling of the robust headline: crossed bootstrap and permutation null, per fold.

All of it works on the held-out predictions that the cross-validation already made, so
nothing is refitted. The score judged is the robust protocol's headline
(:func:`headline_columns`): per neuroid, the held-out gain in signed R^2 of the model over
a baseline fitted on the same training rows (the controls-only model; none when there are
no control bands, and the gain is the model's own R^2); per fold the median over neuroids,
averaged over folds and then over partitions (:func:`aggregate_fold_scores`).

Each fold gets two vectors of scores, stored with the fold so that any choice of one
layer per fold (the nested layer choice) gets its CI and p-value from the chosen layers'
vectors, without refitting:

- :func:`fold_bootstrap_scores`: a crossed bootstrap over subjects and stimulus groups.
  Subjects (all neuroids of one subject together) and resampling units (a cv group for
  sentence data, a contiguous block of TRs for time series; units never straddle folds)
  are drawn with replacement independently of each other, units within each fold. A
  drawn subject's neuroids enter the median over neuroids as often as the subject is
  drawn; a drawn unit's rows enter the fold's R^2 as often as it is drawn, recomputed
  from per-unit sums (n, sums of y, y^2 and both models' squared errors), so a batch of
  resamples costs one small matrix product. Subjects are drawn once for the whole
  dataset (a subject in two partitions keeps its weight), so between-subject variance
  widens the CI instead of averaging away. The draws depend only on the dataset's
  subjects, folds and units, never on the features, so every layer of a model sees the
  same resample ``b``; the bootstrap of a nested score takes, per fold, resample ``b`` of
  the layer chosen there (the choice itself, made on training rows, is held fixed).
- :func:`fold_permutation_scores`: the null that the tested part of the model (the LLM
  band's contribution to the joint model; all of the model without a baseline) carries
  no information about the responses. That part is moved against the rest of the data
  under one of two schemes (:data:`brainalign.stats.PERMUTATION_SCHEMES`), the rest of the
  model's predictions and the baseline staying in place, and the gain recomputed; so what
  the joint model gains from fitting the control bands differently is in the observed
  and the null scores alike, and is not credited to the LLM. ``group_swap`` (sentences in
  passages or topics): within each fold, whole groups of the same size swap their tested
  parts. ``circular_shift`` (TRs of stories or runs): within each fold, each stream's
  tested part is shifted circularly by at least ``min_shift`` rows. Entry 0 is the
  identity (the observed score through the same float64 arithmetic as the null), so a
  permutation that changes nothing ties with it. Like the bootstrap draws, the
  permutations depend only on the units and streams, so they are shared by all layers.
  scipy's ``permutation_test`` has no block or circular schemes, hence the generators in
  :mod:`brainalign.stats`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from brainalign.encoding.metrics import r2_columns
from brainalign.stats import (
    PERMUTATION_SCHEMES,
    can_swap_groups,
    circular_shift_permutations,
    group_swap_permutations,
    monte_carlo_p_value,
    multinomial_counts,
    percentile_interval,
    weighted_median,
)

SUMS = ("n", "y", "yy", "model_sse", "baseline_sse")
BATCH = 50
"""Bootstrap resamples computed at once (bounds memory to BATCH x 5 x n_neuroids floats)."""
PERMUTATION_BYTES = 2**25
"""Moved predictions of permutations scored at once, in bytes (at least one permutation)."""

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
    subjects : array of int, shape (n_targets,), or None
        Each target's subject, as an index into the dataset's subjects (the bootstrap's
        subject draws). None: all targets belong to one subject.
    """

    predictions: np.ndarray
    observed: np.ndarray
    units: np.ndarray
    streams: np.ndarray | None = None
    baseline: np.ndarray | None = None
    tested: np.ndarray | None = None
    subjects: np.ndarray | None = None


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


def aggregate_fold_scores(partitions: list[np.ndarray]) -> np.ndarray:
    """The reported aggregate of fold scores: mean over folds (undefined folds skipped), then
    over partitions.

    Parameters
    ----------
    partitions : list of array of shape (n_folds, ...)
        Per partition, the scores of its folds (e.g. one column per resample).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.mean([np.nanmean(scores, axis=0) for scores in partitions], axis=0)


def fold_statistic(sums: np.ndarray, unit_counts: np.ndarray, neuroid_weights: np.ndarray) -> np.ndarray:
    """A fold's headline on resamples: per-unit sums weighted by how often each unit is drawn,
    median over neuroids weighted by how often each neuroid's subject is drawn.

    Parameters
    ----------
    sums : array of shape (n_units, 5, n_targets)
        From :func:`unit_sums`.
    unit_counts : array of shape (n_resamples, n_units)
    neuroid_weights : array of shape (n_resamples, n_targets)

    Returns
    -------
    array of shape (n_resamples,)
    """
    headline = headline_from_sums(np.einsum("bu,ukt->bkt", unit_counts, sums))
    return weighted_median(headline, neuroid_weights)


def bootstrap_draws(
    n_subjects: int, units_per_fold: list[list[int]], n_bootstrap: int, random_state: int
) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """The crossed bootstrap's draws: subject counts, then unit counts of every fold in order.

    They depend only on the dataset's structure and the seed, so every layer gets the same.

    Parameters
    ----------
    n_subjects : int
        Subjects of the dataset (all partitions).
    units_per_fold : list (partitions) of list (folds) of int
        Resampling units in each fold.

    Returns
    -------
    subject_counts : array of shape (n_bootstrap, n_subjects)
    unit_counts : list (partitions) of list (folds) of array of shape (n_bootstrap, n_units)
    """
    rng = np.random.default_rng(random_state)
    subject_counts = multinomial_counts(n_subjects, n_bootstrap, rng)
    unit_counts = [[multinomial_counts(n, n_bootstrap, rng) for n in folds] for folds in units_per_fold]
    return subject_counts, unit_counts


def fold_bootstrap_scores(
    partitions: list[list[HeldOut]], n_subjects: int, n_bootstrap: int = 1000, random_state: int = 0
) -> list[np.ndarray]:
    """Every fold's headline on each crossed bootstrap resample (see the module docstring).

    Parameters
    ----------
    partitions : list (partitions) of list (folds) of HeldOut
        ``subjects`` of each fold index ``range(n_subjects)`` (None: one subject).
    n_subjects : int
    n_bootstrap, random_state : int

    Returns
    -------
    list (partitions) of array of shape (n_folds, n_bootstrap)
    """
    fold_sums = [[unit_sums(held_out)[1] for held_out in folds] for folds in partitions]
    units_per_fold = [[len(sums) for sums in folds] for folds in fold_sums]
    subject_counts, unit_counts = bootstrap_draws(n_subjects, units_per_fold, n_bootstrap, random_state)
    scores = []
    for folds, sums_of_folds, counts_of_folds in zip(partitions, fold_sums, unit_counts, strict=True):
        partition_scores = np.empty((len(folds), n_bootstrap))
        for f, (held_out, sums, counts) in enumerate(zip(folds, sums_of_folds, counts_of_folds, strict=True)):
            subjects = np.zeros(sums.shape[-1], dtype=int) if held_out.subjects is None else held_out.subjects
            for start in range(0, n_bootstrap, BATCH):
                batch = slice(start, start + BATCH)
                partition_scores[f, batch] = fold_statistic(sums, counts[batch], subject_counts[batch][:, subjects])
        scores.append(partition_scores)
    return scores


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
        self.baseline_sse = (
            self.total if held_out.baseline is None else ((observed - held_out.baseline) ** 2).sum(axis=0)
        )
        self.defined = self.total > 1e-12 * np.maximum((observed**2).sum(axis=0), 1e-300)

    def scores(self, orders: np.ndarray) -> np.ndarray:
        """The headline under each row order, shape (n_orders,); orders are taken
        ``PERMUTATION_BYTES`` of moved predictions at a time."""
        n_rows, n_neuroids = self.increment.shape
        batch = max(1, PERMUTATION_BYTES // (8 * n_rows * n_neuroids))
        headlines = np.empty(len(orders))
        for start in range(0, len(orders), batch):
            moved = self.increment[orders[start : start + batch]]
            model_sse = ((self.residual - moved) ** 2).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                gain = np.where(self.defined, (self.baseline_sse - model_sse) / self.total, np.nan)
            headlines[start : start + batch] = median_over_neuroids(gain)
        return headlines


def fold_permutation_scores(
    partitions: list[list[HeldOut]],
    n_permutations: int = 1000,
    scheme: str = "group_swap",
    min_shift: int = 20,
    random_state: int = 0,
) -> list[np.ndarray] | None:
    """Every fold's headline under the identity (entry 0) and each permutation (see the module
    docstring).

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
    list (partitions) of array of shape (n_folds, 1 + n_permutations), or None
        None when ``n_permutations`` is 0, or when no fold can be permuted (group swaps of
        folds whose groups all differ in size; a warning names the fix).
    """
    if scheme not in PERMUTATION_SCHEMES:
        raise ValueError(f"unknown permutation scheme {scheme!r}; use one of {list(PERMUTATION_SCHEMES)}")
    if n_permutations <= 0:
        return None
    rng = np.random.default_rng(random_state)
    n_folds = sum(len(folds) for folds in partitions)
    n_fixed = 0
    scores = []
    for folds in partitions:
        fold_scores = np.empty((len(folds), 1 + n_permutations))
        for f, held_out in enumerate(folds):
            fold_null = _IncrementNull(held_out)
            streams = np.zeros(len(held_out.observed), dtype=int) if held_out.streams is None else held_out.streams
            n_fixed += scheme == "group_swap" and not can_swap_groups(held_out.units)
            if scheme == "circular_shift":
                orders = circular_shift_permutations(streams, n_permutations, min_shift, rng)
            else:
                orders = group_swap_permutations(held_out.units, n_permutations, rng)
            fold_scores[f] = fold_null.scores(np.vstack([np.arange(len(streams)), orders]))
        scores.append(fold_scores)
    if n_fixed:
        logger.warning(
            "permutation test: in %d of %d folds no two groups have the same size, so group swaps leave them "
            "as they are; for stories or runs of unequal length use the circular_shift scheme "
            "(datasets.<name>.permutation)",
            n_fixed,
            n_folds,
        )
    return None if n_fixed == n_folds else scores


def score_interval(bootstrap: list[np.ndarray], confidence_level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of the reported score from its folds' bootstrap scores.

    Parameters
    ----------
    bootstrap : list (partitions) of array of shape (n_folds, n_bootstrap)
        Per fold, the scores of :func:`fold_bootstrap_scores` (of the layer reported there).
    confidence_level : float

    Returns
    -------
    ci_low, ci_high : float (NaN without resamples)
    """
    if not bootstrap or np.shape(bootstrap[0])[-1] == 0:
        return np.nan, np.nan
    return percentile_interval(aggregate_fold_scores(bootstrap), confidence_level)


def score_p_value(permutation: list[np.ndarray] | None) -> float:
    """One-sided permutation p-value of the reported score from its folds' permutation scores
    (:func:`fold_permutation_scores`: entry 0 the identity); NaN without a test."""
    if permutation is None:
        return np.nan
    scores = aggregate_fold_scores(permutation)
    return monte_carlo_p_value(scores[0], scores[1:])
