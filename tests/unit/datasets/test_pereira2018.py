"""Pereira2018 reader: Brain-Score netCDF layout, per-experiment neuroids, reading order."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from brainalign import io
from brainalign.datasets import pereira2018
from brainalign.errors import DataError

PRESENTATION_COORDS = [
    "sentence",
    "sentence_num",
    "stimulus_id",
    "experiment",
    "story",
    "passage_index",
    "passage_label",
    "passage_category",
]


def write_assembly(path, values, presentations: pd.DataFrame, neuroids: pd.DataFrame) -> None:
    """Write an assembly as Brain-Score stores it: MultiIndex levels flattened, one ``data`` variable."""
    array = xr.DataArray(
        values,
        dims=("presentation", "neuroid"),
        coords={
            **{c: ("presentation", presentations[c].to_numpy()) for c in presentations},
            **{c: ("neuroid", neuroids[c].to_numpy()) for c in neuroids},
        },
        name="data",
    )
    array.to_netcdf(path, engine="h5netcdf")


def planted_values(stimulus_ids, neuroid_count: int) -> np.ndarray:
    """Values that identify their (stimulus, neuroid) cell, to check alignment by id."""
    codes = np.arange(len(stimulus_ids), dtype=np.float64)
    return codes[:, None] * 1000 + np.arange(neuroid_count)[None, :] % 1000


def neuroid_table(subjects: list[str], per_subject: int) -> pd.DataFrame:
    subject = np.repeat(subjects, per_subject)
    voxel = np.tile(np.arange(per_subject), len(subjects))
    return pd.DataFrame(
        {
            "subject": subject,
            "voxel_num": voxel,
            "neuroid_id": [f"{s}.{v}" for s, v in zip(subject, voxel)],
            "roi": "LH_AntTemp",
        }
    )


def block_for(path, strict: bool = True) -> dict:
    return {"reader": "pereira2018", "files": {"assembly": str(path)}, "options": {"strict_counts": strict}}


def small_presentations() -> pd.DataFrame:
    rows = []
    for experiment, labels in (
        ("243sentences", ["dreams", "dreams", "beekeeping"]),
        ("384sentences", ["Woman", "Woman", "Window"]),
    ):
        for i, label in enumerate(labels):
            rows.append(
                (
                    f"{experiment} sentence {i}.",
                    i,
                    f"{experiment}.{i}",
                    experiment,
                    f"{experiment}.{label}",
                    i // 2 + 1,
                    label,
                    label.lower(),
                )
            )
    return pd.DataFrame(rows, columns=PRESENTATION_COORDS)


@pytest.fixture
def small_assembly(tmp_path):
    presentations = small_presentations()
    neuroids = neuroid_table(["s1", "s2"], 3)
    values = planted_values(presentations["stimulus_id"], len(neuroids))
    values[presentations["experiment"] == "243sentences", :3] = np.nan  # s1 did only 384sentences
    path = tmp_path / "assy.nc"
    write_assembly(path, values, presentations, neuroids)
    return path, presentations, neuroids, values


# --------------------------------------------------------------------------- real stimulus set
def test_stimulus_set_has_the_published_structure(pereira_stimuli):
    stimuli = pd.read_csv(pereira_stimuli, index_col=0)
    assert len(stimuli) == 627 and stimuli["stimulus_id"].is_unique
    per_experiment = stimuli.groupby("experiment").agg(
        sentences=("sentence", "size"), passages=("passage_index", "nunique")
    )
    assert per_experiment.loc["384sentences"].tolist() == [384, 96]
    assert per_experiment.loc["243sentences"].tolist() == [243, 72]
    assert set(pereira2018.KNOWN_SENTENCES) <= set(stimuli["sentence"])


@pytest.fixture(scope="module")
def full_size_assembly(pereira_stimuli, tmp_path_factory):
    """The real 627 sentences with 13,553 planted neuroids whose NaN pattern matches Brain-Score's counts."""
    stimuli = pd.read_csv(pereira_stimuli, index_col=0)[PRESENTATION_COORDS]
    neuroids = neuroid_table([f"subj{i:02d}" for i in range(10)], 1356)[:13553]
    values = planted_values(stimuli["stimulus_id"], len(neuroids)).astype(np.float32)
    only_384 = np.arange(len(neuroids)) < 13553 - 8031  # 5,522 voxels of subjects without 243sentences
    only_243 = np.arange(len(neuroids)) >= 12155  # 1,398 voxels of subjects without 384sentences
    values[np.ix_(stimuli["experiment"].eq("243sentences").to_numpy(), only_384)] = np.nan
    values[np.ix_(stimuli["experiment"].eq("384sentences").to_numpy(), only_243)] = np.nan
    path = tmp_path_factory.mktemp("pereira") / "assy_Pereira2018_language.nc"
    write_assembly(path, values, stimuli, neuroids)
    return path, stimuli, values


