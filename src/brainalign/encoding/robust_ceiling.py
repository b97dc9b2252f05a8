"""The noise ceiling of the ``robust`` protocol: its own folds, ridge and scale.

The robust headline is a held-out R^2, so its ceiling is one too: how much of a subject's
held-out variance the other subjects' responses predict. For each partition, each held-out
subject and each pool of other subjects (Brain-Score's draws, :func:`ceiling.holdout_scores`),
the pool's responses are one feature band of the robust protocol's ridge
(:func:`robust.fit_fold`: features standardised on the training rows, a penalty per neuroid
chosen by the inner CV), fit on the outer folds of the robust fits (the dataset's
``cv_groups``, or contiguous runs with trimmed edges for time series, on the same measured
rows) and scored by the signed R^2 of each held-out fold. As under ``aw2024``, the scores
are extrapolated over the pool size to an infinite pool (:func:`ceiling.extrapolate`,
``v0 * (1 - exp(-n / tau))`` with ``0 <= v0 <= 1``); the dataset ceiling is the median over
neuroids, averaged over partitions.

Normalisation: ``normalized_score = score / ceiling`` (never clipped), where ``score`` is the
robust headline, the LLM's held-out R^2 gain over the control bands. The ratio is the share
of the variance that other brains predict which the LLM adds beyond the controls. For a
neuroid whose responses are a signal shared by all subjects plus independent noise, the
ceiling is the signal's share of the variance.

The pool's responses at a row predict the subject's at the same row: no FIR delays (both
saw the same stimulus at the same time) and no control bands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from brainalign.encoding import robust
from brainalign.encoding.ceiling import (
    dataset_ceiling,
    extrapolate,
    holdout_scores,
    partition_ceilings,
    pool_subjects,
)
from brainalign.encoding.metrics import r2_columns


def pool_r2_scorer(
    block: np.ndarray, subject_of: np.ndarray, folds: list, options: dict[str, Any]
) -> Callable[[list, Any], np.ndarray]:
    """The held-out R^2 of a subject's neuroids predicted from a pool of others, per fold.

    Parameters
    ----------
    block : array of shape (n_rows, n_neuroids)
        A partition's measured rows and scored neuroids.
    subject_of : array of shape (n_neuroids,)
        Subject of each column.
    folds : list of (train, test, inner splits)
        :func:`robust.fold_splits` of the partition.
    options : dict
        Resolved robust options (penalty grid, backend, batch).

    Returns
    -------
    callable
        ``score_pool(others, subject)`` -> array of shape (n_folds, n_subject_neuroids), as
        :func:`ceiling.holdout_scores` takes it.
    """

    def score_pool(others: list, subject: Any) -> np.ndarray:
        pool = block[:, np.isin(subject_of, others)]
        target = block[:, subject_of == subject]
        scores = np.empty((len(folds), target.shape[1]))
        for index, (train, test, inner) in enumerate(folds):
            fit = robust.fit_fold([pool], target, train, test, inner, options)
            scores[index] = r2_columns(fit.predictions, target[test])
        return scores

    return score_pool


def compute_robust_ceiling(
    responses: np.ndarray,
    stimuli: pd.DataFrame,
    response_rows: pd.DataFrame,
    neuroids: pd.DataFrame,
    options: dict | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The robust protocol's extrapolated subject-pool noise ceiling (held-out R^2) of one dataset.

    Parameters
    ----------
    responses, stimuli, response_rows, neuroids
        As :func:`brainalign.encoding.robust.fit_robust` takes them.
    options : dict
        ``protocols.robust`` options and dataset flags (``cv_groups``, ``time_series``,
        ``ceiling_pools``) with
        an optional ``ceiling`` section (``protocols.robust.ceiling`` in the config schema); the control
        bands, delays and statistics settings are not read.

    Returns
    -------
    table : DataFrame
        One row per (partition, scored neuroid): ``partition``, ``neuroid_id``, ``subject``,
        ``ceiling`` (extrapolated held-out R^2).
    summary : dict
        ``ceiling`` (mean over partitions of the median over neuroids), ``method``,
        ``measure`` (``R^2``), ``n_subjects``, per-partition ceilings and the settings.
    """
    options = robust.resolve_robust_options({**(options or {}), "controls": []})
    settings = options["ceiling"]
    responses = np.asarray(responses, dtype=np.float64)
    design = robust.build_design(np.zeros((len(stimuli), 0)), responses, stimuli, response_rows, neuroids, options)
    tables, per_partition = [], {}
    with robust.himalaya_backend(robust.fit_backend(options["device"], options["backend"])):
        for partition, rows, keep, _, _ in robust.scored_partitions(design, responses):
            block = responses[np.ix_(rows, np.flatnonzero(keep))]
            subject_of = neuroids["subject"].to_numpy()[keep]
            subjects = pool_subjects(subject_of, partition)
            folds = robust.fold_splits(design["cv_groups"][rows], options)
            scorer = pool_r2_scorer(block, subject_of, folds, options)
            collected = holdout_scores(subjects, settings, scorer, options["ceiling_pools"])
            ceilings = extrapolate(collected, subjects, settings)
            table, per_partition[str(partition)] = partition_ceilings(neuroids[keep], partition, ceilings)
            tables.append(table)
    summary = {
        **dataset_ceiling(per_partition),
        "method": "robust_grouped_ridge_extrapolation",
        "measure": "R^2",
        "n_subjects": int(neuroids["subject"].nunique()),
        "cv_groups": "runs (contiguous blocks)" if options["time_series"] else options["cv_groups"],
        "n_outer_folds": options["n_outer_folds"],
        "settings": settings,
    }
    return pd.concat(tables, ignore_index=True), summary
