"""The robust protocol's noise ceiling: its pool fits against a naive ridge, a planted ceiling recovered,
and robust scores normalised by it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from brainalign import io
from brainalign.encoding import robust
from brainalign.encoding.pipeline import score_model
from brainalign.encoding.robust_ceiling import compute_robust_ceiling, pool_r2_scorer

FAST = {
    "n_outer_folds": 4,
    "n_inner_folds": 3,
    "alphas": {"min_exp": -1, "max_exp": 4, "n": 6},
    "ceiling": {"n_subsamples": 3, "n_holdouts": 2, "n_bootstraps": 30},
}


def shared_signal_subjects(signal_fraction, n_rows=240, n_groups=12, n_subjects=5, n_voxels=4, n_latent=2, seed=0):
    """Every voxel = a signal shared by all subjects (``signal_fraction`` of its variance) + the
    subject's own noise, so a perfect prediction from infinitely many other subjects has R^2 =
    ``signal_fraction``."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_rows, n_latent))
    signal = latent @ rng.standard_normal((n_latent, n_subjects * n_voxels))
    signal = (signal - signal.mean(0)) / signal.std(0)
    noise = rng.standard_normal(signal.shape)
    responses = np.sqrt(signal_fraction) * signal + np.sqrt(1 - signal_fraction) * noise
    groups = np.repeat([f"g{k}" for k in range(n_groups)], n_rows // n_groups)
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"s{i}" for i in range(n_rows)],
            "context_group": groups,
            "position": np.tile(np.arange(n_rows // n_groups), n_groups),
            "text": "a few words",
            "cv_group": groups,
            "partition": "all",
        }
    )
    neuroids = pd.DataFrame(
        {
            "neuroid_id": [f"n{i}" for i in range(signal.shape[1])],
            "subject": np.repeat([f"S{k}" for k in range(n_subjects)], n_voxels),
        }
    )
    return responses, stimuli, stimuli[["stimulus_id"]], neuroids


def naive_pool_r2(pool, target, groups, n_folds, alpha):
    """sklearn: each feature standardised on the training rows and divided by sqrt(n_features),
    ridge with an intercept, R^2 per neuroid on each held-out group fold."""
    scores = []
    for train, test in GroupKFold(n_splits=n_folds).split(pool, groups=groups):
        scaler = StandardScaler().fit(pool[train])
        scale = np.sqrt(pool.shape[1])
        model = Ridge(alpha=alpha).fit(scaler.transform(pool[train]) / scale, target[train])
        predicted = model.predict(scaler.transform(pool[test]) / scale)
        scores.append(r2_score(target[test], predicted, multioutput="raw_values"))
    return np.array(scores)


@pytest.mark.parametrize("n_subjects", [3, 12])  # pool narrower (primal) and wider (dual) than the rows
def test_pool_fit_equals_naive_ridge_at_one_penalty(n_subjects):
    responses, stimuli, rows, neuroids = shared_signal_subjects(0.5, n_subjects=n_subjects, n_voxels=20, seed=4)
    options = robust.resolve_robust_options({**FAST, "alphas": {"min_exp": 1, "max_exp": 1, "n": 1}, "controls": []})
    folds = robust.fold_splits(stimuli["cv_group"].to_numpy(), options)
    subject_of = neuroids["subject"].to_numpy()
    others = [f"S{k}" for k in range(1, n_subjects)]
    ours = pool_r2_scorer(responses, subject_of, folds, options)(others, "S0")
    expected = naive_pool_r2(
        responses[:, subject_of != "S0"],
        responses[:, subject_of == "S0"],
        stimuli["cv_group"].to_numpy(),
        4,
        alpha=10.0,
    )
    np.testing.assert_allclose(ours, expected, atol=2e-4)


@pytest.mark.parametrize("signal_fraction", [0.3, 0.7])
def test_recovers_the_planted_explainable_variance(signal_fraction):
    simulated = shared_signal_subjects(signal_fraction, n_rows=360, n_voxels=10, seed=1)
    table, summary = compute_robust_ceiling(*simulated, FAST)
    # A ridge fit on 270 training rows shrinks and misestimates a little: slightly below, never above.
    assert signal_fraction - 0.06 <= summary["ceiling"] <= signal_fraction + 0.02
    assert summary["measure"] == "R^2" and summary["n_subjects"] == 5
    assert len(table) == 50 and table["ceiling"].between(0, 1).all()


