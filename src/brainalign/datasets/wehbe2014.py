"""Wehbe et al. (2014) Harry Potter reading: words as units, TRs as response rows.

Eight subjects read chapter 9 word by word (0.5 s each) in 4 runs while scanned (TR 2 s).
Two on-disk layouts are read:

- ``toneva`` (default): the preprocessed folder used by Toneva & Wehbe (2019):
  ``data_subject_{F,H,I,J,K,L,M,N}.npy`` (kept TRs x voxels: detrended, smoothed, the first
  20 and last 15 TRs of each run removed), ``time_fmri.npy`` and ``runs_fmri.npy`` (every
  TR's start time and run), ``time_words_fmri.npy`` and ``words_fmri.npy`` (every word's
  onset and text).
- ``cmu``: the raw CMU release ``subject_{1..8}.mat`` (``data``, ``time`` = [start, run],
  ``words`` = struct with ``text``/``start``/``length``); run edges are trimmed the same
  way and each run is linearly detrended.

Voxels are restricted to language ROIs with per-subject boolean masks (npz, keys
``{subject}__{roi}``). A word belongs to the last TR that started strictly before it
(Toneva's rule). The responses file has one row per TR of every run; rows in the trimmed
run edges are NaN and flagged ``trimmed`` (delayed features still need their words).
The chapter is one context stream; grouped CV holds out runs. The text is copyrighted and
always comes from the user's files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.io
import scipy.signal

from brainalign import io
from brainalign.datasets import download, netcdf
from brainalign.errors import ConfigError, DataError
from brainalign.options import resolve_options, schema_default

logger = logging.getLogger(__name__)

DATASET = "wehbe2014"
DEFAULT_FILES = {
    "folder": "resources/downloads/wehbe2014/fMRI",
    "cmu_folder": "resources/downloads/wehbe2014/cmu",
    "roi_masks": "resources/downloads/wehbe2014/language_roi_masks.npz",
}
READER_OPTIONS = "$defs.wehbe2014_options"
LANGUAGE_ROIS = tuple(schema_default(f"{READER_OPTIONS}.rois"))
"""The ROIs of the published language masks, the reader's default ``rois``."""
TONEVA_SUBJECTS = ("F", "H", "I", "J", "K", "L", "M", "N")
CMU_SUBJECTS = ("1", "2", "3", "4", "5", "6", "7", "8")
CONTEXT_GROUP = "chapter9"
EXPECTED = {"words": 5176, "TRs": 1351, "runs": 4, "kept TRs": 1211, "subjects": 8}


@dataclass
class Timeline:
    """Every TR's start time and run, and every word's onset and text."""

    tr_time: np.ndarray
    tr_run: np.ndarray
    word_time: np.ndarray
    words: np.ndarray


# --------------------------------------------------------------------------- settings
def reader_settings(block: Mapping[str, Any]) -> dict[str, Any]:
    """The block's options over the defaults, with the layout's subjects (and CMU mask names) filled in."""
    settings = resolve_options(READER_OPTIONS, block.get("options"))
    if settings["format"] not in ("toneva", "cmu"):
        raise ConfigError(f"{DATASET}: options.format must be 'toneva' or 'cmu', not {settings['format']!r}.")
    if settings["subjects"] is None:
        settings["subjects"] = list(TONEVA_SUBJECTS if settings["format"] == "toneva" else CMU_SUBJECTS)
    settings["subjects"] = [str(s) for s in settings["subjects"]]
    if settings["cmu_mask_subjects"] is None:
        settings["cmu_mask_subjects"] = dict(zip(CMU_SUBJECTS, TONEVA_SUBJECTS))
    return settings


