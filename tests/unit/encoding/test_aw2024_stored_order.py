"""aw2024 splits follow the assembly's stored order, and the fit follows the paper's arithmetic.

The references are naive reimplementations of Brain-Score's ``linear_pearsonr`` on the
assembly as stored: ``data.sel(experiment=...)``, ``dropna('neuroid')``, ``ShuffleSplit``
over the stored presentations, ``LinearRegression`` on the training rows sorted by
``stimulus_id``, scipy's ``pearsonr`` per neuroid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import pearsonr
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import ShuffleSplit

from brainalign.datasets import pereira2018
from brainalign.encoding.aw2024 import fit_aw2024, partition_splits, resolve_aw2024_options
from brainalign.encoding.cli import minimal_tables
from brainalign.errors import ConfigError

N_FEATURES = 12
SPLIT = {"n_splits": 10, "train_size": 0.9, "random_state": 1}


def shuffled_assembly(path, seed: int = 0) -> xr.DataArray:
    """A two-experiment Pereira-like assembly whose stored order interleaves passages."""
    rng = np.random.default_rng(seed)
    rows = []
    for experiment, n_passages in (("243sentences", 10), ("384sentences", 12)):
        for passage in range(n_passages):
            for sentence in range(4):
                label = f"topic{passage:02d}"
                rows.append(
                    (
                        f"{experiment} {label} sentence {sentence}.",
                        f"{experiment}.{passage}.{sentence}",
                        experiment,
                        passage,
                        label,
                        label,
                    )
                )
    presentations = pd.DataFrame(
        rows, columns=["sentence", "stimulus_id", "experiment", "passage_index", "passage_label", "passage_category"]
    )
    presentations = presentations.iloc[rng.permutation(len(presentations))].reset_index(drop=True)
    subjects = np.repeat(["s1", "s2", "s3"], 4)
    values = rng.standard_normal((len(presentations), len(subjects)))
    values[(presentations["experiment"] == "243sentences").to_numpy()[:, None] & (subjects == "s1")[None, :]] = np.nan
    array = xr.DataArray(
        values,
        dims=("presentation", "neuroid"),
        coords={
            **{c: ("presentation", presentations[c].to_numpy()) for c in presentations},
            "subject": ("neuroid", subjects),
            "neuroid_id": ("neuroid", [f"n{i}" for i in range(len(subjects))]),
        },
        name="data",
    )
    array.to_netcdf(path, engine="h5netcdf")
    return array


def features_by_id(stimulus_ids, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {stimulus_id: rng.standard_normal(N_FEATURES) for stimulus_id in sorted(stimulus_ids)}


def brainscore_reference(array: xr.DataArray, features: dict[str, np.ndarray]) -> dict:
    """Per experiment: the train/test id sets and the r per (split, neuroid) on stored order."""
    reference = {}
    for experiment in ("243sentences", "384sentences"):
        data = array.isel(presentation=(array["experiment"] == experiment).values).dropna("neuroid")
        ids = data["stimulus_id"].values.astype(str)
        splitter = ShuffleSplit(n_splits=10, train_size=0.9, test_size=None, random_state=1)
        id_sets, r = [], []
        for train, test in splitter.split(np.zeros(len(ids))):
            train, test = train[np.argsort(ids[train])], test[np.argsort(ids[test])]
            source = np.stack([features[i] for i in ids[train]]), np.stack([features[i] for i in ids[test]])
            predicted = LinearRegression().fit(source[0], data.values[train]).predict(source[1])
            r.append([pearsonr(predicted[:, k], data.values[test, k])[0] for k in range(data.sizes["neuroid"])])
            id_sets.append((set(ids[train]), set(ids[test])))
        reference[experiment] = {"id_sets": id_sets, "r": np.array(r), "neuroids": list(data["neuroid_id"].values)}
    return reference


@pytest.fixture
def stored_and_read(tmp_path):
    array = shuffled_assembly(tmp_path / "assy.nc")
    data = pereira2018.read_assembly(tmp_path / "assy.nc", strict=False)
    return array, data


def test_reader_keeps_the_stored_position_within_each_experiment(stored_and_read):
    array, data = stored_and_read
    for experiment, table in data.stimuli.groupby("experiment"):
        stored_ids = array["stimulus_id"].values[array["experiment"].values == experiment]
        assert list(stored_ids[table["assembly_row"].to_numpy()]) == list(table["stimulus_id"])
    # Reading order differs from stored order, so the test below means something.
    assert not data.stimuli.groupby("experiment")["assembly_row"].apply(lambda s: s.is_monotonic_increasing).all()


def test_split_sets_equal_shufflesplit_over_the_stored_order(stored_and_read):
    array, data = stored_and_read
    reference = brainscore_reference(array, features_by_id(data.stimuli["stimulus_id"]))
    options = resolve_aw2024_options(SPLIT)
    for experiment, expected in reference.items():
        rows = np.flatnonzero(data.stimuli["partition"] == experiment)
        ids = data.stimuli["stimulus_id"].to_numpy()[rows]
        ours = [(set(ids[train]), set(ids[test])) for train, test in partition_splits(data.stimuli, rows, options)]
        assert ours == expected["id_sets"]


def test_scores_equal_a_fit_in_stored_order(stored_and_read):
    array, data = stored_and_read
    by_id = features_by_id(data.stimuli["stimulus_id"])
    reference = brainscore_reference(array, by_id)
    features = np.stack([by_id[i] for i in data.stimuli["stimulus_id"]])
    rows = pd.DataFrame({"stimulus_id": data.stimuli["stimulus_id"]})
    result = fit_aw2024(features, data.matrix, data.stimuli, rows, data.neuroids, {"fit_precision": "float64"})
    folds = [f"r_fold_{k}" for k in range(10)]
    for experiment, expected in reference.items():
        table = result.neuroids[result.neuroids["partition"] == experiment].set_index("neuroid_id")
        np.testing.assert_allclose(table.loc[expected["neuroids"], folds].to_numpy().T, expected["r"], atol=1e-9)
    assert result.details["split_order"] == "stored"


def test_tables_without_stored_order_keep_their_given_order():
    stimuli = minimal_tables(30, 2, None)[0]
    splits = partition_splits(stimuli, np.arange(30), resolve_aw2024_options(SPLIT))
    expected = ShuffleSplit(n_splits=10, train_size=0.9, test_size=None, random_state=1).split(np.zeros(30))
    for (train, test), (train_ref, test_ref) in zip(splits, expected):
        assert set(train) == set(train_ref) and set(test) == set(test_ref)


# --------------------------------------------------------------------------- fit precision
def wide_case(seed: int = 3):
    """More features than training rows, offset features (where float32 rounding shows)."""
    rng = np.random.default_rng(seed)
    features = (rng.standard_normal((60, 150)) + 3.0).astype(np.float32)
    weights = rng.standard_normal((150, 8)) / np.sqrt(150)
    responses = features.astype(np.float64) @ weights + 0.5 * rng.standard_normal((60, 8))
    return features, responses


def sklearn_split_r(features: np.ndarray, responses: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """r per (split, neuroid) of LinearRegression on ``features`` in their own dtype."""
    r = []
    for train, test in ShuffleSplit(n_splits=10, train_size=0.9, test_size=None, random_state=1).split(features):
        train, test = train[np.argsort(ids[train])], test[np.argsort(ids[test])]
        predicted = LinearRegression().fit(features[train], responses[train]).predict(features[test])
        r.append(
            [pearsonr(predicted[:, k].astype(np.float64), responses[test, k])[0] for k in range(responses.shape[1])]
        )
    return np.array(r)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_fit_precision_reproduces_linear_regression_in_that_dtype(precision):
    features, responses = wide_case()
    stimuli, rows, neuroids = minimal_tables(60, 8, None)
    expected = sklearn_split_r(features.astype(precision), responses, stimuli["stimulus_id"].to_numpy())
    result = fit_aw2024(features, responses, stimuli, rows, neuroids, {"fit_precision": precision})
    ours = result.neuroids[[f"r_fold_{k}" for k in range(10)]].to_numpy().T
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    assert result.details["fit_precision"] == precision


def test_float32_and_float64_fits_differ_on_wide_features():
    """The option matters: the two arithmetics disagree beyond the tolerance above."""
    features, responses = wide_case()
    ids = minimal_tables(60, 8, None)[0]["stimulus_id"].to_numpy()
    difference = np.abs(
        sklearn_split_r(features, responses, ids) - sklearn_split_r(features.astype(np.float64), responses, ids)
    )
    assert difference.max() > 1e-4


def test_unknown_fit_precision_is_refused():
    with pytest.raises(ConfigError, match="fit_precision.*float32"):
        resolve_aw2024_options({"fit_precision": "float16"})