def test_each_partition_scores_its_own_subjects():
    responses, stimuli, rows, neuroids = shared_signal_subjects(0.6, n_subjects=4, seed=2)
    stimuli["partition"] = np.where(np.arange(len(stimuli)) < 120, "exp1", "exp2")
    # Subject S3 was not scanned in the second experiment.
    responses[120:, neuroids["subject"].to_numpy() == "S3"] = np.nan
    table, summary = compute_robust_ceiling(responses, stimuli, rows, neuroids, FAST)
    assert summary["partitions"]["exp1"]["n_subjects"] == 4 and summary["partitions"]["exp2"]["n_subjects"] == 3
    assert set(table.loc[table["partition"] == "exp2", "subject"]) == {"S0", "S1", "S2"}
    assert summary["ceiling"] == pytest.approx(np.mean([summary["partitions"][p]["ceiling"] for p in ("exp1", "exp2")]))


def test_time_series_ceiling_uses_the_measured_trs_of_contiguous_folds():
    responses, _, _, neuroids = shared_signal_subjects(0.6, n_rows=200, n_groups=10, n_subjects=4, n_voxels=6, seed=3)
    runs = np.repeat(["r1", "r2", "r3", "r4"], 50)
    rows = pd.DataFrame(
        {
            "stimulus_id": [f"tr{i}" for i in range(200)],
            "run": runs,
            "time": np.tile(np.arange(50.0), 4),
            "trimmed": np.tile(np.arange(50) < 3, 4),
        }
    )
    responses[rows["trimmed"].to_numpy()] = np.nan  # run edges without a kept measurement
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(200)],
            "response_id": rows["stimulus_id"],
            "context_group": runs,
            "position": np.tile(np.arange(50), 4),
            "text": "word",
            "cv_group": runs,
            "partition": "all",
        }
    )
    table, summary = compute_robust_ceiling(responses, stimuli, rows, neuroids, {**FAST, "time_series": True})
    assert summary["cv_groups"] == "runs (contiguous blocks)" and len(table) == 24
    assert 0.6 - 0.08 <= summary["ceiling"] <= 0.6 + 0.02


def test_one_subject_is_refused():
    responses, stimuli, rows, neuroids = shared_signal_subjects(0.5, n_subjects=1)
    with pytest.raises(Exception, match="1 subject"):
        compute_robust_ceiling(responses, stimuli, rows, neuroids, FAST)


def test_unknown_ceiling_option_names_the_robust_section():
    responses, stimuli, rows, neuroids = shared_signal_subjects(0.5)
    with pytest.raises(Exception, match=r"protocols\.robust\.ceiling: unknown option\(s\) \['n_splits'\]"):
        compute_robust_ceiling(responses, stimuli, rows, neuroids, {**FAST, "ceiling": {"n_splits": 3}})


def test_robust_scores_are_divided_by_the_robust_ceiling(tmp_path):
    fold = {
        "partition": "all",
        "inner_score": 0.1,
        "bootstrap_scores": [0.1, 0.2],
        "permutation_scores": None,
        **{column: 0.0 for column in robust.SCORE_COLUMNS.values()},
    }
    paths = []
    for layer, headline in ((1, 0.06), (2, 0.12)):
        folds = [{**fold, "fold": k, "inner_score": headline, "test_score": headline} for k in range(2)]
        neuroids = pd.DataFrame(
            {
                "partition": "all",
                "neuroid_id": ["n0"],
                "subject": ["S0"],
                **{f"{m}_fold_{k}": [headline] for m in robust.FOLD_MEASURES for k in range(2)},
            }
        )
        path = tmp_path / f"layer-{layer}.parquet"
        io.write_table(
            path,
            neuroids,
            io.result_metadata(layer=layer, score=headline, folds=folds, details={"confidence_level": 0.95}),
        )
        paths.append(path)
    ceiling = tmp_path / "ceiling.parquet"
    io.write_table(
        ceiling, pd.DataFrame({"ceiling": [0.4]}), io.result_metadata(summary={"ceiling": 0.4, "measure": "R^2"})
    )
    out = tmp_path / "model.tsv"
    score_model("robust", "m", "d", paths, ceiling, 2, out, tmp_path / "layers.tsv", tmp_path / "neuroids.parquet")
    row = io.read_tsv(out).iloc[0]
    assert row["score"] == pytest.approx(0.12) and row["ceiling"] == pytest.approx(0.4)
    assert row["normalized_score"] == pytest.approx(0.12 / 0.4)
    assert row["ceiling_measure"] == "R^2"
