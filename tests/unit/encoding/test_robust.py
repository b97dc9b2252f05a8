"""The robust protocol on planted signals, against scikit-learn and shuffled-split baselines."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import ShuffleSplit
from threadpoolctl import threadpool_limits

from brainalign.encoding.banded import fit_predict_banded, standardize_bands
from brainalign.encoding.cv import grouped_splits
from brainalign.encoding.robust import (
    choose_layers,
    controls_only_fit,
    fit_robust,
    partition_controls,
    resolve_robust_options,
    sentence_design,
    time_series_design,
)
from brainalign.errors import ConfigError, DataError
from brainalign.stats import pearson_columns

FAST = {"n_bootstrap": 0, "n_permutations": 0, "n_band_weights": 6, "n_inner_folds": 3}


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: one BLAS thread avoids oversubscription when tests share the cores."""
    with threadpool_limits(limits=1):
        yield


def sentence_stimuli(n_passages: int, per_passage: int, rng: np.random.Generator) -> pd.DataFrame:
    n = n_passages * per_passage
    passages = np.repeat([f"p{g:03d}" for g in range(n_passages)], per_passage)
    lengths = rng.integers(4, 15, size=n)
    return pd.DataFrame(
        {
            "stimulus_id": [f"s{i}" for i in range(n)],
            "context_group": passages,
            "position": np.tile(np.arange(per_passage), n_passages),
            "text": [" ".join(["w"] * k) for k in lengths],
            "cv_group": passages,
            "partition": "all",
        }
    )


def neuroid_table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"neuroid_id": [f"n{i}" for i in range(n)], "subject": "s1", "roi": "lang"})


