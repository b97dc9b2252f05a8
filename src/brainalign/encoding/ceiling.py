"""Noise ceilings under the paper's protocol: Brain-Score's subject-pool extrapolation.

Brain-Score (``ExtrapolationCeiling``) predicts each held-out subject's neuroids from a pool
of other subjects with the same ``linear_pearsonr`` metric (OLS, 10 shuffle splits) and keeps
r per (split, neuroid), for pools of every size n = 2..N. The pools follow the dataset's
``ceiling_pools`` (:func:`holdout_draws`): ``sampled`` as in Pereira2018's
``ceiling_packaging.py`` (per size, 10 subject subsets, ordered draws without replacement from
``RandomState(0)`` kept while distinct; in each, 5 held-out subjects drawn with replacement
from a second ``RandomState(0)`` shared by all subsets), ``all`` as in Blank2014's
``ceiling.py`` (every subset of each size, every member held out). Per neuroid, 100 bootstrap
resamples of the r values per n (a new ``RandomState(0)`` per neuroid, pool sizes inside
bootstraps) give mean curves, each fit by ``v0 * (1 - exp(-n / tau))`` with ``0 <= v0 <= 1``;
the neuroid's ceiling is the median v0 and the dataset's is the median over neuroids (per
partition; partitions averaged).

Differences, for speed (the draws, splits and values are the same up to float rounding):
every pool's features enter only through their Gram matrix, the sum of per-subject Gram
matrices computed once; a (pool, held-out subject) pair drawn twice is scored once; when
each split's training and test rows make up all rows and the pool's centred Gram matrix is
well conditioned (so that every split's OLS keeps all its directions), one pseudo-inverse
per pool gives every split's held-out predictions (:func:`held_out_predictor`), otherwise
each split's operator comes from its own eigendecomposition. The bootstrap means are count
matrices times the r values, the draws shared by the neuroids of one subject.

One difference in results: the curve is fit by profiling v0 out, searching tau on a grid and
solving for the zero of the profiled loss's derivative near the grid's best point, which
finds the least-squares optimum. Brain-Score's ``curve_fit`` from (1, 1) sometimes stops at a
worse local optimum with a tiny tau (a flat curve at a lower v0); a neuroid with such a
bootstrap gets another median v0 (tests/conformance: on a Blank2014-shaped assembly 2 of 20
neuroids differ, by up to 0.01, the dataset ceiling by 1e-7), elsewhere the values agree to
curve_fit's tolerance. Wehbe2014 (time series) uses the same procedure on the kept TRs with
the Toneva outer folds (contiguous blocks, boundary TRs dropped) instead of shuffle splits.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from brainalign.datasets.netcdf import read_score
from brainalign.encoding.aw2024 import (
    kernel_prediction_operator,
    partition_splits,
    resolve_aw2024_options,
    split_order,
)
from brainalign.encoding.toneva import outer_splits, resolve_toneva_options
from brainalign.errors import ConfigError, DataError
from brainalign.stats import pearson_columns

CEILING_POOLS = ("sampled", "all")
"""Subject-pool schemes of the extrapolation (:func:`holdout_draws`): Brain-Score's Pereira2018
ceiling samples pools, its Blank2014 ceiling takes every subset."""

LOG_TAU_RANGE = (np.log(1e-3), np.log(1e4))
"""The range of ``log(tau)`` the curve fit searches."""

WELL_CONDITIONED = 1e-8
"""Smallest ratio of a pool's smallest to largest centred Gram eigenvalue (a lower bound of
it) for which one pseudo-inverse serves all splits. ``kernel_prediction_operator`` drops
eigenvalues under ``100 * n_train * eps`` (about 1e-11) of the largest: above this ratio it
drops none but the centring direction, so both routes solve the same least-squares problem."""

GRID_CHUNK_ELEMENTS = 2**21
"""Rows x grid points scored at once by the curve fit's grid search (16 MiB per array)."""

logger = logging.getLogger(__name__)


