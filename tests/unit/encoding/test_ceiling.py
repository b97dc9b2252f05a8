"""Subject-pool extrapolation ceiling: exact pieces against references, planted noise level recovered."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit

from brainalign.encoding import ceiling
from brainalign.encoding.aw2024 import (
    kernel_prediction_operator,
    ols_prediction_operator,
    partition_splits,
    resolve_aw2024_options,
)
from brainalign.encoding.ceiling import (
    bootstrap_means,
    centre_gram,
    centred_pseudoinverse,
    exponential_saturation,
    extrapolated_ceiling,
    fit_saturation,
    held_out_predictor,
    holdout_draws,
    holdout_scores,
    subject_subsets,
)
from brainalign.errors import ConfigError
from brainalign.stats import pearson_columns

FAST = {"ceiling": {"n_subsamples": 3, "n_holdouts": 2, "n_bootstraps": 30}, "n_splits": 3}


def simulate_subjects(n_stimuli=100, n_subjects=6, n_voxels=8, n_latent=3, noise=1.0, seed=0):
    """Every voxel = unit-variance shared signal + noise: the true ceiling is 1/sqrt(1 + noise^2)."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n_stimuli, n_latent))
    weights = rng.standard_normal((n_latent, n_subjects * n_voxels))
    signal = latent @ weights
    signal = (signal - signal.mean(0)) / signal.std(0)
    responses = signal + noise * rng.standard_normal(signal.shape)
    stimuli = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(n_stimuli)], "partition": "all"})
    neuroids = pd.DataFrame(
        {
            "neuroid_id": [f"n{i}" for i in range(signal.shape[1])],
            "subject": np.repeat([f"S{k}" for k in range(n_subjects)], n_voxels),
        }
    )
    return responses, stimuli, pd.DataFrame({"stimulus_id": stimuli["stimulus_id"]}), neuroids


@pytest.mark.parametrize("n_features", [30, 200])
def test_kernel_operator_equals_svd_operator(n_features):
    rng = np.random.default_rng(n_features)
    features = rng.standard_normal((90, n_features)) + 2.0
    train, test = np.arange(80), np.arange(80, 90)
    expected = ols_prediction_operator(features[train], features[test])
    ours, ratio, n_kept = kernel_prediction_operator(features @ features.T, train, test)
    np.testing.assert_allclose(ours, expected, atol=1e-8)
    assert n_kept == min(n_features, 79) and 0 < ratio <= 1


def test_saturation_fit_matches_curve_fit():
    x = np.arange(2, 9, dtype=float)
    rng = np.random.default_rng(0)
    curves, expected = [], []
    for v0, tau in [(0.4, 2.0), (0.7, 5.0), (0.2, 0.8)]:
        y = exponential_saturation(x, v0, tau) + 0.003 * rng.standard_normal(len(x))
        curves.append(y)
        expected.append(curve_fit(exponential_saturation, x, y, bounds=([0, -np.inf], [1, np.inf]))[0])
    v0, tau = fit_saturation(x, np.array(curves))
    np.testing.assert_allclose(v0, np.array(expected)[:, 0], atol=1e-4)
    np.testing.assert_allclose(tau, np.array(expected)[:, 1], rtol=1e-3)


def test_saturation_fit_ignores_nan_and_needs_two_points():
    x = np.array([2.0, 3.0, 4.0])
    v0, _ = fit_saturation(x, np.array([[np.nan, np.nan, 0.3], [0.1, np.nan, 0.2]]))
    assert np.isnan(v0[0]) and np.isfinite(v0[1])