def test_single_band_ridge_equals_sklearn_ridge_at_the_chosen_alpha():
    rng = np.random.default_rng(0)
    for n_features in (8, 120):  # primal and dual solvers
        X = rng.standard_normal((60, n_features)) * rng.uniform(0.5, 3, n_features) + 1.0
        Y = X @ rng.standard_normal((n_features, 3)) + rng.standard_normal((60, 3))
        train, test = np.arange(45), np.arange(45, 60)
        inner = grouped_splits(np.repeat(np.arange(9), 5), 3)
        fit = fit_predict_banded([X[train]], [X[test]], Y[train], np.array([3.0]), inner)
        mean, std = X[train].mean(0), X[train].std(0) * np.sqrt(n_features)
        reference = Ridge(alpha=3.0).fit((X[train] - mean) / std, Y[train])
        expected = reference.predict((X[test] - mean) / std) - Y[train].mean(0)
        np.testing.assert_allclose(fit.predictions, expected, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(fit.alphas, 3.0, rtol=1e-5)


def test_controls_driven_data_give_no_unique_llm_contribution_under_robust_but_look_good_shuffled():
    """Responses follow position, length and a passage effect; LLM features only identify the passage."""
    rng = np.random.default_rng(1)
    n_passages, per_passage, n_neuroids = 50, 4, 12
    stimuli = sentence_stimuli(n_passages, per_passage, rng)
    passage = pd.factorize(stimuli["context_group"])[0]
    position = stimuli["position"].to_numpy(float)
    length = stimuli["text"].str.split().str.len().to_numpy(float)
    llm = rng.standard_normal((n_passages, 80))[passage] + 0.3 * rng.standard_normal((len(stimuli), 80))
    responses = (
        np.outer(position - position.mean(), rng.uniform(0.5, 1.0, n_neuroids))
        + np.outer((length - length.mean()) / length.std(), rng.uniform(0.5, 1.0, n_neuroids))
        + 1.5 * rng.standard_normal((n_passages, n_neuroids))[passage]
        + rng.standard_normal((len(stimuli), n_neuroids))
    )
    result = fit_robust(
        llm,
        responses,
        stimuli,
        stimuli[["stimulus_id"]],
        neuroid_table(n_neuroids),
        {**FAST, "controls": ["length", "position", "oasm"]},
    )
    assert result.details["score_controls"] > 0.1
    assert abs(result.score) < 0.02
    assert abs(result.details["r_unique"]) < 0.05
    assert set(result.neuroids.columns) >= {
        "score",
        "score_joint",
        "score_controls",
        "score_llm",
        "r",
        "r_controls",
        "r_unique",
        "alpha",
        "score_fold_0",
        "r_fold_0",
    }

    shuffled = []
    for train, test in ShuffleSplit(n_splits=10, train_size=0.9, random_state=1).split(llm):
        predictions = LinearRegression().fit(llm[train], responses[train]).predict(llm[test])
        shuffled.append(np.median(pearson_columns(predictions, responses[test])))
    assert np.mean(shuffled) > 0.25


def test_nested_layer_choice_recovers_the_generating_layer():
    rng = np.random.default_rng(2)
    stimuli = sentence_stimuli(30, 4, rng)
    layers = {layer: rng.standard_normal((len(stimuli), 30)) for layer in range(4)}
    responses = layers[2] @ rng.standard_normal((30, 10)) + 4 * rng.standard_normal((len(stimuli), 10))
    options = {**FAST, "controls": []}
    folds = {
        layer: fit_robust(features, responses, stimuli, stimuli[["stimulus_id"]], neuroid_table(10), options).folds
        for layer, features in layers.items()
    }
    nested, choices = choose_layers(folds)
    assert (choices["layer"] == 2).all()
    assert nested["score"] == pytest.approx(folds[2]["test_score"].mean())
    assert (
        nested["score_joint"] == nested["score_llm"] == pytest.approx(folds[2]["test_score_joint"].mean())
    )  # no control bands
    assert np.isnan(nested["score_controls"])
    assert choices.attrs["max_over_layers_layer"] == 2
    assert nested["score"] <= choices.attrs["max_over_layers_score"] + 1e-12
    assert nested["score"] > 0.2


def test_penalties_on_the_grid_edge_are_counted_and_logged(caplog):
    rng = np.random.default_rng(3)
    stimuli = sentence_stimuli(15, 4, rng)
    features = rng.standard_normal((len(stimuli), 5))
    responses = features @ rng.standard_normal((5, 6))  # noise-free: the smallest penalty wins
    options = {**FAST, "controls": [], "alphas": {"min_exp": 1, "max_exp": 3, "n": 3}}
    with caplog.at_level(logging.WARNING, logger="brainalign.encoding.robust"):
        result = fit_robust(features, responses, stimuli, stimuli[["stimulus_id"]], neuroid_table(6), options)
    assert result.details["alphas_at_low_edge"] == result.details["n_neuroid_fits"] == 6 * 5
    assert result.details["alphas_at_high_edge"] == 0
    assert "lower grid edge" in caplog.text
    np.testing.assert_allclose(result.neuroids["alpha"], 10.0)


def test_partitions_are_scored_separately_and_nan_neuroids_dropped():
    rng = np.random.default_rng(4)
    stimuli = sentence_stimuli(24, 4, rng)
    stimuli["partition"] = np.where(np.arange(len(stimuli)) < 48, "a", "b")
    features = rng.standard_normal((len(stimuli), 20))
    responses = features @ rng.standard_normal((20, 5)) + rng.standard_normal((len(stimuli), 5))
    responses[48:, 0] = np.nan  # neuroid 0 absent from partition b
    result = fit_robust(
        features,
        responses,
        stimuli,
        stimuli[["stimulus_id"]],
        neuroid_table(5),
        {**FAST, "controls": ["position"], "n_outer_folds": 3},
    )
    assert sorted(result.folds["partition"].unique()) == ["a", "b"]
    assert result.details["partitions"]["b"]["n_neuroids_non_finite"] == 1
    assert len(result.neuroids) == 5 + 4
    assert result.score == pytest.approx(result.folds.groupby("partition")["test_score"].mean().mean())


def time_series_data(rng: np.random.Generator, n_runs: int = 4, trs_per_run: int = 60, words_per_tr: int = 3):
    """Words averaged into TRs of runs; 8 voxels follow the TR two steps earlier within the run."""
    rows = pd.DataFrame(
        {
            "stimulus_id": [f"tr{i}" for i in range(n_runs * trs_per_run)],
            "run": np.repeat(np.arange(n_runs), trs_per_run),
            "time": np.tile(np.arange(trs_per_run) * 2.0, n_runs),
        }
    )
    silent = rng.random(len(rows)) < 0.1  # fixation TRs without words
    response_id = np.repeat(rows["stimulus_id"].to_numpy()[~silent], words_per_tr)
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(len(response_id))],
            "context_group": "story",
            "position": np.arange(len(response_id)),
            "text": "w",
            "cv_group": "story",
            "partition": "all",
            "response_id": response_id,
        }
    )
    words = rng.standard_normal((len(stimuli), 12))
    per_tr = np.zeros((len(rows), 12))
    per_tr[~silent] = words.reshape(-1, words_per_tr, 12).mean(axis=1)
    delayed = np.zeros_like(per_tr)
    for run in range(n_runs):  # the response follows the TR two steps earlier, within the run
        block = slice(run * trs_per_run, (run + 1) * trs_per_run)
        delayed[block][2:] = per_tr[block][:-2]
    responses = delayed @ rng.standard_normal((12, 8)) + 0.3 * rng.standard_normal((len(rows), 8))
    return words, responses, stimuli, rows