def test_reader_agrees_with_brainscore_stimulus_set(full_size_assembly, tmp_path, caplog):
    path, reference, _ = full_size_assembly
    out = tmp_path / "stimuli.parquet"
    with caplog.at_level(logging.INFO, logger="brainalign.datasets.pereira2018"):
        pereira2018.prepare_stimuli(block_for(path), out)
    assert "dropped 5522 all-NaN neuroids" in caplog.text and "dropped 1398 all-NaN neuroids" in caplog.text
    stimuli = io.read_stimuli(out)
    assert len(stimuli) == 627
    assert stimuli.groupby("partition").size().to_dict() == {"243sentences": 243, "384sentences": 384}
    # cv groups are topics (24 per experiment); passages stay available for passage-grouped CV.
    assert stimuli.groupby("partition")["cv_group"].nunique().to_dict() == {"243sentences": 24, "384sentences": 24}
    assert stimuli.groupby("partition")["passage"].nunique().to_dict() == {"243sentences": 72, "384sentences": 96}
    # Brain-Score reads passage_label groups: 4-sentence passages (384) and whole topics (243).
    assert stimuli.groupby("partition")["context_group"].nunique().to_dict() == {"243sentences": 24, "384sentences": 96}
    assert (stimuli[stimuli.partition == "384sentences"].groupby("context_group").size() == 4).all()
    # Groups in sorted passage_label order, sentences in the stimulus set's order inside each group.
    for experiment, rows in stimuli.groupby("partition", sort=False):
        expected = reference[reference.experiment == experiment]
        expected_ids = [
            sid
            for label in sorted(set(expected.passage_label))
            for sid in expected.loc[expected.passage_label == label, "stimulus_id"]
        ]
        assert rows["stimulus_id"].tolist() == expected_ids
    merged = stimuli.merge(reference, on="stimulus_id")
    assert (merged["text"] == merged["sentence"]).all()
    assert (merged["cv_group"] == merged["experiment_x"] + "." + merged["passage_category_x"].astype(str)).all()
    assert (merged["passage"] == merged["experiment_x"] + "." + merged["passage_index_x"].astype(str)).all()
    # Every context group (passage or topic) lies inside one topic: OASM never spans cv groups.
    assert (stimuli.groupby("context_group")["cv_group"].nunique() == 1).all()
    assert (merged.groupby("context_group")["position"].apply(lambda p: list(p) == list(range(len(p))))).all()


def test_responses_keep_brainscore_neuroids_per_experiment(full_size_assembly, tmp_path):
    path, reference, values = full_size_assembly
    stimuli_path, responses_path = tmp_path / "stimuli.parquet", tmp_path / "responses.parquet"
    pereira2018.prepare_stimuli(block_for(path), stimuli_path)
    pereira2018.prepare_responses(block_for(path), stimuli_path, responses_path)
    ids, matrix, neuroids, rows = io.read_responses(responses_path)
    assert matrix.shape == (627, 13553) and neuroids["subject"].nunique() == 10
    assert list(ids) == io.read_stimuli(stimuli_path)["stimulus_id"].tolist()
    for experiment, expected in (("384sentences", 12155), ("243sentences", 8031)):
        block = matrix[(rows["experiment"] == experiment).to_numpy()]
        assert np.isfinite(block).all(axis=0).sum() == expected
        assert (np.isfinite(block).all(axis=0) | np.isnan(block).all(axis=0)).all()
    source_rows = pd.Index(reference["stimulus_id"]).get_indexer(ids)
    np.testing.assert_array_equal(matrix, values[source_rows])
    assert io.read_metadata(responses_path)["neuroids_per_partition"] == {"243sentences": 8031, "384sentences": 12155}


