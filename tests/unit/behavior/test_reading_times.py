"""Reading-time scoring on synthetic readers with planted surprisal effects and known noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression

from brainalign.behavior import reading_times as rt
from brainalign.errors import ConfigError, DataError


def synthetic_corpus(n_stories=6, sentences_per_story=40, words_per_sentence=10, seed=0):
    """Generic stimuli (demo-like columns, no Natural-Stories-only ones) and a surprisal table."""
    rng = np.random.default_rng(seed)
    n_per_story = sentences_per_story * words_per_sentence
    n = n_stories * n_per_story
    vocabulary = np.array(["a", "the", "house", "walked", "extraordinary", "is", "of", "river", "quietly", "jump"])
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(n)],
            "context_group": np.repeat([f"s{k}" for k in range(n_stories)], n_per_story),
            "position": np.tile(np.arange(n_per_story), n_stories),
            "text": vocabulary[rng.integers(0, len(vocabulary), n)],
            "cv_group": np.repeat([f"s{k}" for k in range(n_stories)], n_per_story),
            "partition": "all",
            "sentence_id": np.repeat(np.arange(n // words_per_sentence), words_per_sentence),
        }
    )
    stimuli["word_in_sentence"] = np.tile(np.arange(1, words_per_sentence + 1), n // words_per_sentence)
    surprisal = pd.DataFrame(
        {"stimulus_id": stimuli["stimulus_id"], "surprisal_bits": rng.gamma(4.0, 2.0, n), "n_tokens": 1}
    )
    surprisal.loc[stimuli["position"] == 0, "surprisal_bits"] = np.nan
    return stimuli, surprisal


def planted_readers(stimuli, surprisal, n_readers, beta, noise_sd, seed=1, missing=0.0):
    """RT = 300 + beta * surprisal + 10 * length + reader offset + N(0, noise_sd^2)."""
    rng = np.random.default_rng(seed)
    signal = beta * np.nan_to_num(surprisal["surprisal_bits"].to_numpy()) + 10.0 * stimuli["text"].str.len().to_numpy()
    offsets = rng.normal(0, 30, n_readers)
    times = 300 + signal[:, None] + offsets[None, :] + rng.normal(0, noise_sd, (len(stimuli), n_readers))
    times[rng.random(times.shape) < missing] = np.nan
    readers = pd.DataFrame(
        {
            "neuroid_id": [f"r{j}" for j in range(n_readers)],
            "subject": [f"r{j}" for j in range(n_readers)],
            "roi": "reader",
        }
    )
    return times, readers, signal


def test_split_half_ceiling_matches_brainscore_algorithm():
    stimuli, surprisal = synthetic_corpus()
    times, readers, _ = planted_readers(stimuli, surprisal, 21, beta=5.0, noise_sd=80.0, missing=0.05)
    ceiling, corrected = rt.split_half_ceiling(times, n_splits=10, seed=0)
    # Naive re-implementation of Brain-Score's SplitHalvesConsistency on subject ids.
    subjects = readers["neuroid_id"].to_numpy()
    state = np.random.RandomState(0)
    expected = []
    for _ in range(10):
        half1 = state.choice(subjects, size=len(subjects) // 2, replace=False)
        in_half1 = np.isin(subjects, half1)
        a, b = np.nanmean(times[:, in_half1], axis=1), np.nanmean(times[:, ~in_half1], axis=1)
        r = abs(stats.pearsonr(a, b)[0])
        expected.append(2 * r / (1 + r))
    np.testing.assert_allclose(corrected, expected, rtol=1e-10)
    assert ceiling == pytest.approx(np.median(expected))


def test_split_half_ceiling_recovers_planted_reliability():
    stimuli, surprisal = synthetic_corpus(n_stories=10)
    n_readers, noise_sd = 40, 150.0
    times, _, signal = planted_readers(stimuli, surprisal, n_readers, beta=6.0, noise_sd=noise_sd)
    ceiling, _ = rt.split_half_ceiling(times)
    # Reliability of the mean over all readers: var(signal) / (var(signal) + noise^2 / n).
    expected = np.var(signal) / (np.var(signal) + noise_sd**2 / n_readers)
    assert ceiling == pytest.approx(expected, abs=0.02)


def test_cross_validated_fit_matches_sklearn():
    rng = np.random.default_rng(4)
    features, groups = rng.normal(size=(120, 3)), np.repeat(["a", "b", "c"], 40)
    target = features @ [1.0, -2.0, 0.5] + rng.normal(size=120)
    predicted, loglik = rt.cross_validated_fit(features, target, groups)
    for group in "abc":
        test = groups == group
        model = LinearRegression().fit(features[~test], target[~test])
        np.testing.assert_allclose(predicted[test], model.predict(features[test]), rtol=1e-8)
        sd = np.sqrt(np.mean((target[~test] - model.predict(features[~test])) ** 2))
        np.testing.assert_allclose(
            loglik[test], stats.norm.logpdf(target[test], model.predict(features[test]), sd), rtol=1e-8
        )


def test_scores_recover_planted_surprisal_effect():
    stimuli, surprisal = synthetic_corpus(n_stories=8)
    n_readers, noise_sd, beta = 30, 120.0, 4.0
    times, readers, _ = planted_readers(stimuli, surprisal, n_readers, beta, noise_sd)
    result = rt.score_reading_times(
        surprisal, stimuli, times, readers, {"alignment": "synthetic", "n_bootstrap": 300}
    ).set_index("protocol")
    # aw2024: the independent computation (scipy on the mean over readers, sentence starts dropped).
    keep = stimuli["word_in_sentence"].to_numpy() != 1
    expected_r = stats.pearsonr(surprisal["surprisal_bits"].to_numpy()[keep], times.mean(axis=1)[keep])[0]
    assert result.loc["aw2024", "r"] == pytest.approx(expected_r, rel=1e-9)
    assert result.loc["aw2024", "n_words"] == keep.sum()
    assert result.loc["aw2024", "ci_low"] < result.loc["aw2024", "score"] < result.loc["aw2024", "ci_high"]
    assert result.loc["aw2024", "normalized_score"] == pytest.approx(
        result.loc["aw2024", "score"] / result.loc["aw2024", "ceiling"]
    )
    assert np.isnan(result.loc["regression", "normalized_score"])  # a gain in r has no ceiling
    # regression: the mean over readers has noise variance noise^2/n; without the surprisal terms the
    # residual variance grows by beta^2 var(surprisal) (surprisal is independent of the controls).
    noise_var = noise_sd**2 / n_readers
    expected_gain = 0.5 * np.log((noise_var + beta**2 * np.nanvar(surprisal["surprisal_bits"])) / noise_var)
    row = result.loc["regression"]
    assert row["delta_loglik"] == pytest.approx(expected_gain, rel=0.1)
    assert row["delta_loglik_ci_low"] < expected_gain < row["delta_loglik_ci_high"]
    assert row["score"] > 0 and row["ci_low"] > 0 and row["p_value"] < 1e-6


def test_regression_finds_no_gain_without_effect():
    stimuli, surprisal = synthetic_corpus(n_stories=8)
    times, readers, _ = planted_readers(stimuli, surprisal, 30, beta=0.0, noise_sd=120.0)
    row = (
        rt.score_reading_times(surprisal, stimuli, times, readers, {"n_bootstrap": 300})
        .set_index("protocol")
        .loc["regression"]
    )
    assert row["delta_loglik"] < 0.005
    assert row["delta_loglik_ci_low"] < 0.002
    assert row["p_value"] > 0.001


def test_paper_surprisal_feeds_the_aw2024_score_only():
    stimuli, surprisal = synthetic_corpus(n_stories=4)
    times, readers, _ = planted_readers(stimuli, surprisal, 12, beta=10.0, noise_sd=60.0)
    noise = surprisal.assign(surprisal_bits=np.random.default_rng(5).normal(size=len(surprisal)))
    options = {"n_bootstrap": 20}
    alone = rt.score_reading_times(surprisal, stimuli, times, readers, options).set_index("protocol")
    paired = rt.score_reading_times(surprisal, stimuli, times, readers, options, paper_surprisal=noise).set_index(
        "protocol"
    )
    assert paired.loc["regression", "score"] == alone.loc["regression", "score"]
    noise_alone = rt.score_reading_times(noise, stimuli, times, readers, options).set_index("protocol")
    assert paired.loc["aw2024", "score"] == noise_alone.loc["aw2024", "score"] != alone.loc["aw2024", "score"]


def test_means_only_reports_ceiling_unavailable():
    stimuli, surprisal = synthetic_corpus()
    times, _, _ = planted_readers(stimuli, surprisal, 10, beta=4.0, noise_sd=50.0)
    means = pd.DataFrame({"neuroid_id": ["mean"], "subject": ["mean"], "roi": ["mean"]})
    result = rt.score_reading_times(surprisal, stimuli, times.mean(axis=1, keepdims=True), means, {"n_bootstrap": 50})
    assert result["ceiling"].isna().all() and result["normalized_score"].isna().all()
    assert (result["ceiling_status"] == "unavailable: per-word means only").all()


def test_mixed_effects_recovers_planted_effect():
    stimuli, surprisal = synthetic_corpus(n_stories=3, sentences_per_story=10)
    noise_sd, beta = 60.0, 5.0
    times, readers, _ = planted_readers(stimuli, surprisal, 8, beta, noise_sd)
    result = rt.score_reading_times(
        surprisal, stimuli, times, readers, {"mixed_effects": True, "n_bootstrap": 50}
    ).set_index("protocol")
    row = result.loc["regression_mixed"]
    expected = 0.5 * np.log((noise_sd**2 + beta**2 * np.nanvar(surprisal["surprisal_bits"])) / noise_sd**2)
    assert row["delta_loglik"] == pytest.approx(expected, rel=0.15)
    assert row["p_value"] < 1e-10
    assert row["n_readings"] == row["n_words"] * 8


def test_sentence_column_option_changes_first_word_rule():
    stimuli, surprisal = synthetic_corpus()
    stimuli["paragraph"] = stimuli["sentence_id"] // 4
    times, readers, _ = planted_readers(stimuli, surprisal, 6, beta=4.0, noise_sd=50.0)
    by_sentence = rt.score_reading_times(surprisal, stimuli, times, readers, {"n_bootstrap": 20})
    by_paragraph = rt.score_reading_times(
        surprisal, stimuli, times, readers, {"n_bootstrap": 20, "sentence_column": "paragraph"}
    )
    assert by_sentence.loc[0, "n_words"] == len(stimuli) - stimuli["sentence_id"].nunique()
    assert by_paragraph.loc[0, "n_words"] == len(stimuli) - stimuli["paragraph"].nunique()


def test_bad_inputs_raise_clear_errors():
    stimuli, surprisal = synthetic_corpus(n_stories=2)
    times, readers, _ = planted_readers(stimuli, surprisal, 4, beta=4.0, noise_sd=50.0)
    with pytest.raises(DataError, match="missing from the surprisal table"):
        rt.score_reading_times(surprisal.iloc[5:], stimuli, times, readers, {})
    with pytest.raises(DataError, match="lacks columns"):
        rt.score_reading_times(surprisal.rename(columns={"surprisal_bits": "bits"}), stimuli, times, readers, {})
    with pytest.raises(DataError, match="sentence_column"):
        rt.score_reading_times(surprisal, stimuli.drop(columns="sentence_id"), times, readers, {})
    with pytest.raises(DataError, match="shape"):
        rt.score_reading_times(surprisal, stimuli, times[:-1], readers, {})
    with pytest.raises(ConfigError, match=r"unknown option\(s\)"):
        rt.score_reading_times(surprisal, stimuli, times, readers, {"n_boot": 3})


def test_pipeline_step_matches_direct_scoring(tmp_path):
    from brainalign import io
    from brainalign.behavior.pipeline import fit_reading_times

    stimuli, surprisal = synthetic_corpus(n_stories=3)
    times, readers, _ = planted_readers(stimuli, surprisal, 6, beta=4.0, noise_sd=50.0)
    io.write_stimuli(tmp_path / "s.parquet", stimuli, {"dataset": "synthetic"})
    checksum = io.stimuli_checksum(tmp_path / "s.parquet")
    io.write_surprisal(
        tmp_path / "p.parquet",
        surprisal.iloc[::-1],
        {"model": "m", "stimuli_sha256": checksum, "readout": "unit", "context_policy": "windows"},
    )
    order = np.random.default_rng(0).permutation(len(stimuli))  # responses in another row order
    io.write_responses(
        tmp_path / "r.parquet",
        stimuli["stimulus_id"].to_numpy()[order],
        times[order],
        readers,
        {"alignment": "synthetic"},
    )
    fit_reading_times(
        "m",
        "d",
        tmp_path / "p.parquet",
        tmp_path / "s.parquet",
        tmp_path / "r.parquet",
        {"n_bootstrap": 30},
        tmp_path / "out.tsv",
    )
    direct = rt.score_reading_times(surprisal, stimuli, times, readers, {"n_bootstrap": 30, "alignment": "synthetic"})
    written = io.read_tsv(tmp_path / "out.tsv")
    np.testing.assert_allclose(written["score"], direct["score"], rtol=1e-6)
    assert (written["alignment"] == "synthetic").all() and (written["model"] == "m").all()
    assert (written["surprisal_readout"] == "unit").all() and (written["surprisal_context_policy"] == "windows").all()


def test_each_behavior_row_names_the_surprisal_it_read(tmp_path):
    from brainalign import io
    from brainalign.behavior.pipeline import fit_reading_times

    stimuli, surprisal = synthetic_corpus(n_stories=3)
    times, readers, _ = planted_readers(stimuli, surprisal, 6, beta=4.0, noise_sd=50.0)
    io.write_stimuli(tmp_path / "s.parquet", stimuli, {"dataset": "synthetic"})
    checksum = io.stimuli_checksum(tmp_path / "s.parquet")
    for readout in ("aw2024", "unit"):
        io.write_surprisal(tmp_path / f"{readout}.parquet", surprisal, {"stimuli_sha256": checksum, "readout": readout})
    io.write_responses(tmp_path / "r.parquet", stimuli["stimulus_id"].to_numpy(), times, readers, {})
    fit_reading_times(
        "m",
        "d",
        tmp_path / "unit.parquet",
        tmp_path / "s.parquet",
        tmp_path / "r.parquet",
        {"n_bootstrap": 0},
        tmp_path / "out.tsv",
        paper_surprisal_path=tmp_path / "aw2024.parquet",
    )
    written = io.read_tsv(tmp_path / "out.tsv").set_index("protocol")
    assert written.loc["aw2024", "surprisal_readout"] == "aw2024"
    assert written.loc["regression", "surprisal_readout"] == "unit"
