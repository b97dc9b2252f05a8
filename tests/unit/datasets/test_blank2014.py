"""Blank2014 reader: Brain-Score netCDF layout, story order, one response row per TR chunk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from brainalign import io
from brainalign.datasets import blank2014
from brainalign.errors import DataError

SUBJECTS = ["090", "061", "085", "088", "098"]
FROIS = [
    "01_LH_PostTemp",
    "02_LH_AntTemp",
    "03_LH_IFG",
    "04_LH_IFGorb",
    "05_LH_MFG",
    "06_LH_AngG",
    "07_RH_PostTemp",
    "08_RH_AntTemp",
    "09_RH_IFG",
    "10_RH_IFGorb",
    "11_RH_MFG",
    "12_RH_AngG",
]


def write_assembly(path, values, presentations: pd.DataFrame, neuroids: pd.DataFrame) -> None:
    """Write an assembly as Brain-Score stores it: flattened coordinates, one ``data`` variable."""
    coords = {c: ("presentation", presentations[c].to_numpy()) for c in presentations}
    coords |= {c: ("neuroid", neuroids[c].to_numpy()) for c in neuroids}
    xr.DataArray(values, dims=("presentation", "neuroid"), coords=coords, name="data").to_netcdf(
        path, engine="h5netcdf"
    )


def story_chunks(chunks_per_story: dict[str, int], rng: np.random.Generator) -> pd.DataFrame:
    """TR chunks of each story (3 parts per sentence), rows shuffled as an unsorted assembly may be."""
    rows = []
    for story, count in chunks_per_story.items():
        for k in range(count):
            sentence, part = divmod(k, 3)
            text = "Once upon a " if k == 0 else f"{story} words {k} "
            rows.append((text, f"{story}.{sentence}.{part}", story, sentence, part, 2.0 * k))
    frame = pd.DataFrame(
        rows,
        columns=[
            "stimulus",
            "stimulus_id",
            "story",
            "sentence_number_in_story",
            "part_number_in_sentence",
            "timepoint_value",
        ],
    )
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def froi_neuroids(subjects: list[str], frois: list[str]) -> pd.DataFrame:
    subject = np.repeat(subjects, len(frois))
    froi = np.tile(frois, len(subjects))
    return pd.DataFrame(
        {"subject_id": subject, "fROI_area": froi, "neuroid_id": [f"{s}.{f}" for s, f in zip(subject, froi)]}
    )


def block_for(path, strict: bool = True) -> dict:
    return {"reader": "blank2014", "files": {"assembly": str(path)}, "options": {"strict_counts": strict}}


@pytest.fixture
def small_assembly(tmp_path):
    presentations = story_chunks({"Boar": 7, "Aqua": 7}, np.random.default_rng(0))
    neuroids = froi_neuroids(SUBJECTS[:2], FROIS[:3])
    values = np.arange(len(presentations))[:, None] * 100.0 + np.arange(len(neuroids))[None, :]
    path = tmp_path / "assy.nc"
    write_assembly(path, values, presentations, neuroids)
    return path, presentations, neuroids, values


def test_published_shape_passes_strict_checks(tmp_path):
    counts = dict.fromkeys(blank2014.EXPECTED_STORIES, 1) | {"Boar": 1317 - 7}
    presentations = story_chunks(counts, np.random.default_rng(1))
    neuroids = froi_neuroids(SUBJECTS, FROIS)
    path = tmp_path / "assy_Blank2014_fROI.nc"
    write_assembly(path, np.ones((len(presentations), 60)), presentations, neuroids)
    data = blank2014.read_assembly(path)
    assert len(data.stimuli) == 1317 and data.neuroids["subject"].nunique() == 5 and data.matrix.shape == (1317, 60)
    write_assembly(path, np.ones((len(presentations), 59)), presentations, neuroids.iloc[:59])
    with pytest.raises(DataError, match="found 59 neuroids, expected 60"):
        blank2014.read_assembly(path)


def test_stimuli_follow_story_order_and_point_to_their_tr(small_assembly, tmp_path):
    path, presentations, neuroids, values = small_assembly
    stimuli_path, responses_path = tmp_path / "stimuli.parquet", tmp_path / "responses.parquet"
    blank2014.prepare_stimuli(block_for(path, strict=False), stimuli_path)
    stimuli = io.read_stimuli(stimuli_path)
    # Stories in sorted order (as Brain-Score reads them); sentence, then part, within a story.
    expected = presentations.sort_values(["story", "sentence_number_in_story", "part_number_in_sentence"])
    assert stimuli["stimulus_id"].tolist() == expected["stimulus_id"].tolist()
    assert stimuli["text"].tolist() == expected["stimulus"].tolist()  # verbatim, trailing spaces kept
    assert stimuli["position"].tolist() == [*range(7), *range(7)]
    assert (stimuli["context_group"] == stimuli["story"]).all() and (stimuli["cv_group"] == stimuli["story"]).all()
    assert (stimuli["response_id"] == stimuli["stimulus_id"]).all() and set(stimuli["partition"]) == {"all"}
    # The stored order survives for the paper's splits.
    assert presentations["stimulus_id"].to_numpy()[stimuli["assembly_row"]].tolist() == stimuli["stimulus_id"].tolist()

    blank2014.prepare_responses(block_for(path, strict=False), stimuli_path, responses_path)
    ids, matrix, table, rows = io.read_responses(responses_path)
    assert list(ids) == stimuli["response_id"].tolist()
    np.testing.assert_array_equal(matrix, values[pd.Index(presentations["stimulus_id"]).get_indexer(ids)])
    assert (
        table["roi"].tolist() == neuroids["fROI_area"].tolist()
        and table["subject"].tolist() == neuroids["subject_id"].tolist()
    )
    assert rows["run"].tolist() == stimuli["story"].tolist()


def test_strict_counts_refuse_a_subset(small_assembly, tmp_path):
    out = tmp_path / "stimuli.parquet"
    with pytest.raises(DataError, match="found 14 TR chunks, expected 1317"):
        blank2014.prepare_stimuli(block_for(small_assembly[0]), out)
    assert not out.exists()


def test_missing_coordinate_is_named(small_assembly, tmp_path):
    path, presentations, neuroids, values = small_assembly
    write_assembly(path, values, presentations, neuroids.drop(columns="fROI_area"))
    with pytest.raises(DataError, match=r"lacks the neuroid coordinate\(s\) \['fROI_area'\]"):
        blank2014.prepare_stimuli(block_for(path, strict=False), tmp_path / "stimuli.parquet")


def test_duplicated_stimulus_ids_are_refused(small_assembly, tmp_path):
    path, presentations, neuroids, values = small_assembly
    ids = presentations["stimulus_id"].copy()
    ids.iloc[1] = ids.iloc[0]
    write_assembly(path, values, presentations.assign(stimulus_id=ids), neuroids)
    with pytest.raises(DataError, match="duplicated stimulus_id"):
        blank2014.prepare_stimuli(block_for(path, strict=False), tmp_path / "stimuli.parquet")


def test_truncated_file_is_refused(small_assembly, tmp_path):
    path = small_assembly[0]
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(DataError, match="not a readable netCDF assembly"):
        blank2014.prepare_stimuli(block_for(path, strict=False), tmp_path / "stimuli.parquet")


def test_responses_from_other_stimuli_are_refused(small_assembly, tmp_path):
    path, presentations, neuroids, values = small_assembly
    stimuli_path, out = tmp_path / "stimuli.parquet", tmp_path / "responses.parquet"
    blank2014.prepare_stimuli(block_for(path, strict=False), stimuli_path)
    write_assembly(path, values[:-1], presentations.iloc[:-1], neuroids)
    with pytest.raises(DataError, match="do not match the stimuli"):
        blank2014.prepare_responses(block_for(path, strict=False), stimuli_path, out)
    assert not out.exists()
