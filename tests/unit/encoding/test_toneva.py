"""The Wehbe2014 (Toneva) pipeline against a naive re-implementation and a planted signal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import zscore
from sklearn.decomposition import PCA

from brainalign.encoding import toneva
from brainalign.encoding.toneva import contiguous_folds, delay_features, fit_toneva, kept_tr_mask, principal_axes

SETTINGS = {
    "n_components": 3,
    "trim_start": 4,
    "trim_end": 3,
    "boundary_trs": 2,
    "inner_folds": 4,
    "alphas": [1e-2, 1.0, 1e2, 1e4],
}


def simulate(n_runs=4, trs_per_run=40, words_per_tr=4, n_features=12, n_voxels=6, noise=0.5, seed=0):
    """Word features, TR responses driven by the delayed TR-average of a planted projection."""
    rng = np.random.default_rng(seed)
    n_trs = n_runs * trs_per_run
    runs = np.repeat(np.arange(1, n_runs + 1), trs_per_run)
    word_tr = np.repeat(np.arange(n_trs), words_per_tr)
    words = rng.standard_normal((len(word_tr), n_features))
    words[:, :2] *= 4  # the planted dimensions carry the most variance, so PCA keeps them
    per_tr = np.stack([words[word_tr == t].mean(0) for t in range(n_trs)])
    drive = per_tr[:, :2] @ rng.standard_normal((2, n_voxels))
    responses = np.zeros((n_trs, n_voxels))
    responses[2:] = drive[:-2]  # the BOLD lags the words by 2 TRs
    responses += noise * rng.standard_normal(responses.shape)
    tr_ids = [f"tr{t:04d}" for t in range(n_trs)]
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"w{i:05d}" for i in range(len(word_tr))],
            "response_id": np.array(tr_ids)[word_tr],
            "partition": "all",
        }
    )
    rows = pd.DataFrame({"stimulus_id": tr_ids, "run": runs})
    neuroids = pd.DataFrame(
        {"neuroid_id": [f"v{i}" for i in range(n_voxels)], "subject": np.repeat(["A", "B"], n_voxels // 2)}
    )
    return words, responses, stimuli, rows, neuroids, word_tr, runs


def naive_toneva(words, responses, word_tr, runs, settings):
    """Loop-by-loop transcription of the original pipeline (inv-based ridge, per-voxel loops)."""
    n_trs = len(runs)
    kept = np.concatenate(
        [np.arange(n_trs)[runs == r][settings["trim_start"] : -settings["trim_end"]] for r in np.unique(runs)]
    )
    n_kept = len(kept)
    size = n_kept // 4
    fold_of = np.array([min(i // size, 3) for i in range(n_kept)])
    data = responses[kept]
    corrs = np.zeros((4, responses.shape[1]))
    for fold in range(4):
        train_ind, test_ind = fold_of != fold, fold_of == fold
        train_trs = set(kept[train_ind])
        word_train = np.array([t in train_trs for t in word_tr])
        pca = PCA(n_components=settings["n_components"], svd_solver="full").fit(words[word_train])
        reduced = pca.transform(words)
        tmp = np.zeros((n_trs, reduced.shape[1]))
        for t in range(n_trs):
            tmp[t] = np.mean(reduced[word_tr == t], 0)
        delayed = np.concatenate([np.vstack([np.zeros((d, tmp.shape[1])), tmp[:-d]]) for d in (1, 2, 3, 4)], axis=1)
        design = np.nan_to_num(
            np.vstack(
                [zscore(delayed[runs == r][settings["trim_start"] : -settings["trim_end"]]) for r in np.unique(runs)]
            )
        )
        train_x, test_x, train_y, test_y = design[train_ind], design[test_ind], data[train_ind], data[test_ind]
        skip = settings["boundary_trs"]
        if fold == 0:
            train_x, train_y = train_x[skip:], train_y[skip:]
        elif fold == 3:
            train_x, train_y = train_x[:-skip], train_y[:-skip]
        else:
            test_x, test_y = test_x[skip:-skip], test_y[skip:-skip]
        train_x, test_x, train_y, test_y = zscore(train_x), zscore(test_x), zscore(train_y), zscore(test_y)
        alphas = settings["alphas"]
        cost = np.zeros((len(alphas), data.shape[1]))
        folds = np.array_split(np.arange(len(train_x)), settings["inner_folds"])
        for validation in folds:
            fit = np.setdiff1d(np.arange(len(train_x)), validation)
            for a, alpha in enumerate(alphas):
                x = train_x[fit]
                w = np.linalg.inv(x.T @ x + alpha * np.eye(x.shape[1])) @ x.T @ train_y[fit]
                p = train_x[validation] @ w
                cost[a] += 1 - (1 - ((train_y[validation] - p) ** 2).mean(0) / train_y[validation].var(0))
        for v in range(data.shape[1]):
            alpha = alphas[int(np.argmin(cost[:, v]))]
            w = np.linalg.inv(train_x.T @ train_x + alpha * np.eye(train_x.shape[1])) @ train_x.T @ train_y[:, v]
            corrs[fold, v] = np.mean(zscore(test_x @ w) * test_y[:, v])
    return corrs


def test_matches_naive_reimplementation():
    words, responses, stimuli, rows, neuroids, word_tr, runs = simulate()
    result = fit_toneva(words, responses, stimuli, rows, neuroids, {"time_series": True, "toneva": SETTINGS})
    expected = naive_toneva(words, responses, word_tr, runs, SETTINGS)
    ours = result.neuroids[[f"r_fold_{k}" for k in range(4)]].to_numpy().T
    np.testing.assert_allclose(ours, expected, atol=1e-8)
    per_subject = [expected.mean(0)[:3].mean(), expected.mean(0)[3:].mean()]
    np.testing.assert_allclose(result.score, np.mean(per_subject), atol=1e-8)


def test_planted_signal_is_recovered_and_noise_is_not():
    words, responses, stimuli, rows, neuroids, *_ = simulate(noise=0.3, seed=1)
    signal = fit_toneva(words, responses, stimuli, rows, neuroids, {"time_series": True, "toneva": SETTINGS})
    noise = np.random.default_rng(5).standard_normal(responses.shape)
    null = fit_toneva(words, noise, stimuli, rows, neuroids, {"time_series": True, "toneva": SETTINGS})
    assert signal.score > 0.6
    assert abs(null.score) < 0.15


def test_trimmed_rows_may_be_nan_and_nan_voxels_are_dropped():
    words, responses, stimuli, rows, neuroids, *_ = simulate(seed=2)
    kept = kept_tr_mask(rows["run"].to_numpy(), SETTINGS["trim_start"], SETTINGS["trim_end"])
    reference = fit_toneva(words, responses, stimuli, rows, neuroids, {"time_series": True, "toneva": SETTINGS})
    responses = responses.copy()
    responses[~kept] = np.nan
    responses[np.flatnonzero(kept)[3], 5] = np.nan
    result = fit_toneva(words, responses, stimuli, rows, neuroids, {"time_series": True, "toneva": SETTINGS})
    assert result.details["n_neuroids_dropped_nan"] == 1
    np.testing.assert_allclose(result.neuroids["r"], reference.neuroids["r"][:5], atol=1e-10)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_wordless_tr_zeroes_its_run_as_the_original_and_is_reported(caplog):
    words, responses, stimuli, rows, neuroids, word_tr, runs = simulate(seed=3)
    silent = 20  # a kept TR of run 1: its words are dropped, so its TR average is NaN
    keep = word_tr != silent
    words, word_tr, stimuli = words[keep], word_tr[keep], stimuli[keep].reset_index(drop=True)
    result = fit_toneva(words, responses, stimuli, rows, neuroids, {"time_series": True, "toneva": SETTINGS})
    expected = naive_toneva(words, responses, word_tr, runs, SETTINGS)
    np.testing.assert_allclose(result.neuroids[[f"r_fold_{k}" for k in range(4)]].to_numpy().T, expected, atol=1e-8)
    assert result.details["n_kept_trs_wordless_delay"] == 4  # TRs 21..24 take its delayed copies
    assert "4 kept TRs take a delayed copy of a TR without words" in caplog.text


def test_helpers():
    np.testing.assert_array_equal(contiguous_folds(10, 4), [0, 0, 1, 1, 2, 2, 3, 3, 3, 3])
    delayed = delay_features(np.arange(4.0)[:, None] + 1, [1, 2])
    np.testing.assert_array_equal(delayed, [[0, 0], [1, 0], [2, 1], [3, 2]])
    mask = kept_tr_mask(np.array([1] * 5 + [2] * 5), 1, 2)
    np.testing.assert_array_equal(np.flatnonzero(mask), [1, 2, 6, 7])


def test_unknown_option_is_refused():
    from brainalign.errors import ConfigError

    words, responses, stimuli, rows, neuroids, *_ = simulate()
    with pytest.raises(ConfigError, match="toneva"):
        fit_toneva(words, responses, stimuli, rows, neuroids, {"time_series": True, "toneva": {"delay": [1]}})


def embedding_like(n_samples, n_features, seed):
    """Rows with a decaying spectrum and a few dominant directions, as language-model layers have."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.arange(1, n_features + 1) ** 0.7
    scale[:3] *= 20
    return (
        rng.standard_normal((n_samples, 16)) @ rng.standard_normal((16, n_features)) * 0.1
        + rng.standard_normal((n_samples, n_features)) * scale
    )