def test_time_series_words_to_trs_with_delays_and_statistics():
    n_runs, trs_per_run = 4, 60
    words, responses, stimuli, rows = time_series_data(np.random.default_rng(5), n_runs, trs_per_run)
    options = {
        **FAST,
        "time_series": True,
        "n_outer_folds": 4,
        "controls": ["length"],
        "n_bootstrap": 200,
        "n_permutations": 99,
        "block_trs": 10,
    }
    result = fit_robust(words, responses, stimuli, rows, neuroid_table(8), options)
    assert result.score > 0.5
    assert result.p_value == pytest.approx(0.01)
    assert result.ci_low < result.score < result.ci_high
    # Each held-out run loses trim_trs training TRs at no other run's edge: folds are whole runs.
    assert (result.folds["n_test"] == trs_per_run).all()
    assert (result.folds["n_train"] == (n_runs - 1) * trs_per_run).all()


def trimmed_run_edges(
    responses: np.ndarray, rows: pd.DataFrame, start: int = 5, end: int = 4
) -> tuple[np.ndarray, pd.DataFrame]:
    """NaN responses and a ``trimmed`` flag on each run's first and last TRs, as the Wehbe2014 reader writes them."""
    position = rows.groupby("run").cumcount().to_numpy()
    run_length = rows.groupby("run")["run"].transform("size").to_numpy()
    trimmed = (position < start) | (position >= run_length - end)
    responses = responses.copy()
    responses[trimmed] = np.nan
    return responses, rows.assign(trimmed=trimmed)


def test_trimmed_run_edges_are_left_out_of_fits_but_feed_the_delays():
    n_runs, trs_per_run = 4, 60
    words, responses, stimuli, rows = time_series_data(np.random.default_rng(5), n_runs, trs_per_run)
    responses, rows = trimmed_run_edges(responses, rows)
    options = {
        **FAST,
        "time_series": True,
        "n_outer_folds": 4,
        "controls": ["length"],
        "n_permutations": 19,
        "block_trs": 10,
    }
    result = fit_robust(words, responses, stimuli, rows, neuroid_table(8), options)
    assert result.score > 0.5 and 0 < result.p_value <= 0.05
    assert result.details["partitions"]["all"]["n_rows"] == n_runs * (trs_per_run - 9)
    assert (result.folds["n_test"] == trs_per_run - 9).all()
    assert np.isfinite(
        controls_only_fit(stimuli, responses, rows, neuroid_table(8), options).filter(like="prediction:").to_numpy()
    ).all()
    # The first kept TR of a run (position 5) is predicted from the words of trimmed TR 3 (delay 2).
    design = time_series_design(words, stimuli, rows, resolve_robust_options({**options, "delays": [2]}))
    words_of_tr = stimuli.groupby("response_id").indices
    for run in range(n_runs):
        source = f"tr{run * trs_per_run + 3}"
        expected = words[words_of_tr[source]].mean(axis=0) if source in words_of_tr else np.zeros(words.shape[1])
        np.testing.assert_allclose(design["llm"][run * trs_per_run + 5], expected)
        assert not design["measured"][run * trs_per_run + 3]


def test_unflagged_rows_without_measurement_are_refused_with_the_fix():
    words, responses, stimuli, rows = time_series_data(np.random.default_rng(5))
    responses, rows = trimmed_run_edges(responses, rows)
    with pytest.raises(
        DataError, match="no neuroid has finite, non-constant responses on its 240 measured rows; flag .* 'trimmed'"
    ):
        fit_robust(
            words, responses, stimuli, rows.drop(columns="trimmed"), neuroid_table(8), {**FAST, "time_series": True}
        )


def sentence_data(rng: np.random.Generator):
    stimuli = sentence_stimuli(20, 4, rng)
    stimuli["partition"] = np.where(np.arange(len(stimuli)) < 40, "a", "b")
    features = rng.standard_normal((len(stimuli), 16))
    responses = features[:, :4] @ rng.standard_normal((4, 6)) + rng.standard_normal((len(stimuli), 6))
    return features, responses, stimuli, stimuli[["stimulus_id"]]


