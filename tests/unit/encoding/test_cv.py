"""Grouped and contiguous splitters: no shared groups, trimmed edges really removed."""

from __future__ import annotations

import numpy as np
import pytest

from brainalign.encoding.cv import ContiguousSplit, grouped_splits, protocol_splits, trim_training
from brainalign.errors import ConfigError


def test_grouped_folds_never_share_a_group_and_test_every_sample_once():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 23, size=300).astype(str)
    splits = grouped_splits(groups, 5)
    assert len(splits) == 5
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(groups)
    tested = np.sort(np.concatenate([test for _, test in splits]))
    np.testing.assert_array_equal(tested, np.arange(len(groups)))


def test_grouped_folds_are_capped_at_the_number_of_groups_and_need_two():
    assert len(grouped_splits(np.array(["a", "a", "b", "c"]), 5)) == 3
    with pytest.raises(ConfigError, match="cv_group"):
        grouped_splits(np.array(["a", "a"]), 5)


def naive_trim(train, test, runs, trim):
    """Keep a training sample only if no test sample of its run lies within trim samples."""
    keep = [i for i in train if not any(runs[j] == runs[i] and abs(i - j) <= trim for j in test)]
    return np.array(keep, dtype=int)


@pytest.mark.parametrize(("n_runs", "n_folds"), [(1, 4), (2, 2), (3, 3), (4, 4), (6, 4)])
def test_contiguous_split_trims_exactly_the_neighbours_of_test_blocks(n_runs, n_folds):
    runs = np.repeat(np.arange(n_runs), 30)
    splitter = ContiguousSplit(n_splits=4, trim=3)
    splits = list(splitter.split(np.zeros(len(runs)), groups=runs))
    assert len(splits) == splitter.get_n_splits(groups=runs) == n_folds
    for train, test in splits:
        assert np.all(np.diff(test) == 1), "test blocks are contiguous"
        full_train = np.setdiff1d(np.arange(len(runs)), test)
        np.testing.assert_array_equal(train, naive_trim(full_train, test, runs, 3))
        if n_runs >= 2:
            assert not set(runs[train]) & set(runs[test]), "with two or more runs, test folds are whole runs"
        else:
            assert len(train) < len(full_train), "blocks inside the single run lose their trimmed neighbours"


def test_trimming_never_crosses_run_boundaries():
    runs = np.repeat([0, 1], 10)
    test = np.arange(10, 20)
    train = trim_training(np.arange(10), test, runs, trim=4)
    np.testing.assert_array_equal(train, np.arange(10))


def test_protocol_splits_are_deterministic():
    groups = np.repeat(np.arange(12), 4).astype(str)
    first = protocol_splits(groups, 5, time_series=False, trim=0)
    second = protocol_splits(groups.copy(), 5, time_series=False, trim=0)
    for (a_train, a_test), (b_train, b_test) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a_train, b_train)
        np.testing.assert_array_equal(a_test, b_test)
