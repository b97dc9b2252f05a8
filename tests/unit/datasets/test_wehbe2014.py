"""Wehbe2014 reader: Toneva-preprocessed .npy folder, raw CMU .mat files, language-ROI masks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from brainalign import io
from brainalign.datasets import wehbe2014
from brainalign.errors import DataError

TRS_PER_RUN, RUNS, TRIM = 12, 2, (2, 1)
N_VOXELS = 10


def timeline() -> wehbe2014.Timeline:
    """Two runs of 12 TRs (2 s); words every 0.5 s from 4 s into each run, one exactly on a TR start."""
    tr_time = 2.0 * np.arange(TRS_PER_RUN * RUNS)
    tr_run = np.repeat(np.arange(1, RUNS + 1), TRS_PER_RUN)
    word_time = np.concatenate([4.0 + np.arange(30) * 0.5, 28.0 + np.arange(30) * 0.5])
    words = np.array([f"token{i}" for i in range(len(word_time))])
    return wehbe2014.Timeline(tr_time, tr_run, word_time, words)


def masks() -> dict[str, np.ndarray]:
    r1 = np.zeros(N_VOXELS, bool)
    r1[[1, 4]] = True
    r2 = np.zeros(N_VOXELS, bool)
    r2[[2, 7, 8]] = True
    return {f"{s}__{roi}": m for s in ("A", "B") for roi, m in (("r1", r1), ("r2", r2))}


def kept_data(seed: int) -> np.ndarray:
    n_kept = RUNS * (TRS_PER_RUN - sum(TRIM))
    return np.random.default_rng(seed).normal(size=(n_kept, N_VOXELS)).astype(np.float32)


def toneva_block(tmp_path, **options) -> dict:
    folder = tmp_path / "fMRI"
    folder.mkdir(exist_ok=True)
    line = timeline()
    np.save(folder / "time_fmri.npy", line.tr_time)
    np.save(folder / "runs_fmri.npy", line.tr_run)
    np.save(folder / "time_words_fmri.npy", line.word_time)
    np.save(folder / "words_fmri.npy", line.words)
    for seed, subject in enumerate(("A", "B")):
        np.save(folder / f"data_subject_{subject}.npy", kept_data(seed))
    np.savez(tmp_path / "masks.npz", **masks())
    settings = {
        "subjects": ["A", "B"],
        "rois": ["r1", "r2"],
        "trim_start": TRIM[0],
        "trim_end": TRIM[1],
        "strict_counts": False,
    }
    return {
        "reader": "wehbe2014",
        "files": {"folder": str(folder), "roi_masks": str(tmp_path / "masks.npz")},
        "options": settings | options,
    }


# --------------------------------------------------------------------------- timing rules
def test_word_to_tr_matches_tonevas_loop():
    rng = np.random.default_rng(0)
    tr_time = np.cumsum(rng.uniform(1.5, 2.5, 200))
    word_time = np.sort(rng.uniform(tr_time[0] + 1e-3, tr_time[-1] + 3, 700))
    word_time[:5] = tr_time[10:15]  # onsets exactly on a TR start go to the previous TR
    naive = [np.where(w > tr_time)[0][-1] for w in word_time]
    np.testing.assert_array_equal(wehbe2014.word_trs(word_time, tr_time), naive)


def test_trimmed_edges_match_per_run_slicing():
    runs = np.repeat([1, 2, 3, 4], [50, 41, 60, 45])
    kept = np.concatenate([np.flatnonzero(runs == r)[20:-15] for r in (1, 2, 3, 4)])
    assert np.array_equal(np.flatnonzero(~wehbe2014.trimmed_mask(runs, 20, 15)), kept)


# --------------------------------------------------------------------------- Toneva folder
def test_toneva_folder_gives_words_pointing_to_trs(tmp_path):
    block = toneva_block(tmp_path)
    stimuli_path, responses_path = tmp_path / "stimuli.parquet", tmp_path / "responses.parquet"
    wehbe2014.prepare_stimuli(block, stimuli_path)
    stimuli = io.read_stimuli(stimuli_path)
    line = timeline()
    assert stimuli["text"].tolist() == line.words.tolist() and set(stimuli["context_group"]) == {"chapter9"}
    assert stimuli["position"].tolist() == list(range(60))
    assert stimuli.loc[0, "response_id"] == "TR0001"  # onset 4.0 s equals TR 2's start: previous TR
    assert stimuli.loc[1, "response_id"] == "TR0002"
    assert stimuli.groupby("response_id").size().max() == 4
    assert stimuli["cv_group"].tolist() == ["run1"] * 30 + ["run2"] * 30

    wehbe2014.prepare_responses(block, stimuli_path, responses_path)
    ids, matrix, neuroids, rows = io.read_responses(responses_path)
    assert len(ids) == 24 and rows["trimmed"].sum() == 6
    assert np.isnan(matrix[rows["trimmed"].to_numpy()]).all()
    voxels = [1, 2, 4, 7, 8]
    np.testing.assert_array_equal(matrix[~rows["trimmed"].to_numpy(), :5], kept_data(0)[:, voxels])
    np.testing.assert_array_equal(matrix[~rows["trimmed"].to_numpy(), 5:], kept_data(1)[:, voxels])
    assert neuroids["roi"].tolist() == ["r1", "r2", "r1", "r2", "r2"] * 2
    assert neuroids["neuroid_id"].tolist()[:2] == ["A.1", "A.2"]
    assert rows["tr_index"].tolist() == [*range(12), *range(12)] and rows["run"].tolist() == [1] * 12 + [2] * 12


def test_all_voxels_without_masks_from_the_parent_folder(tmp_path):
    block = toneva_block(tmp_path, rois=None)
    block["files"]["folder"] = str(tmp_path)  # the folder above fMRI/ works too
    matrix, neuroids = wehbe2014.load_responses(block, timeline())
    assert matrix.shape == (24, 2 * N_VOXELS) and set(neuroids["roi"]) == {"all"}


def test_object_array_words_are_refused(tmp_path):
    block = toneva_block(tmp_path)
    np.save(tmp_path / "fMRI" / "words_fmri.npy", timeline().words.astype(object), allow_pickle=True)
    with pytest.raises(DataError, match="pickle is unsafe.*astype\\(str\\)"):
        wehbe2014.prepare_stimuli(block, tmp_path / "stimuli.parquet")


def test_strict_counts_refuse_a_subset(tmp_path):
    block = toneva_block(tmp_path, strict_counts=True)
    with pytest.raises(DataError, match="found 60 words, expected 5176"):
        wehbe2014.prepare_stimuli(block, tmp_path / "stimuli.parquet")


def test_data_with_wrong_number_of_trs_is_refused(tmp_path):
    block = toneva_block(tmp_path)
    np.save(tmp_path / "fMRI" / "data_subject_B.npy", kept_data(1)[:-1])
    with pytest.raises(DataError, match=r"data_subject_B.npy: data has shape \(17, 10\), expected \(18 kept TRs"):
        wehbe2014.load_responses(block, timeline())


def test_responses_from_another_timeline_are_refused(tmp_path):
    block = toneva_block(tmp_path)
    stimuli_path, out = tmp_path / "stimuli.parquet", tmp_path / "responses.parquet"
    wehbe2014.prepare_stimuli(block, stimuli_path)
    line = timeline()
    np.save(tmp_path / "fMRI" / "time_fmri.npy", line.tr_time[:-4])  # the last TRs no longer exist
    np.save(tmp_path / "fMRI" / "runs_fmri.npy", line.tr_run[:-4])
    with pytest.raises(DataError, match="do not match the stimuli"):
        wehbe2014.prepare_responses(block, stimuli_path, out)
    assert not out.exists()


def test_missing_folder_lists_the_files_to_bring(tmp_path):
    block = {"reader": "wehbe2014", "files": {"folder": str(tmp_path / "nowhere")}}
    with pytest.raises(DataError) as error:
        wehbe2014.prepare_stimuli(block, tmp_path / "stimuli.parquet")
    message = str(error.value)
    for needed in (
        "files.folder",
        "time_words_fmri.npy",
        "words_fmri.npy",
        "data_subject_{F,H,I,J,K,L,M,N}.npy",
        "subject_{1..8}.mat",
        "options.format: cmu",
    ):
        assert needed in message


# --------------------------------------------------------------------------- real masks
def test_real_language_masks_select_disjoint_rois(wehbe_masks, tmp_path):
    block = toneva_block(tmp_path, subjects=["F"], rois=list(wehbe2014.LANGUAGE_ROIS))
    block["files"]["roi_masks"] = str(wehbe_masks)
    real = np.load(wehbe_masks)
    n_voxels = real["F__all"].shape[0]
    data = np.tile(np.arange(n_voxels, dtype=np.float32), (18, 1))  # each voxel holds its own index
    np.save(tmp_path / "fMRI" / "data_subject_F.npy", data)
    matrix, neuroids = wehbe2014.load_responses(block, timeline())
    assert len(neuroids) == real["F__all"].sum() == 5018
    voxels = matrix[~wehbe2014.trimmed_mask(timeline().tr_run, *TRIM)][0].astype(int)
    np.testing.assert_array_equal(voxels, np.flatnonzero(real["F__all"]))
    for roi in wehbe2014.LANGUAGE_ROIS:
        assert np.array_equal(np.sort(voxels[neuroids["roi"] == roi]), np.flatnonzero(real[f"F__{roi}"]))


def test_mask_of_another_voxel_space_is_refused(wehbe_masks):
    with pytest.raises(DataError, match="lacks the mask"):
        wehbe2014.load_roi_masks(wehbe_masks, "A", ["IFG"], N_VOXELS)
    with pytest.raises(DataError, match="has 27905 voxels but the subject's data has 10.*options.rois: null"):
        wehbe2014.load_roi_masks(wehbe_masks, "F", ["IFG"], N_VOXELS)


# --------------------------------------------------------------------------- raw CMU files
def write_cmu_subject(path, data: np.ndarray) -> None:
    line = timeline()
    words = np.array(
        [(w, t, 0.5) for w, t in zip(line.words, line.word_time)],
        dtype=[("text", object), ("start", object), ("length", object)],
    )
    meta = {"subject": path.stem, "nTRs": len(line.tr_time), "nvoxels": data.shape[1]}
    scipy.io.savemat(
        path, {"data": data, "time": np.column_stack([line.tr_time, line.tr_run]), "words": words, "meta": meta}
    )


def test_cmu_files_are_trimmed_and_detrended_per_run(tmp_path):
    line = timeline()
    rng = np.random.default_rng(3)
    folder = tmp_path / "cmu"
    folder.mkdir()
    for subject in ("1", "2"):
        trend = np.outer(np.arange(len(line.tr_time)), rng.normal(size=N_VOXELS)) + 50.0
        write_cmu_subject(folder / f"subject_{subject}.mat", trend + rng.normal(size=(len(line.tr_time), N_VOXELS)))
    np.savez(tmp_path / "masks.npz", **masks())
    block = {
        "reader": "wehbe2014",
        "files": {"cmu_folder": str(folder), "roi_masks": str(tmp_path / "masks.npz")},
        "options": {
            "format": "cmu",
            "subjects": ["1", "2"],
            "rois": ["r1", "r2"],
            "trim_start": TRIM[0],
            "trim_end": TRIM[1],
            "cmu_mask_subjects": {"1": "A", "2": "B"},
            "strict_counts": False,
        },
    }
    stimuli_path, responses_path = tmp_path / "stimuli.parquet", tmp_path / "responses.parquet"
    wehbe2014.prepare_stimuli(block, stimuli_path)
    assert io.read_stimuli(stimuli_path)["text"].tolist() == line.words.tolist()
    wehbe2014.prepare_responses(block, stimuli_path, responses_path)
    ids, matrix, neuroids, rows = io.read_responses(responses_path)
    assert matrix.shape == (24, 10) and neuroids["neuroid_id"].tolist()[:3] == ["1.1", "1.2", "1.4"]
    trimmed = rows["trimmed"].to_numpy()
    assert np.isnan(matrix[trimmed]).all()
    for run in (1, 2):
        kept = matrix[(rows["run"].to_numpy() == run) & ~trimmed]
        slope, intercept = np.polyfit(np.arange(len(kept)), kept, 1)
        np.testing.assert_allclose(slope, 0, atol=1e-5)
        np.testing.assert_allclose(intercept, 0, atol=1e-4)


def test_the_readers_defaults_name_every_subject_language_roi_and_cmu_mask():
    """The schema's null defaults become the layout's subjects and the CMU -> mask pairing in order."""
    toneva = wehbe2014.reader_settings({})
    assert toneva["subjects"] == ["F", "H", "I", "J", "K", "L", "M", "N"]
    assert toneva["rois"] == ["PostTemp", "AntTemp", "AngularG", "IFG", "MFG", "IFGorb", "pCingulate", "dmpfc"]
    cmu = wehbe2014.reader_settings({"options": {"format": "cmu"}})
    assert cmu["subjects"] == [str(k) for k in range(1, 9)]
    assert cmu["cmu_mask_subjects"] == dict(zip(cmu["subjects"], toneva["subjects"], strict=True))
    assert wehbe2014.reader_settings({"options": {"cmu_mask_subjects": {"1": "A"}}})["cmu_mask_subjects"] == {"1": "A"}
