"""File contracts: atomic writes, truncated files, stale metadata, id alignment."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from brainalign import io
from brainalign.errors import DataError, StaleFileError


def stimuli_frame(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stimulus_id": [f"s{i}" for i in range(n)],
            "context_group": ["g0"] * (n // 2) + ["g1"] * (n - n // 2),
            "position": list(range(n // 2)) + list(range(n - n // 2)),
            "text": [f"word{i}" for i in range(n)],
            "cv_group": ["g0"] * (n // 2) + ["g1"] * (n - n // 2),
            "partition": "all",
        }
    )


def test_stimuli_round_trip_and_checksum(tmp_path):
    path = tmp_path / "stimuli.parquet"
    checksum = io.write_stimuli(path, stimuli_frame(), {"dataset": "x"})
    assert io.stimuli_checksum(path) == checksum
    pd.testing.assert_frame_equal(io.read_stimuli(path), io.validate_stimuli(stimuli_frame(), "x"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns="cv_group"), "lacks columns"),
        (lambda f: f.assign(stimulus_id="same"), "duplicated stimulus_id"),
        (lambda f: f.assign(text=""), "empty text"),
        (lambda f: f.iloc[:0], "empty"),
        (lambda f: f.assign(position=0), "positions repeat"),
    ],
)
def test_bad_stimuli_are_refused_and_nothing_is_written(tmp_path, edit, message):
    path = tmp_path / "stimuli.parquet"
    with pytest.raises(DataError, match=message):
        io.write_stimuli(path, edit(stimuli_frame()), {})
    assert list(tmp_path.iterdir()) == []


def test_activation_writer_streams_layers_and_reads_one(tmp_path):
    path = tmp_path / "acts.parquet"
    rng = np.random.default_rng(0)
    layers = {layer: rng.standard_normal((4, 3)).astype(np.float32) for layer in (1, 2, 3)}
    with io.ActivationWriter(path, ["a", "b", "c", "d"], 3, {"model": "m"}) as writer:
        for layer, matrix in layers.items():
            writer.write_layer(layer, matrix)
            assert not path.exists()  # only the temporary file exists until close
    assert io.activation_layers(path) == [1, 2, 3]
    ids, values = io.read_activations(path, 2, expected={"model": "m"})
    assert list(ids) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(values, layers[2])
    with pytest.raises(StaleFileError, match="model: file has 'm', config wants 'other'"):
        io.read_activations(path, 2, expected={"model": "other"})


def test_failed_activation_writer_leaves_no_file(tmp_path):
    path = tmp_path / "acts.parquet"
    with pytest.raises(DataError, match="non-finite"):
        with io.ActivationWriter(path, ["a"], 2, {}) as writer:
            writer.write_layer(1, np.array([[np.nan, 0.0]], dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


def test_truncated_parquet_is_refused_with_a_fix(tmp_path):
    path = tmp_path / "table.parquet"
    io.write_table(path, pd.DataFrame({"a": np.arange(1000)}), {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated.*delete it and rerun"):
        io.read_table(path)


def test_responses_round_trip_with_rows(tmp_path):
    path = tmp_path / "responses.parquet"
    matrix = np.arange(6, dtype=np.float32).reshape(3, 2)
    neuroids = pd.DataFrame({"neuroid_id": ["n1", "n2"], "subject": ["s", "s"], "roi": ["r", "r"]})
    io.write_responses(path, ["a", "b", "c"], matrix, neuroids, {}, rows=pd.DataFrame({"run": [1, 1, 2]}))
    ids, values, table, rows = io.read_responses(path)
    assert list(ids) == ["a", "b", "c"]
    np.testing.assert_array_equal(values, matrix)
    assert list(table["neuroid_id"]) == ["n1", "n2"]
    assert list(rows["run"]) == [1, 1, 2]


def test_align_rows_matches_by_id_and_refuses_missing():
    positions = io.align_rows(pd.Index(["b", "a"]), pd.Index(["a", "b", "c"]), "responses", "src")
    assert list(positions) == [1, 0]
    with pytest.raises(DataError, match="1 stimulus ids are missing from the responses"):
        io.align_rows(pd.Index(["a", "z"]), pd.Index(["a", "b"]), "responses", "src")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(DataError, match="not writable"):
        io.write_text(folder / "x.txt", "x")


def test_uncreatable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot create the output folder"):
        io.write_text(blocker / "sub" / "x.txt", "x")


def test_brainscore_scalar_score_file_is_read(tmp_path):
    import xarray as xr

    from brainalign.datasets.netcdf import read_score

    path = tmp_path / "ceiling_Pereira2018_243sentences-linear.nc"
    score = xr.DataArray(0.35, attrs={"identifier": "Pereira2018.243sentences-linear", "error_low": 0.33})
    score.to_netcdf(path)  # unnamed, as Brain-Score's write_netcdf stores a Score
    assert read_score(path) == 0.35
    aggregated = tmp_path / "aggregated.nc"
    xr.DataArray([0.4, 0.02], coords={"aggregation": ["center", "error"]}, dims=["aggregation"], name="data").to_netcdf(
        aggregated
    )
    assert read_score(aggregated) == 0.4


def test_per_neuroid_score_file_is_refused_as_a_ceiling(tmp_path):
    import xarray as xr

    from brainalign.datasets.netcdf import read_score
    from brainalign.errors import DataError

    path = tmp_path / "ceiling_raw_Pereira2018_243sentences-linear.nc"
    xr.DataArray([0.3, 0.4], dims=["neuroid"]).to_netcdf(path)
    with pytest.raises(DataError, match=r"per-neuroid raw_ file"):
        read_score(path)
    (tmp_path / "broken.nc").write_bytes(b"not netcdf")
    with pytest.raises(DataError, match=r"(?s)broken\.nc is not a readable netCDF score.*download it again"):
        read_score(tmp_path / "broken.nc")