@pytest.mark.parametrize("time_series", [False, True])
def test_a_controls_fit_made_once_gives_the_same_result_as_fitting_it_inline(time_series):
    rng = np.random.default_rng(7)
    features, responses, stimuli, rows = time_series_data(rng) if time_series else sentence_data(rng)
    neuroids = neuroid_table(responses.shape[1])
    options = {
        **FAST,
        "time_series": time_series,
        "controls": ["length", "position", "oasm"],
        "n_bootstrap": 20,
        "n_permutations": 19,
    }
    inline = fit_robust(features, responses, stimuli, rows, neuroids, options)
    assert np.isfinite(inline.score) and np.isfinite(inline.details["score_controls"])
    controls = controls_only_fit(stimuli, responses, rows, neuroids, options)
    cached = fit_robust(features, responses, stimuli, rows, neuroids, options, controls=controls)
    pd.testing.assert_frame_equal(cached.neuroids, inline.neuroids)
    pd.testing.assert_frame_equal(cached.folds, inline.folds)
    assert (cached.score, cached.ci_low, cached.ci_high, cached.p_value) == (
        inline.score,
        inline.ci_low,
        inline.ci_high,
        inline.p_value,
    )
    assert inline.details["score_controls"] == cached.details["score_controls"]


def test_a_controls_fit_of_other_responses_is_refused():
    features, responses, stimuli, rows = sentence_data(np.random.default_rng(8))
    options = {**FAST, "controls": ["length"]}
    controls = controls_only_fit(stimuli, responses[:, :5], rows, neuroid_table(5), options)
    with pytest.raises(
        DataError, match="does not cover every neuroid and row scored in partition 'a'.*rerun fit_controls"
    ):
        fit_robust(features, responses, stimuli, rows, neuroid_table(6), options, controls=controls)
    with pytest.raises(ConfigError, match="controls is empty"):
        controls_only_fit(stimuli, responses, rows, neuroid_table(6), {**FAST, "controls": []})


def test_nearly_constant_training_columns_are_not_blown_up():
    """A column with only far Gaussian tails in training (a spread far below float32 resolution)."""
    rng = np.random.default_rng(9)
    train = np.column_stack([rng.standard_normal(50), np.full(50, 1e-200) * rng.random(50), np.zeros(50)])
    test = np.column_stack([rng.standard_normal(10), np.full(10, 0.6), np.ones(10)])
    (scaled_train,), (scaled_test,) = standardize_bands([train], [test])
    assert np.isfinite(scaled_test).all() and np.abs(scaled_test[:, 1:]).max() < 1.0
    np.testing.assert_allclose(scaled_train[:, 0].std(), 1 / np.sqrt(3), rtol=1e-5)


def test_the_oasm_band_never_links_rows_of_different_cv_groups():
    """Context groups (topics) that span cv groups (passages), as in Pereira2018's 243sentences."""
    rng = np.random.default_rng(10)
    stimuli = sentence_stimuli(6, 4, rng).assign(context_group=lambda frame: np.repeat(["topic-a", "topic-b"], 12))
    design = sentence_design(np.zeros((len(stimuli), 1)), stimuli, resolve_robust_options({"controls": ["oasm"]}))
    groups = stimuli["cv_group"].to_numpy()
    across = groups[:, None] != groups[None, :]
    assert np.all(design["controls"]["oasm"][across] == 0)
    assert np.all(np.diag(design["controls"]["oasm"]) == 1)
    with pytest.raises(ConfigError, match="cv_groups is 'topic', but the stimuli table has no such column"):
        sentence_design(np.zeros((len(stimuli), 1)), stimuli, resolve_robust_options({"cv_groups": "topic"}))


def test_oasm_of_a_split_run_keeps_held_out_predictions_on_the_responses_scale():
    """A single run: the test blocks cut it, and the trimmed gap's OASM columns reach both
    sides (the full-size Wehbe2014 rehearsal, whose runs were then cut, scored R^2 of -1e6)."""
    rng = np.random.default_rng(12)
    words, _, stimuli, rows = time_series_data(rng, n_runs=1, trs_per_run=240)
    noise = rng.standard_normal((len(rows), 6))
    options = {**FAST, "time_series": True, "n_outer_folds": 5, "controls": ["length", "position", "oasm"]}
    design = time_series_design(words, stimuli, rows, resolve_robust_options(options))
    bands, row_indexed = partition_controls(design, np.arange(len(rows)))
    assert row_indexed == [False, False, True] and bands[2].shape == (len(rows), len(rows))
    result = fit_robust(words, noise, stimuli, rows, neuroid_table(6), options)
    assert (result.folds["n_test"] == 48).all()  # five blocks of the one run
    for measure in ("score_joint", "score_controls"):
        assert result.neuroids[measure].min() > -1.0, measure
    assert abs(result.score) < 0.1
