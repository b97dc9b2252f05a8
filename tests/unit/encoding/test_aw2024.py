"""aw2024 encoding against scikit-learn LinearRegression + ShuffleSplit + scipy pearsonr."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import ShuffleSplit

from brainalign.encoding.aw2024 import fit_aw2024, ols_prediction_operator, predict_with_operator
from brainalign.encoding.cli import minimal_tables, register
from brainalign.errors import ConfigError, DataError

F64 = {"fit_precision": "float64"}
"""Options that compare the float64 fit with float64 references."""


def reference_scores(features, responses, n_splits=10, train_size=0.9, random_state=1):
    """Independent Brain-Score linear_pearsonr: per-split r per neuroid, median, mean over splits."""
    splitter = ShuffleSplit(n_splits=n_splits, train_size=train_size, random_state=random_state)
    r = np.full((n_splits, responses.shape[1]), np.nan)
    for index, (train, test) in enumerate(splitter.split(features)):
        predicted = LinearRegression().fit(features[train], responses[train]).predict(features[test])
        for column in range(responses.shape[1]):
            if np.ptp(responses[test, column]) > 0:
                r[index, column] = pearsonr(predicted[:, column], responses[test, column])[0]
    return r, float(np.mean(np.nanmedian(r, axis=1)))


def planted(n_stimuli, n_features, n_neuroids, noise, seed):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n_stimuli, n_features))
    weights = rng.standard_normal((n_features, n_neuroids)) / np.sqrt(n_features)
    responses = features @ weights + noise * rng.standard_normal((n_stimuli, n_neuroids))
    return features, responses


def run_cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def tables(n_stimuli, n_neuroids, partition=None, subjects=None):
    stimuli, rows, neuroids = minimal_tables(n_stimuli, n_neuroids, None)
    if partition is not None:
        stimuli["partition"] = partition
    if subjects is not None:
        neuroids["subject"] = subjects
    return stimuli, rows, neuroids


@pytest.mark.parametrize(
    ("n_stimuli", "n_features", "noise"),
    [(120, 20, 1.0), (120, 20, 100.0), (150, 60, 0.5)],
    ids=["planted", "pure-noise", "wide-planted"],
)
def test_matches_sklearn_when_samples_outnumber_features(n_stimuli, n_features, noise):
    features, responses = planted(n_stimuli, n_features, 40, noise, seed=n_features)
    r_ref, score_ref = reference_scores(features, responses)
    result = fit_aw2024(features, responses, *tables(n_stimuli, 40), F64)
    np.testing.assert_allclose(result.score, score_ref, atol=1e-6)
    ours = result.neuroids[[f"r_fold_{k}" for k in range(10)]].to_numpy().T
    np.testing.assert_allclose(ours, r_ref, atol=1e-6)
    np.testing.assert_allclose(result.folds["test_score"], np.nanmedian(r_ref, axis=1), atol=1e-6)


def test_features_outnumber_samples_give_the_minimum_norm_solution():
    # Zero-mean features: scikit-learn's lstsq then drops the centring direction too.
    features, responses = planted(60, 150, 25, 0.5, seed=3)
    r_ref, score_ref = reference_scores(features, responses)
    result = fit_aw2024(features, responses, *tables(60, 25), F64)
    np.testing.assert_allclose(result.score, score_ref, atol=1e-6)
    # Against an explicit pseudo-inverse, with feature offsets where lstsq is unstable.
    shifted = features + 5.0
    train, test = np.arange(54), np.arange(54, 60)
    centred = shifted[train] - shifted[train].mean(0)
    weights = np.linalg.pinv(centred, rcond=1e-10) @ (responses[train] - responses[train].mean(0))
    expected = (shifted[test] - shifted[train].mean(0)) @ weights + responses[train].mean(0)
    ours = predict_with_operator(ols_prediction_operator(shifted[train], shifted[test]), responses[train])
    np.testing.assert_allclose(ours, expected, atol=1e-8)


def test_sklearn_solver_is_the_reference_computation():
    features, responses = planted(60, 100, 10, 1.0, seed=5)
    features = features + 3.0
    r_ref, score_ref = reference_scores(features, responses)
    result = fit_aw2024(features, responses, *tables(60, 10), {**F64, "solver": "sklearn"})
    np.testing.assert_allclose(result.score, score_ref, atol=1e-9)


def test_torch_backend_matches_numpy():
    pytest.importorskip("torch")
    features, responses = planted(90, 30, 15, 1.0, seed=8)
    numpy_result = fit_aw2024(features, responses, *tables(90, 15), F64)
    torch_result = fit_aw2024(features, responses, *tables(90, 15), {**F64, "backend": "torch", "neuroid_batch": 4})
    np.testing.assert_allclose(torch_result.score, numpy_result.score, atol=1e-10)


def test_planted_signal_scores_higher_than_noise():
    features, signal = planted(200, 10, 30, 0.3, seed=1)
    noise = np.random.default_rng(2).standard_normal(signal.shape)
    assert fit_aw2024(features, signal, *tables(200, 30), {}).score > 0.8
    assert abs(fit_aw2024(features, noise, *tables(200, 30), {}).score) < 0.2


def test_partitions_are_scored_separately_and_averaged():
    features, responses = planted(160, 15, 20, 1.0, seed=4)
    partition = np.repeat(["a", "b"], 80)
    responses[partition == "b", :5] = np.nan  # neuroids absent from partition b
    result = fit_aw2024(features, responses, *tables(160, 20, partition), F64)
    a = reference_scores(features[:80], responses[:80])[1]
    b = reference_scores(features[80:], responses[80:, 5:])[1]
    np.testing.assert_allclose(result.score, (a + b) / 2, atol=1e-6)
    assert result.details["partitions"]["b"]["n_neuroids_dropped_nan"] == 5
    assert result.details["partitions"]["a"]["n_neuroids_dropped_nan"] == 0
    assert set(result.folds["partition"]) == {"a", "b"} and len(result.folds) == 20


def test_nan_and_constant_neuroids_are_dropped_and_counted():
    features, responses = planted(100, 8, 12, 1.0, seed=6)
    responses[3, 0] = np.nan
    responses[:, 1] = 7.0
    result = fit_aw2024(features, responses, *tables(100, 12), F64)
    assert result.details["n_neuroids_dropped_nan"] == 1
    assert result.details["n_neuroid_splits_constant"] == 10
    assert "n000000" not in set(result.neuroids["neuroid_id"])
    _, score_ref = reference_scores(features, responses[:, 1:])  # constant one excluded by nanmedian
    np.testing.assert_allclose(result.score, score_ref, atol=1e-6)


def test_subject_scores_and_mad():
    features, responses = planted(100, 8, 12, 1.0, seed=7)
    subjects = np.repeat(["s1", "s2", "s3"], 4)
    result = fit_aw2024(features, responses, *tables(100, 12, subjects=subjects), F64)
    r_ref, _ = reference_scores(features, responses)
    expected = {s: np.mean(np.nanmedian(r_ref[:, subjects == s], axis=1)) for s in ["s1", "s2", "s3"]}
    for subject, value in expected.items():
        np.testing.assert_allclose(result.details["subject_scores"][subject], value, atol=1e-6)
    values = np.array(list(expected.values()))
    np.testing.assert_allclose(result.details["subject_mad"], np.median(np.abs(values - np.median(values))), atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    features, responses = planted(50, 5, 4, 1.0, seed=9)
    broken = features.copy()
    broken[2, 1] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        fit_aw2024(broken, responses, *tables(50, 4), {})
    with pytest.raises(DataError, match="aligned"):
        fit_aw2024(features[:-1], responses, *tables(50, 4), {})
    with pytest.raises(ConfigError, match="unknown option"):
        fit_aw2024(features, responses, *tables(50, 4), {"n_split": 3})


def test_cli_writes_score_and_neuroid_r(tmp_path):
    features, responses = planted(80, 6, 5, 1.0, seed=10)
    responses[0, 4] = np.nan
    np.save(tmp_path / "x.npy", features)
    np.save(tmp_path / "y.npy", responses)
    run_cli(
        [
            "encode",
            "--features",
            str(tmp_path / "x.npy"),
            "--responses",
            str(tmp_path / "y.npy"),
            "--protocol",
            "aw2024",
            "--out",
            str(tmp_path / "out.json"),
        ]
    )
    document = json.loads((tmp_path / "out.json").read_text())
    r_ref, score_ref = reference_scores(features, responses[:, :4])
    np.testing.assert_allclose(document["score"], score_ref, atol=1e-6)
    np.testing.assert_allclose(document["neuroid_r"][:4], np.nanmean(r_ref, axis=0), atol=1e-6)
    assert document["neuroid_r"][4] is None


def test_cli_refuses_mismatched_rows(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    np.save(tmp_path / "y.npy", np.zeros((4, 2)))
    with pytest.raises(DataError, match="same number of rows"):
        run_cli(
            [
                "encode",
                "--features",
                str(tmp_path / "x.npy"),
                "--responses",
                str(tmp_path / "y.npy"),
                "--out",
                str(tmp_path / "o.json"),
            ]
        )


def test_cli_robust_dispatches_with_groups(tmp_path, monkeypatch):
    import sys
    import types

    from brainalign.encoding.result import EncodingResult

    seen = {}

    def fake_fit_robust(features, responses, stimuli, response_rows, neuroids, options):
        seen["cv_group"] = list(stimuli["cv_group"])
        seen["options"] = options
        table = neuroids[["neuroid_id", "subject"]].assign(r=[0.5, 0.25])
        return EncodingResult(neuroids=table, folds=pd.DataFrame(), score=0.375)

    monkeypatch.setitem(sys.modules, "brainalign.encoding.robust", types.SimpleNamespace(fit_robust=fake_fit_robust))
    np.save(tmp_path / "x.npy", np.ones((4, 3)))
    np.save(tmp_path / "y.npy", np.ones((4, 2)))
    np.save(tmp_path / "g.npy", np.array([1, 1, 2, 2]))
    run_cli(
        [
            "encode",
            "--features",
            str(tmp_path / "x.npy"),
            "--responses",
            str(tmp_path / "y.npy"),
            "--protocol",
            "robust",
            "--groups",
            str(tmp_path / "g.npy"),
            "--device",
            "auto",
            "--out",
            str(tmp_path / "o.json"),
        ]
    )
    document = json.loads((tmp_path / "o.json").read_text())
    assert seen["cv_group"] == ["1", "1", "2", "2"] and seen["options"] == {"device": "auto"}
    assert document["score"] == 0.375 and document["neuroid_r"] == [0.5, 0.25]


@pytest.mark.parametrize("condition", ["well", "ill", "rank-deficient"])
def test_split_operator_equals_svd_operator(condition):
    from brainalign.encoding.aw2024 import split_operator

    rng = np.random.default_rng(11)
    features = rng.standard_normal((50, 120)) + 1.0
    if condition == "ill":
        features[:, 0] *= 1e5  # one dominant direction: the Gram route would lose accuracy
    if condition == "rank-deficient":
        features = rng.standard_normal((50, 3)) @ rng.standard_normal((3, 120))
    train, test = np.arange(40), np.arange(40, 50)
    expected = ols_prediction_operator(features[train], features[test])
    ours = split_operator(features, features @ features.T, train, test)
    np.testing.assert_allclose(ours, expected, atol=1e-9 * np.abs(expected).max() + 1e-12)


def test_minimal_tables_count_position_within_each_group():
    stimuli, _, _ = minimal_tables(6, 2, np.array([7, 7, 7, 9, 9, 9]))
    assert stimuli["position"].tolist() == [0, 1, 2, 0, 1, 2]