# --------------------------------------------------------------------------- loading
def load_array(path: str | os.PathLike, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` file without pickle (object arrays are refused with a fix).

    ``mmap`` maps a large file instead of reading it, so only the selected voxels are read.
    """
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as error:
        raise DataError(
            f"{path} holds Python objects, which are not loaded (pickle is unsafe). Convert it "
            "once with: np.save(path, np.load(path, allow_pickle=True).astype(str)) for words, "
            ".astype(float) for numbers."
        ) from error
    except OSError as error:
        raise DataError(f"{path} is not a readable .npy file ({error}); copy it again.") from error


def load_mat(path: str | os.PathLike) -> dict[str, Any]:
    """Load a MATLAB v5 file (arrays squeezed, structs as record arrays)."""
    try:
        return scipy.io.loadmat(path, squeeze_me=True)
    except (ValueError, OSError, NotImplementedError, TypeError) as error:
        raise DataError(f"{path} is not a readable MATLAB v5 file ({error}); copy it again.") from error


def toneva_timeline(folder: Path) -> Timeline:
    """Read the TR and word timing of the Toneva-preprocessed folder."""
    return Timeline(
        tr_time=load_array(folder / "time_fmri.npy").astype(float),
        tr_run=load_array(folder / "runs_fmri.npy").astype(int),
        word_time=load_array(folder / "time_words_fmri.npy").astype(float),
        words=load_array(folder / "words_fmri.npy").astype(str),
    )


def cmu_timeline(mat: Mapping[str, Any], path: Path) -> Timeline:
    """Read the TR and word timing of a CMU ``subject_{n}.mat`` file."""
    missing = [k for k in ("data", "time", "words") if k not in mat]
    if missing:
        raise DataError(f"{path} lacks the variable(s) {missing}; is it a CMU subject_{{n}}.mat file?")
    time = np.asarray(mat["time"], dtype=float)
    words = mat["words"]
    if (
        time.ndim != 2
        or time.shape[1] != 2
        or words.dtype.names is None
        or not {"text", "start"} <= set(words.dtype.names)
    ):
        raise DataError(f"{path}: 'time' must be nTRs x 2 and 'words' a struct with text and start.")
    return Timeline(
        tr_time=time[:, 0],
        tr_run=time[:, 1].astype(int),
        word_time=np.asarray(words["start"], dtype=float),
        words=np.asarray([str(w) for w in words["text"]]),
    )


def check_timeline(timeline: Timeline, trim: tuple[int, int], source: str, strict: bool) -> None:
    """Check shapes, order and the published counts of a timeline."""
    if timeline.tr_time.shape != timeline.tr_run.shape or timeline.word_time.shape != timeline.words.shape:
        raise DataError(
            f"{source}: TR times/runs ({timeline.tr_time.shape}, {timeline.tr_run.shape}) or word "
            f"times/words ({timeline.word_time.shape}, {timeline.words.shape}) differ in length."
        )
    if np.any(np.diff(timeline.tr_time) <= 0) or np.any(np.diff(timeline.tr_run) < 0):
        raise DataError(f"{source}: TR times must increase and runs must not go back.")
    netcdf.check_count(len(timeline.words), EXPECTED["words"], "words", source, strict)
    netcdf.check_count(len(timeline.tr_time), EXPECTED["TRs"], "TRs", source, strict)
    netcdf.check_count(len(np.unique(timeline.tr_run)), EXPECTED["runs"], "runs", source, strict)
    netcdf.check_count(
        int((~trimmed_mask(timeline.tr_run, *trim)).sum()),
        EXPECTED["kept TRs"],
        "TRs after trimming run edges",
        source,
        strict,
    )


def word_trs(word_time: np.ndarray, tr_time: np.ndarray) -> np.ndarray:
    """Return, for each word, the index of the last TR that started strictly before it."""
    index = np.searchsorted(tr_time, word_time, side="left") - 1
    if np.any(index < 0):
        raise DataError(f"{int((index < 0).sum())} words start before the first TR; check the word and TR times.")
    return index


def trimmed_mask(tr_run: np.ndarray, start: int, end: int) -> np.ndarray:
    """Return True for the first ``start`` and last ``end`` TRs of every run."""
    trimmed = np.zeros(len(tr_run), dtype=bool)
    for run in np.unique(tr_run):
        where = np.flatnonzero(tr_run == run)
        trimmed[where[:start]] = True
        trimmed[where[len(where) - end :]] = True
    return trimmed


def tr_ids(n_trs: int) -> list[str]:
    """Return the response-row ids of the TRs."""
    return [f"TR{i:04d}" for i in range(n_trs)]


def tr_index_in_run(tr_run: np.ndarray) -> np.ndarray:
    """Return each TR's position within its run."""
    return pd.Series(tr_run).groupby(tr_run).cumcount().to_numpy()


# --------------------------------------------------------------------------- masks
def load_roi_masks(
    path: str | os.PathLike, subject: str, rois: Sequence[str] | None, n_voxels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (voxel indices, ROI label per voxel) of ``subject`` within ``rois``.

    ``rois=None`` keeps every voxel (label ``all``). ROIs must not overlap, so each voxel
    gets one label.

    Raises
    ------
    DataError
        The subject or an ROI is absent, a mask's length differs from the subject's voxel
        count, or ROIs overlap.
    """
    if rois is None:
        return np.arange(n_voxels), np.full(n_voxels, "all")
    with np.load(path, allow_pickle=False) as masks:
        keys = set(masks.files)
        absent = [f"{subject}__{roi}" for roi in rois if f"{subject}__{roi}" not in keys]
        if absent:
            raise DataError(f"{path} lacks the mask(s) {absent}; it holds {sorted(keys)[:10]}...")
        selected = {roi: masks[f"{subject}__{roi}"].astype(bool) for roi in rois}
    for roi, mask in selected.items():
        if mask.shape != (n_voxels,):
            raise DataError(
                f"{path}: mask {subject}__{roi} has {mask.shape[0]} voxels but the subject's data has "
                f"{n_voxels}. The masks belong to another voxel space; set options.rois: null to use all voxels."
            )
    stacked = np.stack(list(selected.values()))
    if (stacked.sum(axis=0) > 1).any():
        raise DataError(f"{path}: ROI masks of subject {subject} overlap; list non-overlapping options.rois.")
    voxels = np.flatnonzero(stacked.any(axis=0))
    labels = np.asarray(list(selected))[stacked[:, voxels].argmax(axis=0)]
    return voxels, labels


# --------------------------------------------------------------------------- readers
def read_timeline(block: Mapping[str, Any]) -> Timeline:
    """Read and check the timeline of the configured layout."""
    settings = reader_settings(block)
    trim = (int(settings["trim_start"]), int(settings["trim_end"]))
    if settings["format"] == "toneva":
        folder = _toneva_folder(block)
        timeline, source = toneva_timeline(folder), str(folder)
    else:
        path = _cmu_path(block, settings["subjects"][0])
        timeline, source = cmu_timeline(load_mat(path), path), str(path)
    check_timeline(timeline, trim, source, bool(settings["strict_counts"]))
    return timeline


def _toneva_folder(block: Mapping[str, Any]) -> Path:
    """The folder holding the .npy files: ``files.folder`` itself or its ``fMRI`` subfolder."""
    folder = download.require_file(DATASET, block, "folder", DEFAULT_FILES["folder"])
    if not (folder / "time_fmri.npy").exists() and (folder / "fMRI" / "time_fmri.npy").exists():
        return folder / "fMRI"
    return folder


def _cmu_path(block: Mapping[str, Any], subject: str) -> Path:
    folder = download.require_file(DATASET, block, "cmu_folder", DEFAULT_FILES["cmu_folder"])
    path = folder / f"subject_{subject}.mat"
    if not path.exists():
        raise DataError(f"{path} does not exist.\n" + download.missing_files_message(DATASET, block))
    return path


def _subject_responses(
    block: Mapping[str, Any], settings: Mapping[str, Any], subject: str, timeline: Timeline, kept: np.ndarray
) -> tuple[np.ndarray, str, str]:
    """Return (kept TRs x voxels, mask subject, source) for one subject."""
    if settings["format"] == "toneva":
        path = _toneva_folder(block) / f"data_subject_{subject}.npy"
        if not path.exists():
            raise DataError(f"{path} does not exist.\n" + download.missing_files_message(DATASET, block))
        return load_array(path, mmap=True), subject, str(path)
    path = _cmu_path(block, subject)
    mat = load_mat(path)
    own = cmu_timeline(mat, path)
    if not (np.array_equal(own.tr_time, timeline.tr_time) and np.array_equal(own.tr_run, timeline.tr_run)):
        raise DataError(f"{path}: its TR times or runs differ from subject {settings['subjects'][0]}'s.")
    data = np.asarray(mat["data"], dtype=np.float64)[kept]
    if settings["detrend"]:
        runs = timeline.tr_run[kept]
        for run in np.unique(runs):
            data[runs == run] = scipy.signal.detrend(data[runs == run], axis=0, type="linear")
    mask_subject = str(dict(settings["cmu_mask_subjects"]).get(subject, subject))
    return data, mask_subject, str(path)


def load_responses(block: Mapping[str, Any], timeline: Timeline) -> tuple[np.ndarray, pd.DataFrame]:
    """Return (all TRs x ROI voxels of every subject, NaN in trimmed edges; neuroid table)."""
    settings = reader_settings(block)
    kept = ~trimmed_mask(timeline.tr_run, int(settings["trim_start"]), int(settings["trim_end"]))
    rois = settings["rois"]
    masks_path = (
        None if rois is None else download.require_file(DATASET, block, "roi_masks", DEFAULT_FILES["roi_masks"])
    )
    netcdf.check_count(
        len(settings["subjects"]), EXPECTED["subjects"], "subjects", DATASET, bool(settings["strict_counts"])
    )
    blocks, tables = [], []
    for subject in settings["subjects"]:
        data, mask_subject, source = _subject_responses(block, settings, subject, timeline, kept)
        if data.ndim != 2 or data.shape[0] != kept.sum():
            raise DataError(f"{source}: data has shape {data.shape}, expected ({int(kept.sum())} kept TRs, voxels).")
        voxels, labels = load_roi_masks(masks_path, mask_subject, rois, data.shape[1])
        full = np.full((len(kept), len(voxels)), np.nan, dtype=np.float32)
        full[kept] = data[:, voxels]
        blocks.append(full)
        tables.append(
            pd.DataFrame({"neuroid_id": [f"{subject}.{v}" for v in voxels], "subject": subject, "roi": labels})
        )
        logger.info(
            "%s: subject %s: %d voxels in %s", DATASET, subject, len(voxels), "all voxels" if rois is None else rois
        )
    return np.concatenate(blocks, axis=1), pd.concat(tables, ignore_index=True)


def stimuli_table(timeline: Timeline) -> pd.DataFrame:
    """Words in reading order, each pointing to its TR."""
    tr = word_trs(timeline.word_time, timeline.tr_time)
    run = timeline.tr_run[tr]
    return pd.DataFrame(
        {
            "stimulus_id": [f"w{i:04d}" for i in range(len(timeline.words))],
            "context_group": CONTEXT_GROUP,
            "position": np.arange(len(timeline.words)),
            "text": timeline.words,
            "cv_group": [f"run{r}" for r in run],
            "partition": "all",
            "response_id": np.asarray(tr_ids(len(timeline.tr_time)))[tr],
            "run": run,
            "onset": timeline.word_time,
            "tr_index": tr_index_in_run(timeline.tr_run)[tr],
        }
    )


def _metadata(block: Mapping[str, Any]) -> dict[str, Any]:
    settings = reader_settings(block)
    return {
        "dataset": DATASET,
        "format": settings["format"],
        "rois": settings["rois"],
        "trim": [settings["trim_start"], settings["trim_end"]],
        "tr_seconds": 2.0,
        "word_to_tr": "last TR starting strictly before the word onset",
    }


def prepare_stimuli(block: Mapping[str, Any], out_path: str | os.PathLike) -> None:
    """Write the chapter's words (``results/stimuli/wehbe2014.parquet``), text from the user's files."""
    io.write_stimuli(out_path, stimuli_table(read_timeline(block)), _metadata(block))


def prepare_responses(block: Mapping[str, Any], stimuli_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Write TRs x ROI voxels (rows ``TR0000``...; ``run``, ``time``, ``tr_index``, ``trimmed``)."""
    settings = reader_settings(block)
    timeline = read_timeline(block)
    ids = tr_ids(len(timeline.tr_time))
    netcdf.matching_stimuli(stimuli_path, ids, DATASET)
    matrix, neuroids = load_responses(block, timeline)
    rows = pd.DataFrame(
        {
            "run": timeline.tr_run,
            "time": timeline.tr_time,
            "tr_index": tr_index_in_run(timeline.tr_run),
            "trimmed": trimmed_mask(timeline.tr_run, int(settings["trim_start"]), int(settings["trim_end"])),
        }
    )
    io.write_responses(out_path, ids, matrix, neuroids, _metadata(block), rows=rows)
