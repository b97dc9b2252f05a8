"""Correlations checked against the family confound, and bits per word, against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats

from brainalign import io
from brainalign.analysis.correlations import (
    BITS_PER_WORD,
    SIZE,
    adjusted_correlation,
    bits_per_word,
    family_correlations,
    model_properties,
    property_correlations,
)
from brainalign.errors import DataError


def confounded_models(n_per_family=5, seed=0):
    """Two families: within each, alignment falls as MMLU rises; the larger family is better at both."""
    rng = np.random.default_rng(seed)
    models, rows = {}, []
    for offset, family in enumerate(("small", "large")):
        for k in range(n_per_family):
            name = f"{family}{k}"
            mmlu = 0.3 + 0.3 * offset + 0.02 * k + rng.normal(0, 0.005)
            size = 10 ** (8 + 2 * offset + 0.1 * k + rng.normal(0, 0.05))
            metadata = {"mmlu": mmlu, "nwp_loss": 3 - offset + rng.normal(0, 0.1)}
            models[name] = {"family": family, "parameters": size, "instruction_tuned": True, "metadata": metadata}
            score = 0.1 + 0.2 * offset - 0.5 * (mmlu - 0.3 - 0.3 * offset) + rng.normal(0, 0.002)
            rows.append((name, "d", "robust", score))
    return models, pd.DataFrame(rows, columns=["model", "dataset", "protocol", "score"])


def test_adjusted_correlation_matches_statsmodels_ols():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"x": rng.normal(size=20), "size": rng.normal(size=20), "family": np.repeat(["a", "b", "c", "d"], 5)}
    )
    frame["y"] = 0.4 * frame["x"] + frame["size"] + (frame["family"] == "b") + rng.normal(size=20)
    dummies = pd.get_dummies(frame["family"], drop_first=True, dtype=float)
    covariates = np.column_stack([dummies, frame["size"]])
    ours = adjusted_correlation(frame["x"], frame["y"], covariates)
    residual = {v: sm.OLS(frame[v], sm.add_constant(covariates)).fit().resid for v in ("x", "y")}
    fit = smf.ols("y ~ x + C(family) + size", data=frame).fit()
    assert ours["pearson_r"] == pytest.approx(np.corrcoef(residual["x"], residual["y"])[0, 1], abs=1e-12)
    assert ours["p_value"] == pytest.approx(fit.pvalues["x"], rel=1e-9)
    assert ours["dof"] == fit.df_resid


def test_collinear_covariates_count_once():
    rng = np.random.default_rng(2)
    x, y, z = rng.normal(size=(3, 12))
    once = adjusted_correlation(x, y, z[:, None])
    twice = adjusted_correlation(x, y, np.column_stack([z, 2 * z]))
    assert twice["pearson_r"] == pytest.approx(once["pearson_r"]) and twice["dof"] == once["dof"] == 9
    assert twice["p_value"] == pytest.approx(once["p_value"])


def test_too_few_models_give_nan_not_an_error():
    result = adjusted_correlation(np.arange(3.0), np.array([1.0, 3.0, 2.0]), np.array([[0.0], [1.0], [1.0]]))
    assert np.isnan(result["pearson_r"]) and np.isnan(result["p_value"])


def test_family_checks_reverse_a_correlation_made_by_the_family_difference():
    models, scores = confounded_models()
    properties = model_properties(models)
    zero_order = property_correlations(scores, properties, n_resamples=50).set_index(["property", "models"])
    assert zero_order.loc[("mmlu", "instruction_tuned"), "pearson_r"] > 0.8  # the confound
    table = family_correlations(scores, properties)
    mmlu = table[table["property"] == "mmlu"]
    joined = scores.join(properties, on="model")
    for _, row in mmlu[mmlu["method"] == "within_family"].iterrows():
        inside = joined[joined["family"] == row["family"]]
        expected = stats.pearsonr(inside["mmlu"], inside["score"])
        assert row["pearson_r"] == pytest.approx(expected.statistic) and row["pearson_r"] < -0.9
        assert row["p_value"] == pytest.approx(expected.pvalue) and row["n"] == 5
    for _, row in mmlu[mmlu["method"] == "leave_family_out"].iterrows():
        outside = joined[joined["family"] != row["family"]]
        assert row["pearson_r"] == pytest.approx(stats.pearsonr(outside["mmlu"], outside["score"]).statistic)
    adjusted = mmlu[mmlu["method"] == "family_adjusted"].iloc[0]
    fit = smf.ols(f"score ~ mmlu + C(family) + {SIZE}", data=joined).fit()
    assert adjusted["pearson_r"] < -0.5 and adjusted["p_value"] == pytest.approx(fit.pvalues["mmlu"])
    assert adjusted["covariates"] == f"family + {SIZE}" and adjusted["n_families"] == 2
    size = table[(table["property"] == SIZE) & (table["method"] == "family_adjusted")].iloc[0]
    assert size["covariates"] == "family"
    assert size["p_value"] == pytest.approx(smf.ols(f"score ~ {SIZE} + C(family)", data=joined).fit().pvalues[SIZE])


def write_surprisal(path, model, bits, ids=None):
    ids = ids or [f"w{i}" for i in range(len(bits))]
    table = pd.DataFrame({"stimulus_id": ids, "surprisal_bits": bits, "n_tokens": 1})
    io.write_table(path, table, io.result_metadata(model=model))
    return path


def test_bits_per_word_is_the_mean_over_words_with_context(tmp_path):
    paths = [
        write_surprisal(tmp_path / "a.parquet", "a", [np.nan, 4.0, 6.0, 11.0]),
        write_surprisal(tmp_path / "b.parquet", "b", [np.nan, 1.0, 2.0, 3.0]),
    ]
    bits = bits_per_word(paths)
    assert bits.to_dict() == {"a": pytest.approx(7.0), "b": pytest.approx(2.0)}
    properties = model_properties({"a": {"family": "f"}, "b": {"family": "f"}, "c": {"family": "f"}}, bits)
    assert properties.loc["a", BITS_PER_WORD] == 7.0 and np.isnan(properties.loc["c", BITS_PER_WORD])


def test_bits_per_word_refuses_models_scored_on_other_words(tmp_path):
    paths = [
        write_surprisal(tmp_path / "a.parquet", "a", [np.nan, 4.0, 6.0]),
        write_surprisal(tmp_path / "b.parquet", "b", [np.nan, np.nan, 2.0]),
    ]
    with pytest.raises(DataError, match=r"score different words \(words per model: \{'a': 2, 'b': 1\}\)"):
        bits_per_word(paths)


def test_bits_per_word_is_absent_without_surprisal_and_correlated_with_it():
    models, scores = confounded_models()
    assert BITS_PER_WORD not in model_properties(models).columns
    assert BITS_PER_WORD not in set(family_correlations(scores, model_properties(models))["property"])
    bits = pd.Series({name: 8.0 - 10 * block["metadata"]["mmlu"] for name, block in models.items()})
    properties = model_properties(models, bits)
    correlations = property_correlations(scores, properties, n_resamples=50)
    row = correlations[correlations["property"] == BITS_PER_WORD].iloc[0]
    joined = scores.join(properties, on="model")
    assert row["pearson_r"] == pytest.approx(stats.pearsonr(joined[BITS_PER_WORD], joined["score"]).statistic)
    assert BITS_PER_WORD in set(family_correlations(scores, properties)["property"])
