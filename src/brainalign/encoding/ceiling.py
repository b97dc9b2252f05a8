"""Noise ceilings under the paper's protocol: Brain-Score's subject-pool extrapolation.

Brain-Score (``ExtrapolationCeiling`` in brainscore-language's Pereira2018
``ceiling_packaging.py``): for each pool size n = 2..N, draw 10 subject subsets (ordered
draws without replacement from ``RandomState(0)``, kept while distinct); in each, draw 5
held-out subjects with replacement (a second ``RandomState(0)`` shared by all subsets);
predict each held-out subject's neuroids from the other subjects' neuroids with the same
``linear_pearsonr`` metric (OLS, 10 shuffle splits) and keep r per (split, neuroid). Per
neuroid, 100 bootstrap resamples of those r values per n give mean curves, each fit by
``v0 * (1 - exp(-n / tau))`` with ``0 <= v0 <= 1``; the neuroid's ceiling is the median v0
and the dataset's is the median over neuroids (per partition; partitions averaged).

Differences, for speed: every pool's features enter only through their Gram matrix, the
sum of per-subject Gram matrices computed once, so one pool and split costs one small
eigendecomposition; the bootstrap draws are shared by the neuroids of one subject; the
curve is fit by profiling v0 out and searching tau (grid, then golden section) instead of
``curve_fit`` from (1, 1). Wehbe2014 (time series) uses the same procedure on the kept TRs
with the Toneva outer folds (contiguous blocks, boundary TRs dropped) instead of shuffle
splits.
"""

from __future__ import annotations

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


def exponential_saturation(n: np.ndarray, v0: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """Brain-Score's extrapolation curve ``v0 * (1 - exp(-n / tau))``."""
    return v0 * (1 - np.exp(-n / tau))


def fit_saturation(
    x: np.ndarray, y: np.ndarray, n_grid: int = 200, n_refine: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of ``v0 * (1 - exp(-x / tau))`` with ``0 <= v0 <= 1`` per row of ``y``.

    For fixed tau the optimal v0 is the clipped linear least-squares coefficient, so tau
    is searched on a log grid (1e-3..1e4) and refined by golden-section search. NaN points
    are ignored; rows with fewer than 2 valid points get NaN.

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

    def profile(log_tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        basis = (1 - np.exp(-x[None, :] / np.exp(log_tau)[:, None])) * valid
        with np.errstate(invalid="ignore", divide="ignore"):
            v0 = np.clip((basis * values).sum(1) / (basis**2).sum(1), 0, 1)
        v0 = np.nan_to_num(v0)
        return v0, (((values - v0[:, None] * basis) * valid) ** 2).sum(1)

    grid = np.linspace(np.log(1e-3), np.log(1e4), n_grid)
    losses = np.stack([profile(np.full(len(y), g))[1] for g in grid], axis=1)
    best = np.argmin(losses, axis=1)
    low, high = grid[np.maximum(best - 1, 0)], grid[np.minimum(best + 1, n_grid - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(n_refine):
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        go_left = profile(left)[1] <= profile(right)[1]
        high = np.where(go_left, right, high)
        low = np.where(go_left, low, left)
    log_tau = (low + high) / 2
    v0 = profile(log_tau)[0]
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


def holdout_scores(
    subjects: list, settings: dict[str, Any], score_pool: Callable[[list, Any], np.ndarray]
) -> dict[int, dict[Any, list[np.ndarray]]]:
    """Score per (split, neuroid) of each held-out subject predicted from the rest of its pool, per pool size.

    Brain-Score's draws: per pool size, :func:`subject_subsets` (from one ``RandomState(seed)``),
    then ``n_holdouts`` held-out members drawn with replacement per pool (from a second one).

    Parameters
    ----------
    subjects : list
        The subjects, sorted.
    settings : dict
        The ``ceiling`` section of a protocol's resolved options.
    score_pool : callable
        ``score_pool(others, subject)``: the held-out score of ``subject``'s neuroids predicted
        from the subjects ``others``, an array of shape (n_splits, n_subject_neuroids).

    Returns
    -------
    collected : {pool size: {subject: [array (n_splits, n_subject_neuroids), ...]}}
    """
    subset_rng = np.random.RandomState(settings["seed"])
    holdout_rng = np.random.RandomState(settings["seed"])
    collected: dict[int, dict[Any, list[np.ndarray]]] = {}
    for size in range(2, len(subjects) + 1):
        collected[size] = {}
        for subset in subject_subsets(subjects, size, settings["n_subsamples"], subset_rng):
            members = sorted(set(subset), key=str)
            held_out = holdout_rng.choice(np.array(members, dtype=object), size=settings["n_holdouts"])
            for subject in sorted(set(held_out), key=str):
                others = [s for s in members if s != subject]
                collected[size].setdefault(subject, []).append(score_pool(others, subject))
    return collected


def holdout_correlations(
    responses: np.ndarray,
    subject_of: np.ndarray,
    grams: dict,
    splits: list[tuple[np.ndarray, np.ndarray]],
    settings: dict[str, Any],
) -> dict[int, dict[Any, list[np.ndarray]]]:
    """:func:`holdout_scores` with Brain-Score's metric: OLS on the pool, Pearson r per neuroid."""

    def correlations(others: list, subject: Any) -> np.ndarray:
        pool_gram = sum(grams[s] for s in others)
        target = responses[:, subject_of == subject]
        r = np.full((len(splits), target.shape[1]), np.nan)
        for index, (train, test) in enumerate(splits):
            operator = kernel_prediction_operator(pool_gram, train, test)[0]
            mean = target[train].mean(axis=0)
            r[index] = pearson_columns(operator @ (target[train] - mean) + mean, target[test])
        return r

    return holdout_scores(sorted(grams, key=str), settings, correlations)


def extrapolate(
    collected: dict[int, dict[Any, list[np.ndarray]]], subjects: list, settings: dict[str, Any]
) -> dict[Any, np.ndarray]:
    """Per subject: the median over bootstraps of the fitted asymptote v0 per neuroid."""
    sizes = np.array(sorted(collected), dtype=np.float64)
    rng = np.random.RandomState(settings["seed"])
    ceilings = {}
    for subject in subjects:
        n_neuroids = next(v for per in collected.values() for s, v in per.items() if s == subject)[0].shape[1]
        curves = np.full((settings["n_bootstraps"], n_neuroids, len(sizes)), np.nan)
        for column, size in enumerate(sorted(collected)):
            scores = collected[size].get(subject)
            if not scores:
                continue
            values = np.concatenate(scores, axis=0)  # (subsets x splits, neuroids)
            draws = rng.randint(0, len(values), size=(settings["n_bootstraps"], len(values)))
            curves[:, :, column] = values[draws].mean(axis=1)
        v0, _ = fit_saturation(sizes, curves.reshape(-1, len(sizes)))
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
        grams = {s: block[:, subject_of == s] @ block[:, subject_of == s].T for s in subjects}
        collected = holdout_correlations(block, subject_of, grams, splits, settings)
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