def exponential_saturation(n: np.ndarray, v0: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Brain-Score's extrapolation curve ``v0 * (1 - exp(-n / tau))``."""
    return v0 * (1 - np.exp(-n / tau))


def profile_fit(
    x: np.ndarray, values: np.ndarray, valid: np.ndarray, log_tau: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best ``v0`` in [0, 1] per row at its own ``log_tau``, the loss there and the loss's
    derivative in ``log_tau``.

    For fixed tau the optimal v0 is the clipped linear least-squares coefficient; the
    derivative of the loss so profiled is its partial derivative at that v0 (the envelope
    theorem, which also holds where v0 sits at a bound).

    Parameters
    ----------
    x : array of shape (n_points,)
    values : array of shape (n_rows, n_points)
        The curves, 0 where ``valid`` is False.
    valid : bool array of shape (n_rows, n_points)
    log_tau : array of shape (n_rows,)

    Returns
    -------
    v0, loss, slope : arrays of shape (n_rows,)
    """
    rate = x[None, :] / np.exp(log_tau)[:, None]
    decay = np.exp(-rate)
    basis = (1 - decay) * valid
    norm = np.einsum("ij,ij->i", basis, basis)
    cross = np.einsum("ij,ij->i", basis, values)
    v0 = np.clip(np.divide(cross, norm, out=np.zeros(len(norm)), where=norm > 0), 0, 1)
    residual = values - v0[:, None] * basis  # 0 at invalid points, where values and basis are
    decay *= rate
    return v0, np.einsum("ij,ij->i", residual, residual), 2 * v0 * np.einsum("ij,ij->i", residual, decay)


def grid_best(x: np.ndarray, values: np.ndarray, valid: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index of the ``log_tau`` grid point with the smallest profiled loss, per row.

    Rows are grouped by their pattern of valid points. In a group, with ``b`` a grid point's
    curve on the valid points and ``s = sum(b**2)``, the loss minus ``sum(y**2)`` is
    ``e * (e - 2 * d)`` where ``d = y @ b / sqrt(s)`` (a matrix product shared by all rows)
    and ``e = clip(d, 0, sqrt(s))`` (``sqrt(s)`` times the clipped ``v0``). Rows with fewer
    than 2 valid points get 0.
    """
    basis = 1 - np.exp(-x[:, None] / np.exp(grid)[None, :])
    patterns, group = np.unique(valid @ (1 << np.arange(valid.shape[1])), return_inverse=True)
    chunk = max(1, GRID_CHUNK_ELEMENTS // len(grid))
    best = np.zeros(len(values), dtype=np.intp)
    for index, pattern in enumerate(patterns):
        points = (pattern >> np.arange(valid.shape[1])) & 1 == 1
        if points.sum() < 2:
            continue
        scale = np.sqrt((basis[points] ** 2).sum(0))
        unit = basis * points[:, None] / scale
        members = np.flatnonzero(group.ravel() == index)
        for start in range(0, len(members), chunk):
            rows = members[start : start + chunk]
            scaled = values[rows] @ unit
            clipped = np.clip(scaled, 0, scale)
            scaled *= -2
            scaled += clipped
            scaled *= clipped
            best[rows] = np.argmin(scaled, axis=1)
    return best


def profile_minimum(
    x: np.ndarray,
    values: np.ndarray,
    valid: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    tolerance: float,
    max_iterations: int,
) -> np.ndarray:
    """``log_tau`` of the profiled loss's minimum in ``[low, high]`` per row.

    An end where the loss rises into the interval is a minimum (the lower-loss end where both
    are); otherwise the derivative's zero is found by regula falsi with the
    Illinois modification, each row until its bracket is narrower than ``tolerance``.
    """
    _, low_loss, low_slope = profile_fit(x, values, valid, low)
    _, high_loss, high_slope = profile_fit(x, values, valid, high)
    log_tau = np.where((low_slope >= 0) & ((high_slope > 0) | (low_loss <= high_loss)), low, high)
    active = np.flatnonzero((low_slope < 0) & (high_slope > 0))
    a, fa, b, fb = low[active], low_slope[active], high[active], high_slope[active]
    for _ in range(max_iterations):
        if not len(active):
            break
        c = np.clip(b - fb * (b - a) / (fb - fa), np.minimum(a, b), np.maximum(a, b))
        fc = profile_fit(x, values[active], valid[active], c)[2]
        crossed = fc * fb < 0
        a, fa = np.where(crossed, b, a), np.where(crossed, fb, fa / 2)
        b, fb = c, fc
        log_tau[active] = c
        going = (np.abs(b - a) >= tolerance) & (fc != 0)
        active, a, fa, b, fb = active[going], a[going], fa[going], b[going], fb[going]
    return log_tau


def fit_saturation(
    x: np.ndarray, y: np.ndarray, n_grid: int = 200, tolerance: float = 1e-10, max_iterations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of ``v0 * (1 - exp(-x / tau))`` with ``0 <= v0 <= 1`` per row of ``y``.

    For fixed tau the optimal v0 is the clipped linear least-squares coefficient, so tau
    is searched on a log grid (1e-3..1e4, :func:`grid_best`), then between the best grid
    point's neighbours (:func:`profile_minimum`, to ``tolerance`` in ``log(tau)``). NaN
    points are ignored; rows with fewer than 2 valid points get NaN.

    Parameters
    ----------
    x : array of shape (n_points,)
    y : array of shape (n_rows, n_points)

    Returns
    -------
    v0, tau : arrays of shape (n_rows,)
    """
    valid = np.isfinite(y)
    values = np.where(valid, y, 0.0)
    grid = np.linspace(*LOG_TAU_RANGE, n_grid)
    best = grid_best(x, values, valid, grid)
    low, high = grid[np.maximum(best - 1, 0)], grid[np.minimum(best + 1, n_grid - 1)]
    log_tau = profile_minimum(x, values, valid, low, high, tolerance, max_iterations)
    v0 = profile_fit(x, values, valid, log_tau)[0]
    few = valid.sum(1) < 2
    return np.where(few, np.nan, v0), np.where(few, np.nan, np.exp(log_tau))


def subject_subsets(subjects: list, size: int, n_subsamples: int, rng: np.random.RandomState) -> list[tuple]:
    """Brain-Score's random subsets: distinct ordered draws without replacement.

    Capped at the number of distinct ordered draws (Brain-Score loops forever otherwise).
    """
    n_ordered = int(np.prod(np.arange(len(subjects) - size + 1, len(subjects) + 1)))
    draws: set[tuple] = set()
    ordered: list[tuple] = []
    while len(draws) < min(n_subsamples, n_ordered):
        draw = tuple(rng.choice(np.array(subjects, dtype=object), size=size, replace=False))
        if draw not in draws:
            draws.add(draw)
            ordered.append(draw)
    return ordered


def holdout_draws(subjects: list, settings: dict[str, Any], pools: str = "sampled") -> list[tuple[int, tuple, Any]]:
    """Brain-Score's (pool, held-out subject) draws for every pool size from 2 to all subjects.

    ``pools="sampled"`` (Pereira2018's ``ceiling_packaging.py``): per pool size,
    :func:`subject_subsets` (from one ``RandomState(seed)``), then ``n_holdouts`` held-out
    members drawn with replacement per pool (from a second one). ``pools="all"``
    (Blank2014's ``ceiling.py``): every subset of each size (``itertools.combinations`` of the
    sorted subjects), every member held out in turn.

    Returns
    -------
    draws : list of (pool size, the other members in sorted order, held-out subject)
        In draw order; a subject drawn twice from one pool is listed once.
    """
    if pools not in CEILING_POOLS:
        raise ConfigError(f"datasets.<name>.ceiling_pools is {pools!r}; use one of {list(CEILING_POOLS)}.")
    draws = []
    if pools == "all":
        for size in range(2, len(subjects) + 1):
            for pool in itertools.combinations(subjects, size):
                draws += [(size, tuple(s for s in pool if s != subject), subject) for subject in pool]
        return draws
    subset_rng = np.random.RandomState(settings["seed"])
    holdout_rng = np.random.RandomState(settings["seed"])
    for size in range(2, len(subjects) + 1):
        for subset in subject_subsets(subjects, size, settings["n_subsamples"], subset_rng):
            members = sorted(set(subset), key=str)
            held_out = holdout_rng.choice(np.array(members, dtype=object), size=settings["n_holdouts"])
            for subject in sorted(set(held_out), key=str):
                draws.append((size, tuple(s for s in members if s != subject), subject))
    return draws


def holdout_scores(
    subjects: list, settings: dict[str, Any], score_pool: Callable[[list, Any], np.ndarray], pools: str = "sampled"
) -> dict[int, dict[Any, list[np.ndarray]]]:
    """Score per (split, neuroid) of each held-out subject predicted from the rest of its pool, per pool size.

    Each distinct (pool, subject) pair of :func:`holdout_draws` is scored once, the pairs
    of one pool one after the other (so that a scorer may keep one pool's factorisation).

    Parameters
    ----------
    subjects : list
        The subjects, sorted.
    settings : dict
        The ``ceiling`` section of a protocol's resolved options.
    score_pool : callable
        ``score_pool(others, subject)``: the held-out score of ``subject``'s neuroids predicted
        from the subjects ``others``, an array of shape (n_splits, n_subject_neuroids).
    pools : {"sampled", "all"}
        :func:`holdout_draws`' scheme.

    Returns
    -------
    collected : {pool size: {subject: [array (n_splits, n_subject_neuroids), ...]}}
    """
    draws = holdout_draws(subjects, settings, pools)
    pairs = sorted({(others, subject) for _, others, subject in draws}, key=str)
    scores, start = {}, time.perf_counter()
    for index, (others, subject) in enumerate(pairs, start=1):
        scores[(others, subject)] = score_pool(list(others), subject)
        if index % max(len(pairs) // 10, 1) == 0 or index == len(pairs):  # long jobs show progress
            logger.info(
                "ceiling: %d of %d (pool, held-out subject) pairs scored in %.0f s",
                index,
                len(pairs),
                time.perf_counter() - start,
            )
    collected: dict[int, dict[Any, list[np.ndarray]]] = {size: {} for size in range(2, len(subjects) + 1)}
    for size, others, subject in draws:
        collected[size].setdefault(subject, []).append(scores[(others, subject)])
    return collected


def centre_gram(gram: np.ndarray) -> np.ndarray:
    """The Gram matrix of the features centred over all rows, from the uncentred one."""
    column_mean = gram.mean(axis=0)
    return gram - column_mean[:, None] - column_mean[None, :] + column_mean.mean()


def centred_spectrum_range(centred: np.ndarray) -> tuple[float, float]:
    """Smallest and largest eigenvalue of a centred Gram matrix off the centring direction
    (the smallest eigenvalue overall belongs to that direction, exactly 0 without rounding)."""
    eigenvalues = np.linalg.eigvalsh(centred)
    return float(eigenvalues[1]), float(eigenvalues[-1])


def centred_pseudoinverse(centred: np.ndarray) -> np.ndarray:
    """Pseudo-inverse of a centred Gram matrix of rank ``n - 1``.

    Adding ``g * 1 1^T`` turns the centring direction's eigenvalue 0 into ``g * n`` (set to
    the mean of the others) and leaves the rest, so the inverse minus ``1 1^T / (g n^2)``
    is the pseudo-inverse.
    """
    n = len(centred)
    shift = np.trace(centred) / (n * (n - 1))
    return np.linalg.inv(centred + shift) - 1 / (shift * n**2)


def held_out_predictor(
    pseudoinverse: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Each split's held-out predictions under OLS with intercept fit on the other rows, from
    one pseudo-inverse of the pool.

    With ``P`` the pseudo-inverse of the centred Gram matrix of all rows (of rank ``n - 1``),
    the residuals of the rows ``T`` under the minimum-norm fit on the rest are
    ``inv(P[T, T]) @ (P @ target)[T]`` (the Schur complement of the kernel system with an
    intercept; every split's training rows must be the complement of its test rows).

    Parameters
    ----------
    pseudoinverse : array of shape (n_rows, n_rows)
        :func:`centred_pseudoinverse` of the pool's features.
    splits : list of (train, test) index arrays

    Returns
    -------
    callable
        ``predict(target)``: for a target of shape (n_rows, n_targets), the predictions of
        each split's test rows, arrays of shape (n_test, n_targets).
    """
    tested = np.unique(np.concatenate([test for _, test in splits]))
    rows = pseudoinverse[tested]
    positions = [np.searchsorted(tested, test) for _, test in splits]
    inverses = [np.linalg.inv(pseudoinverse[np.ix_(test, test)]) for _, test in splits]

    def predict(target: np.ndarray) -> list[np.ndarray]:
        weighted = rows @ target
        return [
            target[test] - inverse @ weighted[position]
            for (_, test), position, inverse in zip(splits, positions, inverses)
        ]

    return predict


def split_operator_predictor(
    pool_gram: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
) -> Callable[[np.ndarray], list[np.ndarray]]:
    """:func:`held_out_predictor`'s predictions from one ``kernel_prediction_operator`` per split."""
    operators = [kernel_prediction_operator(pool_gram, train, test)[0] for train, test in splits]

    def predict(target: np.ndarray) -> list[np.ndarray]:
        means = [target[train].mean(axis=0) for train, _ in splits]
        return [
            operator @ (target[train] - mean) + mean for operator, mean, (train, _) in zip(operators, means, splits)
        ]

    return predict


def complementary_splits(splits: list[tuple[np.ndarray, np.ndarray]], n_rows: int) -> bool:
    """Whether every split's training and test rows together are all ``n_rows`` rows, once each."""
    return all(np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n_rows)) for train, test in splits)


def pool_correlation_scorer(
    responses: np.ndarray, subject_of: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]
) -> Callable[[list, Any], np.ndarray]:
    """Brain-Score's metric as :func:`holdout_scores` takes it: OLS on the pool, Pearson r per
    (split, neuroid) of the held-out subject.

    A pool is solved once for all its held-out subjects and splits: by
    :func:`held_out_predictor` where the splits are complementary and the pool's centred Gram
    matrix is :data:`WELL_CONDITIONED` (bounded below by the subjects' spectra: the pool's
    smallest eigenvalue is at least the sum of its subjects' smallest, its largest at most the
    sum of their largest), else by one ``kernel_prediction_operator`` per split.

    Parameters
    ----------
    responses : array of shape (n_rows, n_neuroids)
    subject_of : array of shape (n_neuroids,)
    splits : list of (train, test) index arrays into the rows

    Returns
    -------
    callable
        ``score_pool(others, subject)`` -> array of shape (n_splits, n_subject_neuroids).
    """
    subjects = sorted(pd.unique(subject_of), key=str)
    targets = {s: responses[:, subject_of == s] for s in subjects}
    grams = {s: targets[s] @ targets[s].T for s in subjects}
    spectra = {}
    if complementary_splits(splits, len(responses)):
        spectra = {s: centred_spectrum_range(centre_gram(gram)) for s, gram in grams.items()}

    @functools.lru_cache(maxsize=1)
    def pool_predictor(others: tuple) -> Callable[[np.ndarray], list[np.ndarray]]:
        pool_gram = sum(grams[s] for s in others)
        smallest, largest = (sum(spectra[s][k] for s in others) for k in (0, 1)) if spectra else (0.0, 1.0)
        if smallest > WELL_CONDITIONED * largest:
            return held_out_predictor(centred_pseudoinverse(centre_gram(pool_gram)), splits)
        return split_operator_predictor(pool_gram, splits)

    def correlations(others: list, subject: Any) -> np.ndarray:
        target = targets[subject]
        predictions = pool_predictor(tuple(others))(target)
        return np.stack([pearson_columns(p, target[test]) for p, (_, test) in zip(predictions, splits)])

    return correlations


def bootstrap_means(values: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """``values[draws].mean(axis=1)`` without the (n_bootstraps, n_draws, n_columns) array:
    the mean is a count matrix times ``values``; a NaN value makes NaN only the bootstraps that drew it.

    Parameters
    ----------
    values : array of shape (n_values, n_columns)
    draws : int array of shape (n_bootstraps, n_draws)

    Returns
    -------
    means : array of shape (n_bootstraps, n_columns)
    """
    counts = np.zeros((len(draws), len(values)))
    np.add.at(counts, (np.arange(len(draws))[:, None], draws), 1)
    missing = np.isnan(values)
    means = counts @ np.where(missing, 0.0, values) / draws.shape[1]
    means[(counts @ missing) > 0] = np.nan
    return means


def extrapolate(
    collected: dict[int, dict[Any, list[np.ndarray]]], subjects: list, settings: dict[str, Any]
) -> dict[Any, np.ndarray]:
    """Per subject: the median over bootstraps of the fitted asymptote v0 per neuroid.

    The resamples are Brain-Score's (``extrapolate_neuroid``): for every neuroid a new
    ``RandomState(seed)``, and per bootstrap, per pool size in increasing order, as many
    draws with replacement from that size's scores (pools x splits, in collection order) as
    there are scores. A subject's neuroids have the same number of scores, hence the same
    draws, so each subject's are drawn once.
    """
    sizes = sorted(collected)
    ceilings = {}
    for subject in subjects:
        values = {
            size: np.concatenate(collected[size][subject], axis=0)  # (pools x splits, neuroids)
            for size in sizes
            if collected[size].get(subject)
        }
        rng = np.random.RandomState(settings["seed"])
        draws = {size: np.empty((settings["n_bootstraps"], len(v)), dtype=np.intp) for size, v in values.items()}
        for bootstrap in range(settings["n_bootstraps"]):
            for size, v in values.items():
                draws[size][bootstrap] = rng.randint(0, len(v), size=len(v))
        n_neuroids = next(iter(values.values())).shape[1]
        curves = np.full((settings["n_bootstraps"], n_neuroids, len(sizes)), np.nan)
        for column, size in enumerate(sizes):
            if size in values:
                curves[:, :, column] = bootstrap_means(values[size], draws[size])
        v0, _ = fit_saturation(np.array(sizes, dtype=np.float64), curves.reshape(-1, len(sizes)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ceilings[subject] = np.nanmedian(v0.reshape(settings["n_bootstraps"], n_neuroids), axis=0)
    return ceilings


def _time_series_splits(response_rows: pd.DataFrame, options: dict) -> tuple[np.ndarray, list]:
    kept, _, splits = outer_splits(response_rows, resolve_toneva_options(options))
    return np.flatnonzero(kept), splits


def extrapolated_ceiling(
    responses: np.ndarray,
    stimuli: pd.DataFrame,
    response_rows: pd.DataFrame,
    neuroids: pd.DataFrame,
    options: dict | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Brain-Score's extrapolated subject-pool noise ceiling of one dataset.

    Parameters
    ----------
    responses : array of shape (n_rows, n_neuroids)
    stimuli : DataFrame
        Its ``partition`` column (aligned with the rows) splits non-time-series datasets;
        the shuffle splits follow its ``assembly_row`` order where it has one (see
        :func:`brainalign.encoding.aw2024.partition_splits`). The ceiling predicts
        responses from responses, so ``fit_precision`` (the activations' arithmetic)
        does not apply: it is computed in float64.
    response_rows : DataFrame
        Per-row columns; ``run`` (and optional ``trimmed``) for time series.
    neuroids : DataFrame
        ``neuroid_id`` and ``subject`` per column.
    options : dict
        The aw2024 options (``n_splits``, ``train_size``, ``random_state``, ``time_series``,
        ``toneva``) with an optional ``ceiling`` section (``protocols.aw2024.ceiling`` in the
        config schema: ``n_subsamples``, ``n_holdouts``, ``n_bootstraps``, ``seed``).

    Returns
    -------
    table : DataFrame
        One row per (partition, neuroid): ``partition``, ``neuroid_id``, ``subject``, ``ceiling``.
    summary : dict
        ``ceiling`` (mean over partitions of the median over neuroids), ``method``,
        ``measure`` (``r``), ``n_subjects``, per-partition ceilings and the settings.
    """
    options = dict(options or {})
    protocol = resolve_aw2024_options(options)
    settings = protocol["ceiling"]
    responses = np.asarray(responses, dtype=np.float64)
    if responses.shape[1] != len(neuroids):
        raise DataError(f"ceiling: {responses.shape[1]} response columns for {len(neuroids)} neuroids.")
    if protocol["time_series"]:
        rows, splits = _time_series_splits(response_rows, options)
        parts = [("all", rows, splits)]
    else:
        partition = stimuli["partition"].to_numpy() if "partition" in stimuli else np.full(len(responses), "all")
        parts = []
        for name in pd.unique(partition):
            rows = np.flatnonzero(partition == name)
            parts.append((name, rows, partition_splits(stimuli, rows, protocol)))
    tables, per_partition = [], {}
    for name, rows, splits in parts:
        block = responses[rows]
        complete = np.isfinite(block).all(axis=0)
        block = block[:, complete]
        subject_of = neuroids["subject"].to_numpy()[complete]
        subjects = pool_subjects(subject_of, name)
        scorer = pool_correlation_scorer(block, subject_of, splits)
        collected = holdout_scores(subjects, settings, scorer, protocol["ceiling_pools"])
        ceilings = extrapolate(collected, subjects, settings)
        table, per_partition[str(name)] = partition_ceilings(neuroids[complete], name, ceilings)
        tables.append(table)
    summary = {
        **dataset_ceiling(per_partition),
        "method": "brainscore_extrapolation",
        "measure": "r",
        "n_subjects": int(neuroids["subject"].nunique()),
        "split_order": None if protocol["time_series"] else split_order(stimuli),
        "settings": settings,
    }
    return pd.concat(tables, ignore_index=True), summary


def pool_subjects(subject_of: np.ndarray, partition: str) -> list:
    """The sorted subjects of a partition's scored neuroids; refuse fewer than two."""
    subjects = sorted(pd.unique(subject_of), key=str)
    if len(subjects) < 2:
        raise DataError(
            f"ceiling: partition {partition!r} has {len(subjects)} subject(s); the extrapolation needs at least 2."
        )
    return subjects


def partition_ceilings(
    neuroids: pd.DataFrame, partition: str, ceilings: dict[Any, np.ndarray]
) -> tuple[pd.DataFrame, dict]:
    """One partition's per-neuroid table and summary from :func:`extrapolate`'s per-subject ceilings.

    Parameters
    ----------
    neuroids : DataFrame
        ``neuroid_id`` and ``subject`` of the partition's scored neuroids, in column order.
    partition : str
    ceilings : dict of subject -> array
        Each subject's neuroids' ceilings, in the order of its neuroids in ``neuroids``.
    """
    table = neuroids[["neuroid_id", "subject"]].reset_index(drop=True)
    table.insert(0, "partition", partition)
    table["ceiling"] = np.nan
    subject_of = table["subject"].to_numpy()
    for subject, values in ceilings.items():
        table.loc[subject_of == subject, "ceiling"] = values
    summary = {
        "ceiling": float(np.nanmedian(table["ceiling"])),
        "n_subjects": len(ceilings),
        "n_neuroids": len(table),
        "n_neuroids_failed_fit": int(table["ceiling"].isna().sum()),
    }
    return table, summary


def dataset_ceiling(per_partition: dict[str, dict]) -> dict[str, Any]:
    """The dataset's ceiling (mean over partitions of their median over neuroids) and the partitions'."""
    return {"ceiling": float(np.mean([p["ceiling"] for p in per_partition.values()])), "partitions": per_partition}


def published_ceiling(stimuli: pd.DataFrame, files: Mapping[str, str]) -> tuple[pd.DataFrame, dict]:
    """Brain-Score's precomputed ceilings of a dataset's partitions (the paper's code loads them
    for Pereira2018 instead of computing them), read from its ``Score`` files.

    Parameters
    ----------
    stimuli : DataFrame
        Its ``partition`` column names the partitions; each needs a file.
    files : mapping
        Partition -> path of Brain-Score's ``ceiling_<benchmark>.nc``.

    Returns
    -------
    table : DataFrame
        One row per partition: ``partition``, ``ceiling`` (the files hold no per-neuroid values).
    summary : dict
        As :func:`extrapolated_ceiling`'s, ``method`` ``brainscore_published`` and each file.
    """
    partitions = sorted(pd.unique(stimuli["partition"].astype(str))) if "partition" in stimuli else ["all"]
    missing = sorted(set(partitions) - set(files))
    if missing:
        raise ConfigError(
            f"published ceilings are given for partitions {sorted(files)}, but the dataset also has {missing}: "
            "name a file for every partition in datasets.<name>.published_ceiling, or set "
            "protocols.aw2024.published_ceilings: false to compute the ceiling."
        )
    per_partition = {name: {"ceiling": read_score(files[name]), "file": str(files[name])} for name in partitions}
    table = pd.DataFrame({"partition": partitions, "ceiling": [per_partition[p]["ceiling"] for p in partitions]})
    summary = {**dataset_ceiling(per_partition), "method": "brainscore_published", "measure": "r"}
    return table, summary
