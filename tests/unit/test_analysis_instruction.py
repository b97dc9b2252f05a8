"""Pairing logic, dataset averages and the instruction-tuning effect summary."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from brainalign.analysis.instruction import instruction_effect, instruction_pairs, pair_changes, summarize_changes
from brainalign.analysis.stats import bootstrap_mean_ci, sign_flip_test
from brainalign.analysis.tables import AVERAGE, with_dataset_average

MODELS = {
    "base-a": {"family": "fa", "instruction_tuned": False, "base": None},
    "tuned-a1": {"family": "fa", "instruction_tuned": True, "base": "base-a"},
    "tuned-a2": {"family": "fa", "instruction_tuned": True, "base": "base-a"},
    "base-b": {"family": "fb", "instruction_tuned": False, "base": None},
    "tuned-b": {"family": "fb", "instruction_tuned": True, "base": "base-b"},
    "tuned-orphan": {"family": "fb", "instruction_tuned": True, "base": "not-configured"},
    "tuned-nobase": {"family": "fb", "instruction_tuned": True, "base": None},
}


def scores_table(rows):
    return pd.DataFrame(rows, columns=["model", "dataset", "protocol", "score"])


def test_pairs_include_several_tuned_models_per_base_and_skip_missing_bases(caplog):
    with caplog.at_level(logging.INFO):
        pairs = instruction_pairs(MODELS)
    assert sorted(zip(pairs["model"], pairs["base"])) == [
        ("tuned-a1", "base-a"), ("tuned-a2", "base-a"), ("tuned-b", "base-b")
    ]
    assert "2 instruction-tuned model(s) have no base" in caplog.text


def test_pair_changes_skip_pairs_with_a_missing_partner_score(caplog):
    scores = scores_table([
        ("base-a", "D1", "p", 0.20), ("tuned-a1", "D1", "p", 0.25), ("tuned-a2", "D1", "p", 0.18),
        ("tuned-b", "D1", "p", 0.30),  # base-b has no D1 score
        ("base-b", "D2", "p", 0.10), ("tuned-b", "D2", "p", 0.12),
    ])
    with caplog.at_level(logging.INFO):
        changes = pair_changes(scores, instruction_pairs(MODELS))
    d1 = changes[changes["dataset"] == "D1"].set_index("model")
    assert sorted(d1.index) == ["tuned-a1", "tuned-a2"]
    assert d1.loc["tuned-a1", "change"] == pytest.approx(0.05)
    assert d1.loc["tuned-a2", "pct_change"] == pytest.approx(100 * (0.18 - 0.20) / 0.20)
    d2 = changes[changes["dataset"] == "D2"]
    assert list(d2["model"]) == ["tuned-b"] and d2["change"].iloc[0] == pytest.approx(0.02)
    # 3 pairs x 2 datasets = 6 cells, 3 scored.
    assert "3 (pair, protocol, dataset) combination(s) skipped" in caplog.text


def test_dataset_average_is_the_mean_over_the_models_datasets():
    scores = scores_table([
        ("m1", "D1", "p", 0.1), ("m1", "D2", "p", 0.3), ("m2", "D1", "p", 0.2),
        ("m1", "F", "q", 0.5),  # a single-dataset protocol gets no average
    ])
    averaged = with_dataset_average(scores)
    average = averaged[averaged["dataset"] == AVERAGE].set_index("model")
    assert average.loc["m1", "score"] == pytest.approx(0.2) and average.loc["m1", "n_datasets"] == 2
    assert average.loc["m2", "score"] == pytest.approx(0.2) and average.loc["m2", "n_datasets"] == 1
    assert set(average["protocol"]) == {"p"}


def test_summarize_changes_against_numpy():
    changes = np.array([0.02, -0.01, 0.03, 0.015, 0.0])
    pct = np.array([10.0, -4.0, 12.0, 6.0, 0.0])
    found = summarize_changes(changes, pct, n_resamples=999, seed=2)
    assert found["mean_change"] == pytest.approx(changes.mean())
    assert found["mean_pct_change"] == pytest.approx(pct.mean())
    assert found["n_improved"] == 3 and found["n_pairs"] == 5
    assert (found["ci_low"], found["ci_high"]) == pytest.approx(bootstrap_mean_ci(pct, 999, 2))
    # Exact sign flip over 2**5 patterns; the zero change contributes nothing either way.
    observed = abs(changes.mean())
    signs = np.array(np.meshgrid(*[[-1, 1]] * 5)).reshape(5, -1).T
    expected = np.mean(np.abs((signs * changes).mean(axis=1)) >= observed * (1 - 1e-14))
    assert found["p_value"] == pytest.approx(expected)
    assert found["p_value"] == pytest.approx(sign_flip_test(changes, 999, 2))


def test_instruction_effect_groups_all_pairs_and_families():
    scores = scores_table([
        ("base-a", "D1", "p", 0.20), ("tuned-a1", "D1", "p", 0.25), ("tuned-a2", "D1", "p", 0.22),
        ("base-b", "D1", "p", 0.10), ("tuned-b", "D1", "p", 0.09),
    ])
    effect = instruction_effect(pair_changes(scores, instruction_pairs(MODELS)), n_resamples=500)
    rows = effect.set_index("family")
    assert rows.loc["all", "n_pairs"] == 3 and rows.loc["fa", "n_pairs"] == 2 and rows.loc["fb", "n_pairs"] == 1
    assert rows.loc["all", "mean_change"] == pytest.approx(np.mean([0.05, 0.02, -0.01]))
    assert rows.loc["fa", "mean_pct_change"] == pytest.approx(np.mean([25.0, 10.0]))
    assert rows.loc["all", "n_improved"] == 2
    assert np.isnan(rows.loc["fb", "ci_low"]) and np.isnan(rows.loc["fb", "p_value"])  # one pair: no CI, no test
