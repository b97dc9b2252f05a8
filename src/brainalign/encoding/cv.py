"""Cross-validation splitters that keep dependent samples on one side of a split.

Two kinds of dependence leak information across a random split of encoding data:
sentences of one passage share topic and position structure, and neighbouring fMRI
volumes share slow drifts and the haemodynamic response. :func:`grouped_splits`
holds out whole groups (passages, topics, stories); :class:`ContiguousSplit` holds
out contiguous blocks of a time series (whole runs wherever there are two or more)
and drops the training samples within ``trim`` samples of a test block in the same
run. Both are deterministic functions of the sample metadata, so every layer of a
dataset sees identical folds.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.model_selection import BaseCrossValidator, GroupKFold

from brainalign.errors import ConfigError

Split = tuple[np.ndarray, np.ndarray]


def grouped_splits(groups: np.ndarray, n_splits: int) -> list[Split]:
    """Group k-fold splits: every group lies entirely in train or in test.

    Uses scikit-learn's :class:`~sklearn.model_selection.GroupKFold` (size-balanced,
    deterministic given ``groups``); ``n_splits`` is capped at the number of groups.

    Parameters
    ----------
    groups : array of shape (n_samples,)
        Group label of each sample.
    n_splits : int
        Requested number of folds (at least 2).

    Returns
    -------
    splits : list of (train_indices, test_indices)
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ConfigError(
            f"grouped cross-validation needs at least 2 cv groups, found {n_groups}: "
            "give the stimuli table a cv_group column with several passages/stories"
        )
    splitter = GroupKFold(n_splits=min(n_splits, n_groups))
    placeholder = np.zeros((len(groups), 1))
    return [(train, test) for train, test in splitter.split(placeholder, groups=groups)]


def trim_training(train: np.ndarray, test: np.ndarray, runs: np.ndarray, trim: int) -> np.ndarray:
    """Drop training samples within ``trim`` samples of a test sample of the same run.

    Samples are assumed to be in temporal order within each run, so that the distance
    between samples is the difference of their indices.

    Parameters
    ----------
    train, test : array of int
        Sample indices.
    runs : array of shape (n_samples,)
        Run label of every sample.
    trim : int
        Number of samples removed on each side of each test block.

    Returns
    -------
    train : array of int
        The training indices that survive trimming.
    """
    if trim <= 0 or len(test) == 0:
        return train
    runs = np.asarray(runs)
    near_test = np.zeros(len(runs), dtype=bool)
    for offset in range(-trim, trim + 1):
        neighbours = test + offset
        inside = (neighbours >= 0) & (neighbours < len(runs))
        neighbours, sources = neighbours[inside], test[inside]
        same_run = runs[neighbours] == runs[sources]
        near_test[neighbours[same_run]] = True
    return train[~near_test[train]]


class ContiguousSplit(BaseCrossValidator):
    """K-fold over contiguous blocks of a time series, with trimmed edges.

    With at least ``n_splits`` runs, each test fold is a contiguous set of whole runs;
    with fewer runs (but two or more), each run is one fold, as :func:`grouped_splits`
    caps the folds at the number of groups; a single run is cut into ``n_splits`` equal
    contiguous blocks. Cutting runs when there are several would leave the permutation
    null miscalibrated: on noise-only data shaped like Wehbe2014 (4 runs, 5 folds) its
    p-values piled up at both ends, with whole runs they are uniform
    (``tests/unit/test_rehearsal_null_pvalues.py``). Training samples within ``trim``
    samples of the test block in the same run are dropped, so that autocorrelated
    neighbours never straddle the split.

    Parameters
    ----------
    n_splits : int
        Number of folds.
    trim : int
        Samples dropped from training on each side of each test block.
    """

    def __init__(self, n_splits: int = 5, trim: int = 5):
        self.n_splits = n_splits
        self.trim = trim

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """The number of folds: ``n_splits``, or the number of runs in ``groups`` where that
        is smaller and at least two."""
        if groups is None:
            return self.n_splits
        return len(self._blocks(np.asarray(groups)))

    def _blocks(self, runs: np.ndarray) -> list[np.ndarray]:
        """Indices of each contiguous test block."""
        n_samples = len(runs)
        change = np.flatnonzero(runs[1:] != runs[:-1]) + 1
        run_starts = np.concatenate([[0], change])
        if len(run_starts) == 1:
            return np.array_split(np.arange(n_samples), self.n_splits)
        run_bounds = np.concatenate([run_starts, [n_samples]])
        sets = np.array_split(np.arange(len(run_starts)), min(self.n_splits, len(run_starts)))
        return [np.arange(run_bounds[s[0]], run_bounds[s[-1] + 1]) for s in sets]

    def split(self, X, y=None, groups=None) -> Iterator[Split]:
        """Yield (train, test) indices; ``groups`` are run labels in temporal order."""
        n_samples = len(X)
        if self.n_splits < 2 or n_samples < self.n_splits:
            raise ConfigError(
                f"contiguous cross-validation needs 2 <= n_splits <= n_samples, got "
                f"n_splits={self.n_splits} for {n_samples} samples: lower n_outer_folds/n_inner_folds"
            )
        runs = np.zeros(n_samples, dtype=int) if groups is None else np.asarray(groups)
        everything = np.arange(n_samples)
        for test in self._blocks(runs):
            train = np.setdiff1d(everything, test, assume_unique=True)
            yield trim_training(train, test, runs, self.trim), test


def protocol_splits(groups: np.ndarray, n_splits: int, time_series: bool, trim: int) -> list[Split]:
    """Folds of the robust protocol: grouped, or contiguous with trimmed edges.

    Used for the outer folds and, on each outer training set, for the inner folds
    that choose the penalty. For a time series an outer training set has a gap where
    the test block was; the inner folds treat its two sides as adjacent, so trimming
    there only removes a few extra samples (never adds leakage).

    Parameters
    ----------
    groups : array of shape (n_samples,)
        cv groups (sentence data) or run labels in temporal order (time series).
    n_splits : int
        Number of folds.
    time_series : bool
        Contiguous blocks with trimming instead of group k-fold.
    trim : int
        Samples dropped from training on each side of a test block (time series).
    """
    if time_series:
        return list(ContiguousSplit(n_splits, trim).split(np.zeros(len(groups)), groups=groups))
    return grouped_splits(groups, n_splits)