@pytest.mark.parametrize(("n_samples", "n_features"), [(300, 400), (400, 300), (50, 12)])
def test_principal_axes_equal_the_full_svd_pca(n_samples, n_features):
    """Wider, taller and small (dense path) inputs: scikit-learn's full-SVD PCA, signs included."""
    samples = embedding_like(n_samples, n_features, seed=n_features)
    reference = PCA(n_components=10, svd_solver="full").fit(samples)
    mean, axes = principal_axes(samples, 10)
    np.testing.assert_allclose(mean, reference.mean_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(axes, reference.components_, rtol=0, atol=1e-9)
    np.testing.assert_allclose((samples - mean) @ axes.T, reference.transform(samples), rtol=0, atol=1e-9)


def test_principal_axes_fall_back_to_a_dense_decomposition(monkeypatch):
    samples = embedding_like(300, 400, seed=4)
    expected = principal_axes(samples, 10)

    def no_convergence(*args, **kwargs):
        raise toneva.ArpackNoConvergence("no convergence", None, None)

    monkeypatch.setattr(toneva, "eigsh", no_convergence)
    mean, axes = principal_axes(samples, 10)
    np.testing.assert_allclose(axes, expected[1], rtol=0, atol=1e-9)


def test_axes_beyond_the_rank_are_zero():
    rank_three = embedding_like(40, 3, seed=5) @ np.random.default_rng(6).standard_normal((3, 60))
    mean, axes = principal_axes(rank_three, 5)
    reference = PCA(n_components=3, svd_solver="full").fit(rank_three)
    np.testing.assert_allclose(axes[:3], reference.components_, rtol=0, atol=1e-9)
    assert np.all(axes[3:] == 0)
