"""Pairing logic, dataset averages and the instruction-tuning effect summary."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from brainalign.analysis.instruction import instruction_effect, instruction_pairs, pair_changes, summarize_changes
from brainalign.analysis.tables import AVERAGE, with_dataset_average
from brainalign.stats import multinomial_counts, percentile_interval, sign_flip_test

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
        ("tuned-a1", "base-a"),
        ("tuned-a2", "base-a"),
        ("tuned-b", "base-b"),
    ]
    assert "2 instruction-tuned model(s) have no base" in caplog.text


def test_pair_changes_skip_pairs_with_a_missing_partner_score(caplog):
    scores = scores_table(
        [
            ("base-a", "D1", "p", 0.20),
            ("tuned-a1", "D1", "p", 0.25),
            ("tuned-a2", "D1", "p", 0.18),
            ("tuned-b", "D1", "p", 0.30),  # base-b has no D1 score
            ("base-b", "D2", "p", 0.10),
            ("tuned-b", "D2", "p", 0.12),
        ]
    )
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
    scores = scores_table(
        [
            ("m1", "D1", "p", 0.1),
            ("m1", "D2", "p", 0.3),
            ("m2", "D1", "p", 0.2),
            ("m1", "F", "q", 0.5),  # a single-dataset protocol gets no average
        ]
    )
    averaged = with_dataset_average(scores)
    average = averaged[averaged["dataset"] == AVERAGE].set_index("model")
    assert average.loc["m1", "score"] == pytest.approx(0.2) and average.loc["m1", "n_datasets"] == 2
    assert average.loc["m2", "score"] == pytest.approx(0.2) and average.loc["m2", "n_datasets"] == 1
    assert set(average["protocol"]) == {"p"}


def pair_rows(bases: list[str], base_scores: list[float], tuned_scores: list[float], base_ci_low=None) -> pd.DataFrame:
    """Rows of pair_changes: one pair per (base, tuned score)."""
    frame = pd.DataFrame(
        {
            "model": [f"t{i}" for i in range(len(bases))],
            "base": bases,
            "score_base": base_scores,
            "score_tuned": tuned_scores,
            "ci_low_base": np.nan if base_ci_low is None else base_ci_low,
        }
    )
    frame["change"] = frame["score_tuned"] - frame["score_base"]
    frame["pct_change"] = 100 * frame["change"] / frame["score_base"]
    return frame


NESTED = pair_rows(
    ["b1", "b1", "b1", "b2", "b3", "b3", "b4", "b5"],
    [0.20, 0.20, 0.20, 0.10, 0.30, 0.30, 0.25, 0.15],
    [0.22, 0.25, 0.21, 0.11, 0.29, 0.33, 0.27, 0.15],
)


def test_summarize_changes_counts_each_base_once_against_numpy():
    """Per base: the tuned models' mean against the base score. The effect, its CI over bases and
    the sign flips over bases, recomputed here by hand."""
    found = summarize_changes(NESTED, n_resamples=999, seed=2)
    tuned = np.array([np.mean([0.22, 0.25, 0.21]), 0.11, np.mean([0.29, 0.33]), 0.27, 0.15])
    base = np.array([0.20, 0.10, 0.30, 0.25, 0.15])
    assert found["n_pairs"] == 8 and found["n_bases"] == 5 and found["n_improved"] == 6
    assert found["mean_change"] == pytest.approx(np.mean(tuned - base))
    assert found["pct_change"] == pytest.approx(100 * (tuned.mean() / base.mean() - 1))
    assert found["pct_change_paper"] == pytest.approx(NESTED["pct_change"].mean()) and found["pct_note"] == ""
    draws = np.random.default_rng(2).integers(0, 5, size=(999, 5))  # a naive loop over resampled bases
    naive = [100 * (tuned[row].mean() / base[row].mean() - 1) for row in draws]
    low, high = percentile_interval(np.array(naive))
    assert found["ci_low"] == pytest.approx(low, abs=1.0) and found["ci_high"] == pytest.approx(high, abs=1.0)
    counts = multinomial_counts(5, 999, np.random.default_rng(2))
    exact = percentile_interval(100 * ((counts @ tuned) / (counts @ base) - 1))
    assert (found["ci_low"], found["ci_high"]) == pytest.approx(exact)
    # Exact sign flips over 2**5 patterns of the base differences.
    differences = tuned - base
    signs = np.array(np.meshgrid(*[[-1, 1]] * 5)).reshape(5, -1).T
    expected = np.mean(np.abs((signs * differences).mean(axis=1)) >= abs(differences.mean()) * (1 - 1e-12))
    assert found["p_value"] == pytest.approx(expected) == pytest.approx(sign_flip_test(differences, 999, 2))
    assert found["p_min"] == pytest.approx(2 / 2**5) and found["can_reach_alpha"] is False  # 5 bases: p >= 0.0625


def test_duplicating_a_pair_does_not_narrow_the_ci_or_the_p_value():
    """Adversarial: copies of a pair (same base, same scores) add no information. Treated as
    independent they would shrink the CI and the p-value; nested in their base they change nothing."""
    found = summarize_changes(NESTED, n_resamples=999, seed=2)
    copies = pd.concat([NESTED, *[NESTED.iloc[[3]].assign(model=f"copy{k}") for k in range(6)]], ignore_index=True)
    padded = summarize_changes(copies, n_resamples=999, seed=2)
    assert padded["n_pairs"] == 14 and padded["n_bases"] == 5
    for key in (
        "mean_change",
        "pct_change",
        "ci_low",
        "ci_high",
        "change_ci_low",
        "change_ci_high",
        "p_value",
        "p_min",
    ):
        assert padded[key] == pytest.approx(found[key]), key


@pytest.mark.parametrize(
    ("base_scores", "reason"),
    [
        ([0.20, 0.10, -0.01, 0.25, 0.15], "<= 0"),
        ([0.001, -0.0005, 0.0008, 0.02, 0.0002], "<= 0"),
        ([0.002, 0.0001, 0.0004, 0.03, 0.0003], "t-interval of zero"),
    ],
)
def test_a_percent_change_of_base_scores_near_or_below_zero_is_refused(base_scores, reason):
    scores = dict(zip(["b1", "b2", "b3", "b4", "b5"], base_scores))
    pairs = pair_rows(list(scores), list(scores.values()), [s + 0.01 for s in scores.values()])
    found = summarize_changes(pairs, n_resamples=200)
    assert np.isnan(found["pct_change"]) and np.isnan(found["ci_low"]) and np.isnan(found["pct_change_paper"])
    assert reason in found["pct_note"] and "mean_change" in found["pct_note"]
    assert found["mean_change"] == pytest.approx(0.01) and found["change_ci_low"] == pytest.approx(0.01)


def test_a_single_base_whose_own_ci_reaches_zero_is_refused_a_percent_change():
    near_zero = summarize_changes(pair_rows(["b1"], [0.00058], [0.0000002], base_ci_low=[-0.0004]), n_resamples=50)
    assert np.isnan(near_zero["pct_change"]) and "CI of base score 0.00058 reaches zero" in near_zero["pct_note"]
    assert near_zero["mean_change"] == pytest.approx(0.0000002 - 0.00058)
    clear = summarize_changes(pair_rows(["b1"], [0.2], [0.25], base_ci_low=[0.15]), n_resamples=50)
    assert clear["pct_change"] == pytest.approx(25.0) and clear["pct_note"] == ""


def test_pair_changes_carry_the_bases_ci_from_the_score_table():
    scores = scores_table([("base-a", "D1", "p", 0.20), ("tuned-a1", "D1", "p", 0.25)]).assign(ci_low=[0.1, 0.2])
    changes = pair_changes(scores, instruction_pairs({k: v for k, v in MODELS.items() if k in ("base-a", "tuned-a1")}))
    assert changes["ci_low_base"].tolist() == [0.1]


def test_instruction_effect_groups_all_pairs_and_families():
    scores = scores_table(
        [
            ("base-a", "D1", "p", 0.20),
            ("tuned-a1", "D1", "p", 0.25),
            ("tuned-a2", "D1", "p", 0.22),
            ("base-b", "D1", "p", 0.10),
            ("tuned-b", "D1", "p", 0.09),
        ]
    )
    effect = instruction_effect(pair_changes(scores, instruction_pairs(MODELS)), n_resamples=500)
    rows = effect.set_index("family")
    assert rows.loc["all", "n_pairs"] == 3 and rows.loc["fa", "n_pairs"] == 2 and rows.loc["fb", "n_pairs"] == 1
    assert rows.loc["all", "n_bases"] == 2 and rows.loc["fa", "n_bases"] == 1
    assert rows.loc["all", "mean_change"] == pytest.approx(np.mean([0.035, -0.01]))
    assert rows.loc["fa", "pct_change"] == pytest.approx(100 * (0.235 / 0.20 - 1))
    assert rows.loc["all", "n_improved"] == 2
    # One base: no CI, no test, and p_min says none was possible.
    assert (
        np.isnan(rows.loc["fa", "ci_low"]) and np.isnan(rows.loc["fa", "p_value"]) and np.isnan(rows.loc["fa", "p_min"])
    )
    assert rows.loc["all", "p_min"] == pytest.approx(0.5) and not rows.loc["all", "can_reach_alpha"]