def golden_section_fit(x, y, n_grid=200, n_refine=40):
    """The curve fit as first written: every row's loss on the log-tau grid, then golden-section
    search between the best grid point's neighbours."""
    valid = np.isfinite(y)
    values = np.where(valid, y, 0.0)

    def profile(log_tau):
        basis = (1 - np.exp(-x[None, :] / np.exp(log_tau)[:, None])) * valid
        with np.errstate(invalid="ignore", divide="ignore"):
            v0 = np.nan_to_num(np.clip((basis * values).sum(1) / (basis**2).sum(1), 0, 1))
        return v0, (((values - v0[:, None] * basis) * valid) ** 2).sum(1)

    grid = np.linspace(np.log(1e-3), np.log(1e4), n_grid)
    best = np.argmin(np.stack([profile(np.full(len(y), g))[1] for g in grid], axis=1), axis=1)
    low, high = grid[np.maximum(best - 1, 0)], grid[np.minimum(best + 1, n_grid - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(n_refine):
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        go_left = profile(left)[1] <= profile(right)[1]
        high, low = np.where(go_left, right, high), np.where(go_left, low, left)
    log_tau = (low + high) / 2
    return np.where(valid.sum(1) < 2, np.nan, profile(log_tau)[0]), np.exp(log_tau)


def naive_ceilings(responses, subject_of, splits, settings):
    """Brain-Score's extrapolation as a plain loop: every drawn (pool, subject) pair fit split by
    split with its own OLS operator, bootstrap means by indexing, the golden-section fit."""
    subjects = sorted(set(subject_of))
    subset_rng, holdout_rng = np.random.RandomState(settings["seed"]), np.random.RandomState(settings["seed"])
    collected = {size: {} for size in range(2, len(subjects) + 1)}
    for size in collected:
        for subset in subject_subsets(subjects, size, settings["n_subsamples"], subset_rng):
            members = sorted(set(subset))
            for subject in sorted(set(holdout_rng.choice(np.array(members, dtype=object), settings["n_holdouts"]))):
                pool = responses[:, np.isin(subject_of, [s for s in members if s != subject])]
                target = responses[:, subject_of == subject]
                scores = []
                for train, test in splits:
                    operator = kernel_prediction_operator(pool @ pool.T, train, test)[0]
                    mean = target[train].mean(axis=0)
                    scores.append(pearson_columns(operator @ (target[train] - mean) + mean, target[test]))
                collected[size].setdefault(subject, []).append(np.array(scores))
    ceilings = {}
    for subject in subjects:
        # Brain-Score's extrapolate_neuroid: a new RandomState per neuroid (the same draws for
        # every neuroid of a subject), bootstraps outside, pool sizes inside.
        rng = np.random.RandomState(settings["seed"])
        sizes = [size for size in collected if subject in collected[size]]
        values = {size: np.concatenate(collected[size][subject]) for size in sizes}
        curves = np.full((settings["n_bootstraps"], int((subject_of == subject).sum()), len(collected)), np.nan)
        for bootstrap in range(settings["n_bootstraps"]):
            for size in sizes:
                draws = rng.choice(len(values[size]), size=len(values[size]), replace=True)
                curves[bootstrap, :, list(collected).index(size)] = values[size][draws].mean(axis=0)
        v0 = golden_section_fit(np.array(list(collected), dtype=float), curves.reshape(-1, len(collected)))[0]
        ceilings[subject] = np.nanmedian(v0.reshape(settings["n_bootstraps"], -1), axis=0)
    return np.concatenate([ceilings[s] for s in subjects])


def test_saturation_fit_matches_golden_section_search():
    rng = np.random.default_rng(4)
    x = np.arange(2, 9, dtype=float)
    v0, tau = rng.uniform(0, 1.2, 3000), np.exp(rng.uniform(-3, 5, 3000))
    y = exponential_saturation(x, v0[:, None], tau[:, None]) + rng.uniform(0, 0.1, (3000, 1)) * rng.standard_normal(
        (3000, len(x))
    )
    y[rng.random(y.shape) < 0.05] = np.nan
    y[:5] = [np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, 0.2]  # fewer than 2 points
    expected, expected_tau = golden_section_fit(x, y)
    ours, ours_tau = fit_saturation(x, y)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    # Where the loss is nearly flat in tau, golden-section search stops up to ~1e-7 away.
    np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=0)
    assert np.nanmedian(np.abs(ours - expected)) < 1e-10

    def loss(v0, tau):
        return np.nansum((y[5:] - exponential_saturation(x, v0[5:, None], tau[5:, None])) ** 2, axis=1)

    # Never a worse fit, up to rounding of the loss.
    assert np.all(loss(ours, ours_tau) <= loss(expected, expected_tau) + 1e-12 * np.nansum(y[5:] ** 2, axis=1))


def test_bootstrap_means_equal_indexed_means():
    rng = np.random.default_rng(5)
    values = rng.standard_normal((30, 7))
    values[3, 2] = np.nan
    draws = rng.integers(0, 30, size=(50, 30))
    expected = values[draws].mean(axis=1)
    ours = bootstrap_means(values, draws)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    assert np.isnan(ours[:, 2]).any() and not np.isnan(ours[:, 2]).all()
    np.testing.assert_allclose(ours, expected, atol=1e-12, rtol=0)


def test_one_pseudoinverse_gives_every_splits_ols_predictions():
    rng = np.random.default_rng(6)
    features = rng.standard_normal((50, 120)) + 3.0
    target = rng.standard_normal((50, 4)) + 1.0
    splits = partition_splits(
        pd.DataFrame({"stimulus_id": [f"s{i:02d}" for i in range(50)]}),
        np.arange(50),
        {"n_splits": 4, "train_size": 0.9, "random_state": 1},
    )
    gram = features @ features.T
    predictions = held_out_predictor(centred_pseudoinverse(centre_gram(gram)), splits)(target)
    for (train, test), ours in zip(splits, predictions):
        expected = ols_prediction_operator(features[train], features[test])
        mean = target[train].mean(axis=0)
        np.testing.assert_allclose(ours, expected @ (target[train] - mean) + mean, atol=1e-10, rtol=0)


def test_each_drawn_pool_and_subject_is_scored_once_in_draw_order():
    settings = resolve_aw2024_options({})["ceiling"]
    calls = []

    def score(others, subject):
        calls.append((tuple(others), subject))
        return np.array([[len(calls)]])

    collected = holdout_scores(list("abcde"), settings, score)
    assert len(calls) == len(set(calls)) and len(calls) < sum(
        len(v) for per in collected.values() for v in per.values()
    )
    subset_rng, holdout_rng = np.random.RandomState(0), np.random.RandomState(0)
    for size in range(2, 6):
        expected = {}
        for subset in subject_subsets(list("abcde"), size, 10, subset_rng):
            members = sorted(set(subset))
            for subject in sorted(set(holdout_rng.choice(np.array(members, dtype=object), 5))):
                expected.setdefault(subject, []).append(
                    calls.index((tuple(m for m in members if m != subject), subject))
                )
        assert {s: [int(a[0, 0]) - 1 for a in v] for s, v in collected[size].items()} == expected


def test_scoring_the_pools_reports_its_progress(caplog):
    settings = resolve_aw2024_options({})["ceiling"]
    with caplog.at_level("INFO", logger="brainalign.encoding.ceiling"):
        holdout_scores(list("abcde"), settings, lambda others, subject: np.zeros((1, 1)), pools="all")
    progress = [r.getMessage() for r in caplog.records if "pairs scored" in r.getMessage()]
    assert 10 <= len(progress) <= 11 and progress[-1].startswith("ceiling: 75 of 75 ")


def test_every_subset_pool_holds_out_each_member():
    draws = holdout_draws(list("abcd"), resolve_aw2024_options({})["ceiling"], pools="all")
    expected = [
        (size, tuple(m for m in pool if m != held_out), held_out)
        for size in (2, 3, 4)
        for pool in itertools.combinations("abcd", size)
        for held_out in pool
    ]
    assert draws == expected and len(draws) == 6 * 2 + 4 * 3 + 1 * 4
    with pytest.raises(ConfigError, match="ceiling_pools"):
        holdout_draws(list("abcd"), resolve_aw2024_options({})["ceiling"], pools="every")


def test_ceiling_equals_the_plain_loop(monkeypatch):
    # 60 sentences; subject S3 has 20 voxels, the others 70: S3 alone has fewer features than
    # sentences (the per-split route), every other pool more (the one-pseudo-inverse route).
    responses, stimuli, rows, neuroids = simulate_subjects(n_stimuli=60, n_subjects=4, n_voxels=70, noise=0.8, seed=7)
    kept = (neuroids["subject"] != "S3").to_numpy() | (np.arange(len(neuroids)) % 70 < 20)
    responses, neuroids = responses[:, kept], neuroids[kept].reset_index(drop=True)
    routes = []
    for route in ("held_out_predictor", "split_operator_predictor"):
        original = getattr(ceiling, route)
        monkeypatch.setattr(
            ceiling, route, lambda *a, route=route, original=original: routes.append(route) or original(*a)
        )
    table, _ = extrapolated_ceiling(responses, stimuli, rows, neuroids, FAST)
    assert set(routes) == {"held_out_predictor", "split_operator_predictor"}
    settings = resolve_aw2024_options(FAST)["ceiling"]
    splits = partition_splits(stimuli, np.arange(60), {"n_splits": 3, "train_size": 0.9, "random_state": 1})
    expected = naive_ceilings(responses, neuroids["subject"].to_numpy(), splits, settings)
    # Golden-section search stops up to ~1e-7 from the optimum where the loss is flat in tau
    # (test_saturation_fit_matches_golden_section_search).
    np.testing.assert_allclose(table["ceiling"], expected, atol=1e-6, rtol=0)
    assert np.median(np.abs(table["ceiling"] - expected)) < 1e-10


def test_subsets_are_distinct_and_capped():
    rng = np.random.RandomState(0)
    draws = subject_subsets(["a", "b"], 2, 10, rng)
    assert sorted(draws) == [("a", "b"), ("b", "a")]
    draws = subject_subsets(list("abcdef"), 3, 10, rng)
    assert len(set(draws)) == 10 and all(len(set(d)) == 3 for d in draws)


def test_recovers_planted_noise_level():
    # Many stimuli per pooled feature, so that OLS on the pool is not dominated by overfitting.
    shape = {"n_stimuli": 200, "n_subjects": 5, "n_voxels": 4, "n_latent": 2}
    low_noise = extrapolated_ceiling(*simulate_subjects(noise=0.6, seed=1, **shape), FAST)[1]["ceiling"]
    high_noise = extrapolated_ceiling(*simulate_subjects(noise=1.5, seed=1, **shape), FAST)[1]["ceiling"]
    assert low_noise == pytest.approx(1 / np.sqrt(1 + 0.6**2), abs=0.1)
    assert high_noise == pytest.approx(1 / np.sqrt(1 + 1.5**2), abs=0.1)


def test_table_and_summary():
    responses, stimuli, rows, neuroids = simulate_subjects(n_stimuli=60, n_subjects=3, seed=2)
    responses[0, 0] = np.nan
    table, summary = extrapolated_ceiling(responses, stimuli, rows, neuroids, FAST)
    assert len(table) == len(neuroids) - 1 and "n0" not in set(table["neuroid_id"])
    assert summary["n_subjects"] == 3 and summary["method"] == "brainscore_extrapolation"
    assert summary["ceiling"] == pytest.approx(np.nanmedian(table["ceiling"]))


def test_time_series_ceiling_uses_kept_trs_and_outer_folds():
    responses, _, _, neuroids = simulate_subjects(n_stimuli=160, n_subjects=3, n_voxels=3, noise=0.5, seed=3)
    rows = pd.DataFrame({"stimulus_id": [f"tr{i}" for i in range(160)], "run": np.repeat([1, 2, 3, 4], 40)})
    responses[:4] = np.nan  # trimmed edge TRs may be missing
    options = {"time_series": True, "toneva": {"trim_start": 4, "trim_end": 3, "boundary_trs": 2}, **FAST}
    table, summary = extrapolated_ceiling(responses, pd.DataFrame(), rows, neuroids, options)
    assert len(table) == len(neuroids) and summary["partitions"]["all"]["n_subjects"] == 3
    assert 0.4 < summary["ceiling"] <= 1.0


def test_published_ceilings_are_read_per_partition(tmp_path):
    import xarray as xr

    from brainalign.encoding.ceiling import published_ceiling

    files = {}
    for partition, value in (("243sentences", 0.32), ("384sentences", 0.36)):
        files[partition] = tmp_path / f"ceiling_Pereira2018_{partition}-linear.nc"
        xr.DataArray(value).to_netcdf(files[partition])
    stimuli = pd.DataFrame({"partition": ["384sentences", "243sentences", "384sentences"]})
    table, summary = published_ceiling(stimuli, {k: str(v) for k, v in files.items()})
    assert table.to_dict(orient="list") == {"partition": ["243sentences", "384sentences"], "ceiling": [0.32, 0.36]}
    assert summary["ceiling"] == pytest.approx(0.34) and summary["method"] == "brainscore_published"
    assert summary["partitions"]["243sentences"] == {"ceiling": 0.32, "file": str(files["243sentences"])}
    with pytest.raises(ConfigError, match=r"also has \['384sentences'\].*published_ceilings: false"):
        published_ceiling(stimuli, {"243sentences": str(files["243sentences"])})


def test_the_ceiling_stage_reads_published_ceilings_instead_of_computing(tmp_path):
    import xarray as xr

    from brainalign import io
    from brainalign.encoding.pipeline import ceiling_value, compute_ceiling

    stimuli = pd.DataFrame(
        {
            "stimulus_id": ["a", "b"],
            "context_group": "g",
            "position": [0, 1],
            "text": ["x", "y"],
            "cv_group": "g",
            "partition": "all",
        }
    )
    io.write_stimuli(tmp_path / "stimuli.parquet", stimuli, {})
    neuroids = pd.DataFrame({"neuroid_id": ["n0"], "subject": ["s0"], "roi": ["lang"]})
    io.write_responses(tmp_path / "responses.parquet", stimuli["stimulus_id"], np.zeros((2, 1)), neuroids, {})
    xr.DataArray(0.3).to_netcdf(tmp_path / "ceiling.nc")
    compute_ceiling(
        "aw2024",
        tmp_path / "stimuli.parquet",
        tmp_path / "responses.parquet",
        {"published": {"all": str(tmp_path / "ceiling.nc")}},
        tmp_path / "out.parquet",
    )
    assert ceiling_value(tmp_path / "out.parquet") == (pytest.approx(0.3), "r")
