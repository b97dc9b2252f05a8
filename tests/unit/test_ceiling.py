"""Subject-pool extrapolation ceiling: exact pieces against references, planted noise level recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit

from brainalign.encoding.aw2024 import kernel_prediction_operator, ols_prediction_operator
from brainalign.encoding.ceiling import exponential_saturation, extrapolated_ceiling, fit_saturation, subject_subsets
from brainalign.errors import ConfigError

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