# --------------------------------------------------------------------------- synthetic files
def test_partly_nan_neuroid_is_dropped_like_brainscore(small_assembly, tmp_path, caplog):
    path, presentations, neuroids, values = small_assembly
    values = values.copy()
    values[4, 5] = np.nan  # one missing value of one s2 voxel in 384sentences
    write_assembly(path, values, presentations, neuroids)
    with caplog.at_level(logging.INFO):
        data = pereira2018.read_assembly(path, strict=False)
    assert data.kept == {"243sentences": 3, "384sentences": 5}
    assert "1 neuroids with some NaN" in caplog.text
    rows_384 = (data.stimuli["experiment"] == "384sentences").to_numpy()
    assert np.isnan(data.matrix[rows_384][:, 5]).all()


def test_strict_counts_refuse_a_subset_and_relaxed_counts_read_it(small_assembly, tmp_path):
    path = small_assembly[0]
    out = tmp_path / "stimuli.parquet"
    with pytest.raises(DataError, match="found 6 sentences, expected 627.*strict_counts"):
        pereira2018.prepare_stimuli(block_for(path), out)
    assert not out.exists()
    pereira2018.prepare_stimuli(block_for(path, strict=False), out)
    stimuli = io.read_stimuli(out)
    assert stimuli["context_group"].tolist() == [
        "243sentences.beekeeping",
        "243sentences.dreams",
        "243sentences.dreams",
        "384sentences.Window",
        "384sentences.Woman",
        "384sentences.Woman",
    ]
    assert stimuli["position"].tolist() == [0, 0, 1, 0, 0, 1]


def test_missing_coordinate_is_named(small_assembly, tmp_path):
    path, presentations, neuroids, values = small_assembly
    write_assembly(path, values, presentations.drop(columns="passage_label"), neuroids)
    out = tmp_path / "stimuli.parquet"
    with pytest.raises(DataError, match=r"lacks the presentation coordinate\(s\) \['passage_label'\]"):
        pereira2018.prepare_stimuli(block_for(path, strict=False), out)
    assert not out.exists()


def test_duplicated_stimulus_ids_are_refused(small_assembly, tmp_path):
    path, presentations, neuroids, values = small_assembly
    write_assembly(path, values, presentations.assign(stimulus_id=["a", "a", "b", "c", "d", "e"]), neuroids)
    with pytest.raises(DataError, match=r"duplicated stimulus_id values \['a'\]"):
        pereira2018.prepare_stimuli(block_for(path, strict=False), tmp_path / "stimuli.parquet")


def test_truncated_file_is_refused(small_assembly, tmp_path):
    path = small_assembly[0]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable netCDF assembly.*truncated"):
        pereira2018.prepare_stimuli(block_for(path, strict=False), tmp_path / "stimuli.parquet")


def test_responses_from_other_stimuli_are_refused(small_assembly, tmp_path):
    path, presentations, neuroids, values = small_assembly
    stimuli_path, out = tmp_path / "stimuli.parquet", tmp_path / "responses.parquet"
    pereira2018.prepare_stimuli(block_for(path, strict=False), stimuli_path)
    other = tmp_path / "other.nc"
    write_assembly(other, values, presentations.assign(stimulus_id=presentations["stimulus_id"] + "x"), neuroids)
    with pytest.raises(DataError, match="do not match the stimuli"):
        pereira2018.prepare_responses(block_for(other, strict=False), stimuli_path, out)
    assert not out.exists()


def test_missing_assembly_says_what_to_download(tmp_path):
    block = {
        "reader": "pereira2018",
        "files": {"assembly": str(tmp_path / "assy.nc")},
        "download": {
            "assembly": {"url": "https://example.org/assy.nc", "sha1": "f8434b4022f5b2c862f0ff2854d5b3f5f2a7fb96"}
        },
    }
    with pytest.raises(DataError, match=r"(?s)does not exist.*https://example.org/assy.nc.*sha1 f8434b40"):
        pereira2018.prepare_stimuli(block, tmp_path / "stimuli.parquet")
