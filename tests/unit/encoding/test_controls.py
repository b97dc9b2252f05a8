"""Control bands: OASM against a naive loop, lengths, positions, bad names."""

from __future__ import annotations

import numpy as np
import pytest

from brainalign.encoding.controls import control_bands, index_within_group, oasm, word_counts
from brainalign.errors import ConfigError


def test_oasm_matches_a_naive_double_loop():
    groups = np.array(["a", "a", "a", "b", "b", "c"])
    positions = np.array([0, 1, 2, 0, 1, 0])
    features = oasm(groups, positions, width=1.5)
    for i in range(len(groups)):
        for j in range(len(groups)):
            expected = np.exp(-((positions[i] - positions[j]) ** 2) / (2 * 1.5**2)) if groups[i] == groups[j] else 0.0
            assert features[i, j] == pytest.approx(expected)


def test_word_counts_and_index_within_group():
    np.testing.assert_array_equal(word_counts(np.array(["a b c", "one", "  two  words "])), [3, 1, 2])
    np.testing.assert_array_equal(index_within_group(np.array([1, 1, 2, 1, 2])), [0, 1, 0, 2, 1])


def test_control_bands_shapes_and_unknown_names():
    bands = control_bands(["length", "position", "oasm"], np.ones(4), np.arange(4), np.array([0, 0, 1, 1]))
    assert [band.shape for band in bands.values()] == [(4, 1), (4, 1), (4, 4)]
    with pytest.raises(ConfigError, match="unknown band"):
        control_bands(["length", "frequency"], np.ones(4), np.arange(4), np.zeros(4))
    with pytest.raises(ConfigError, match="oasm_width"):
        oasm(np.zeros(3), np.arange(3), width=0)
