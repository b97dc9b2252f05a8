"""Futrell2018: Natural Stories self-paced reading times (10 stories, 10,256 words).

Stimuli are the corpus words of ``all_stories.tok`` (or, when only a Brain-Score assembly is
held, its word coordinates). Reading times come from whichever format the user holds:

=================  ===========================================  ==========  ===================
source             file(s)                                      per reader  native alignment
=================  ===========================================  ==========  ===================
``assembly``       Brain-Score ``assy_Futrell2018.nc``           yes         ``brainscore2022``
``processed_rts``  ``processed_RTs.tsv``                         yes         ``naturalstories2021``
``raw_batches``    ``batch1_pro.csv`` + ``batch2_pro.csv``       yes         either (processed
                                                                             for the one asked)
``brainscore_means`` ``brainscore_era_mean_rts.csv``             no          ``brainscore2022``
``wordinfo``       ``processed_wordinfo.tsv``                    no          ``naturalstories2021``
=================  ===========================================  ==========  ===================

Two alignments of reading times to words exist. ``brainscore2022`` is the one of Brain-Score's
assembly (used by Aw et al. 2024): before the corpus was realigned, story 3 carried a
one-position shift from zone 229 on (812 words), because the blank token at raw zone 231 was
kept. ``naturalstories2021`` is the corpus's ``process_RTs.R`` after the realignment. A source
in the other alignment is converted by moving story 3's tail by one word; the one word whose
time the source does not hold becomes NaN (counted in the metadata).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign import io
from brainalign.errors import ConfigError, DataError
from brainalign.options import resolve_options

ALIGNMENTS = ("brainscore2022", "naturalstories2021")
SOURCES = ("auto", "assembly", "processed_rts", "raw_batches", "brainscore_means", "wordinfo")
SHIFTED_STORY = 3
SHIFT_START_ZONE = 229
"""Story 3 zones >= 229 differ by one position between the two alignments."""
RAW_BLANK_ZONE = 231
"""Raw zone of the blank token in story 3 that ``process_RTs.R`` drops."""
MIN_RT_MS, MAX_RT_MS, MIN_CORRECT = 100, 3000, 4
"""``process_RTs.R`` exclusions: keep 100 < RT < 3000 ms and more than 4 correct answers."""
SENTENCE_FINAL_ENDINGS = (".", "?", "!", ".'", "?'", "!'", ";'")
"""Brain-Score's sentence heuristic: a word with these endings closes a sentence unless the
next word is lower-case or the word is ``Mr.`` (481 sentences)."""

FILES_DEFAULTS = {"naturalstories": "resources/downloads/futrell2018/naturalstories", "assembly": None}
"""Where the reader looks for its files when the block's ``files`` does not name them."""
READER_OPTIONS = "$defs.futrell2018_options"
"""The schema section of a ``futrell2018`` block's ``options`` (defaults and descriptions)."""


@dataclass
class ReadingTimes:
    """Reading times in one alignment, rows in corpus order.

    Attributes
    ----------
    stimulus_ids : list of str
        ``'{item}.{zone}'`` for every corpus word.
    matrix : ndarray of shape (n_words, n_readers)
        Milliseconds; NaN where a reader has no (kept) time for a word.
    readers : DataFrame
        ``neuroid_id``, ``subject``, ``roi`` (``reader``, or one ``mean`` column).
    info : dict
        Source, alignment and exclusion counts (JSON-serialisable).
    """

    stimulus_ids: list[str]
    matrix: np.ndarray
    readers: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- block handling
def block_settings(block: dict) -> tuple[dict, dict]:
    """Return the block's ``files`` and ``options`` with defaults filled in; refuse bad values."""
    files = {**FILES_DEFAULTS, **(block.get("files") or {})}
    options = resolve_options(READER_OPTIONS, block.get("options"))
    for key, allowed in (("alignment", ALIGNMENTS), ("reading_times", SOURCES), ("context", ("corpus", "story"))):
        if options[key] not in allowed:
            raise ConfigError(f"futrell2018 options.{key} is {options[key]!r}; choose one of {list(allowed)}.")
    return files, options


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(
            f"{path} does not exist ({what}). Download it (see the dataset's download block) or "
            "point files.naturalstories / files.assembly at the folder or file you hold."
        )
    return path


def _read_columns(path: Path, required: list[str], **read_kwargs) -> pd.DataFrame:
    """Read a delimited file and check that it has the required columns."""
    _require(path, "reading-time data")
    frame = pd.read_csv(path, keep_default_na=False, na_values=["NA", ""], **read_kwargs)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing} (found {list(frame.columns)}). Is this the right file?")
    return frame


# --------------------------------------------------------------------------- words
def read_corpus_words(
    naturalstories: str | os.PathLike | None, assembly: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Return the corpus words in order: ``item``, ``zone``, ``word``.

    From ``all_stories.tok`` in the Natural Stories folder, or from the assembly's word
    coordinates when the folder lacks it.
    """
    tok = Path(naturalstories) / "all_stories.tok" if naturalstories else None
    if tok is not None and tok.is_file():
        words = _read_columns(tok, ["word", "zone", "item"], sep="\t", dtype={"word": str}, quoting=3)
    elif assembly:
        frame = _open_assembly(Path(assembly))
        words = pd.DataFrame(
            {
                "word": frame["word"].values.astype(str),
                "zone": frame["word_id"].values,
                "item": frame["story_id"].values,
            }
        )
    else:
        raise DataError(
            f"{tok}: all_stories.tok not found and no assembly given. Download the Natural Stories "
            "files or set files.assembly to Brain-Score's assy_Futrell2018.nc."
        )
    words = words.astype({"item": "int64", "zone": "int64"}).sort_values(["item", "zone"], kind="stable")
    if words.duplicated(["item", "zone"]).any():
        raise DataError(f"{tok or assembly}: repeated (item, zone) pairs; the word list is corrupt.")
    return words[["item", "zone", "word"]].reset_index(drop=True)


def stimulus_ids(items: np.ndarray, zones: np.ndarray) -> list[str]:
    """Return ``'{item}.{zone}'`` ids."""
    return [f"{int(i)}.{int(z)}" for i, z in zip(items, zones)]


def brainscore_sentences(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Brain-Score's punctuation heuristic over the whole corpus.

    Returns
    -------
    sentence_id : ndarray of int, 1-based, counted over the corpus (481 sentences)
    word_in_sentence : ndarray of int, 1-based
    """
    sentence_id = np.empty(len(words), dtype=np.int64)
    word_in_sentence = np.empty(len(words), dtype=np.int64)
    sentence, index = 1, 0
    for i, word in enumerate(words):
        index += 1
        sentence_id[i], word_in_sentence[i] = sentence, index
        closes = word.endswith(SENTENCE_FINAL_ENDINGS)
        if closes and i + 1 < len(words) and not (words[i + 1].islower() or word == "Mr."):
            sentence, index = sentence + 1, 0
    return sentence_id, word_in_sentence


def read_true_sentences(conllx: str | os.PathLike) -> dict[tuple[int, int], int]:
    """Map (item, zone) to the 0-based sentence index of the dependency parses.

    A word split into parts (``TokenId=item.zone.part``) belongs to the sentence of its parts.
    """
    conllx = _require(Path(conllx), "dependency parses with TokenId=item.zone[.part]")
    mapping: dict[tuple[int, int], int] = {}
    sentence, in_sentence = 0, False
    with open(conllx, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                sentence += in_sentence
                in_sentence = False
                continue
            match = re.search(r"TokenId=(\d+)\.(\d+)", line)
            if match is None:
                raise DataError(f"{conllx}: a token line lacks TokenId=item.zone in its MISC column: {line.strip()!r}")
            mapping.setdefault((int(match.group(1)), int(match.group(2))), sentence)
            in_sentence = True
    return mapping


def build_stimuli(words: pd.DataFrame, context: str = "corpus", true_sentences: dict | None = None) -> pd.DataFrame:
    """Return the stimuli table of the corpus words (see :mod:`brainalign.io`)."""
    texts = words["word"].astype(str).tolist()
    sentence_id, word_in_sentence = brainscore_sentences(texts)
    stimuli = pd.DataFrame(
        {
            "stimulus_id": stimulus_ids(words["item"], words["zone"]),
            "context_group": "corpus" if context == "corpus" else words["item"].astype(str),
            "position": np.arange(len(words)) if context == "corpus" else words["zone"].to_numpy() - 1,
            "text": texts,
            "cv_group": words["item"].astype(str),
            "partition": "all",
            "item": words["item"].to_numpy(),
            "zone": words["zone"].to_numpy(),
            "sentence_id": sentence_id,
            "word_in_sentence": word_in_sentence,
            "first_in_sentence": word_in_sentence == 1,
        }
    )
    if true_sentences is not None:
        keys = list(zip(stimuli["item"], stimuli["zone"]))
        missing = [k for k in keys if k not in true_sentences]
        if missing:
            raise DataError(f"the dependency parses lack {len(missing)} corpus words (first: item.zone {missing[0]}).")
        true_id = np.array([true_sentences[k] for k in keys])
        stimuli["sentence_id_true"] = true_id
        stimuli["first_in_sentence_true"] = np.r_[True, true_id[1:] != true_id[:-1]]
    return stimuli


def load_stimuli(files: dict, context: str = "corpus") -> pd.DataFrame:
    """Return the stimuli table from the dataset's files (true sentences where the parses are held)."""
    files = {**FILES_DEFAULTS, **files}
    words = read_corpus_words(files["naturalstories"], files["assembly"])
    conllx = Path(files["naturalstories"] or "") / "stories-aligned.conllx"
    true_sentences = read_true_sentences(conllx) if files["naturalstories"] and conllx.is_file() else None
    return build_stimuli(words, context, true_sentences)


def prepare_stimuli(block: dict, out_path: str | os.PathLike) -> None:
    """Write the stimuli table of the 10,256 Natural Stories words."""
    files, options = block_settings(block)
    stimuli = load_stimuli(files, options["context"])
    io.write_stimuli(
        out_path,
        stimuli,
        {"dataset": "futrell2018", "context": options["context"], "true_sentences": "sentence_id_true" in stimuli},
    )


# --------------------------------------------------------------------------- reading-time sources
def _open_assembly(path: Path):
    import xarray as xr

    _require(path, "Brain-Score assembly assy_Futrell2018.nc")
    try:
        dataset = xr.open_dataset(path, engine="h5netcdf")
    except (OSError, ValueError, ImportError) as error:
        raise DataError(f"{path}: cannot be read as netCDF-4 ({error}). Re-download assy_Futrell2018.nc.") from error
    arrays = [dataset[name] for name in dataset.data_vars if set(dataset[name].dims) == {"presentation", "subject"}]
    if len(arrays) != 1:
        raise DataError(f"{path}: expected one (presentation x subject) variable, found {list(dataset.data_vars)}.")
    array = arrays[0].transpose("presentation", "subject")
    missing = [c for c in ("word", "story_id", "word_id", "subject_id") if c not in array.coords]
    if missing:
        raise DataError(f"{path}: the assembly lacks coordinates {missing}; it is not Brain-Score's Futrell2018.")
    return array


def read_assembly(path: str | os.PathLike, words: pd.DataFrame) -> ReadingTimes:
    """Per-reader times from Brain-Score's assembly (alignment ``brainscore2022``)."""
    array = _open_assembly(Path(path))
    keys = pd.MultiIndex.from_arrays([array["story_id"].values.astype(int), array["word_id"].values.astype(int)])
    rows = io.align_rows(pd.MultiIndex.from_frame(words[["item", "zone"]]), keys, "assembly presentations", str(path))
    subjects = array["subject_id"].values.astype(str)
    matrix = np.asarray(array.values, dtype=np.float64)[rows]
    info = {
        "source": "assembly",
        "source_alignment": "brainscore2022",
        "files": {Path(path).name: io.sha256_file(path)},
    }
    return ReadingTimes(stimulus_ids(words["item"], words["zone"]), matrix, _reader_table(subjects), info)


def apply_exclusions(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep 100 < RT < 3000 ms from readers with more than 4 correct answers (``process_RTs.R``)."""
    keep = (frame["RT"] > MIN_RT_MS) & (frame["RT"] < MAX_RT_MS) & (frame["correct"] > MIN_CORRECT)
    return frame[keep], {"n_observations_before_exclusions": int(len(frame)), "n_observations": int(keep.sum())}


def process_raw_batches(batches: pd.DataFrame, words: pd.DataFrame, alignment: str) -> pd.DataFrame:
    """Turn raw ``batch*_pro.csv`` rows into word-aligned rows (zones of ``all_stories.tok``).

    ``naturalstories2021`` follows ``process_RTs.R``: drop the blank token at story 3 raw zone
    231, subtract 3 from later story-3 zones and 2 elsewhere. ``brainscore2022`` follows the
    earlier ``analysis_of_batches.R`` that Brain-Score's assembly came from: subtract 2 everywhere.
    Rows are then joined to the words on (item, zone), never on the word string.
    """
    frame = batches.copy()
    if alignment == "naturalstories2021":
        blank = (frame["item"] == SHIFTED_STORY) & (frame["zone"] == RAW_BLANK_ZONE)
        frame = frame[~blank]
        late = (frame["item"] == SHIFTED_STORY) & (frame["zone"] > RAW_BLANK_ZONE)
        frame["zone"] = np.where(late, frame["zone"] - 3, frame["zone"] - 2)
    else:
        frame["zone"] = frame["zone"] - 2
    return frame.drop(columns=["word"], errors="ignore").merge(
        words[["item", "zone"]], on=["item", "zone"], how="inner"
    )


_PER_READER_COLUMNS = ["WorkerId", "WorkTimeInSeconds", "correct", "item", "zone", "RT"]


def read_per_reader(paths: list[Path], words: pd.DataFrame, alignment: str) -> ReadingTimes:
    """Per-reader times from ``processed_RTs.tsv`` or from the raw batches."""
    raw = paths[0].name != "processed_RTs.tsv"
    frames = [_read_columns(p, _PER_READER_COLUMNS, sep="," if raw else "\t") for p in paths]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.astype({"item": "int64", "zone": "int64", "RT": "float64", "correct": "float64"})
    if raw:
        frame = process_raw_batches(frame, words, alignment)
        source_alignment = alignment
    else:
        source_alignment = "naturalstories2021"
    frame, counts = apply_exclusions(frame)
    ids = pd.Index(stimulus_ids(frame["item"], frame["zone"]))
    unknown = ~ids.isin(stimulus_ids(words["item"], words["zone"]))
    if unknown.any():
        raise DataError(
            f"{paths[0]}: {int(unknown.sum())} rows name words absent from the corpus (first: {ids[unknown][0]}). "
            "The file does not belong to this Natural Stories version."
        )
    table = pd.DataFrame(
        {"stimulus_id": ids, "reader": frame["WorkerId"].astype(str).to_numpy(), "RT": frame["RT"].to_numpy()}
    )
    counts["n_repeated_observations"] = int(table.duplicated(["stimulus_id", "reader"]).sum())
    wide = table.pivot_table(index="stimulus_id", columns="reader", values="RT", aggfunc="mean")
    wide = wide.reindex(stimulus_ids(words["item"], words["zone"]))
    info = {
        "source": "raw_batches" if raw else "processed_rts",
        "source_alignment": source_alignment,
        "files": {p.name: io.sha256_file(p) for p in paths},
        **counts,
    }
    return ReadingTimes(list(wide.index), wide.to_numpy(np.float64), _reader_table(wide.columns.to_numpy(str)), info)


def read_word_means(path: Path, words: pd.DataFrame) -> ReadingTimes:
    """Per-word mean times (``processed_wordinfo.tsv`` or ``brainscore_era_mean_rts.csv``), joined on item+zone."""
    wordinfo = path.name.endswith(".tsv")
    frame = _read_columns(path, ["zone", "item", "meanItemRT"], sep="\t" if wordinfo else ",", dtype={"word": str})
    frame = frame.astype({"item": "int64", "zone": "int64"})
    if frame.duplicated(["item", "zone"]).any():
        raise DataError(f"{path}: repeated (item, zone) rows; per-word means must have one row per word.")
    keys = pd.MultiIndex.from_frame(frame[["item", "zone"]])
    corpus = pd.MultiIndex.from_frame(words[["item", "zone"]])
    unknown = ~keys.isin(corpus)
    if unknown.any():
        raise DataError(
            f"{path}: {int(unknown.sum())} rows name words absent from the corpus (first: {keys[unknown][0]})."
        )
    means = frame.set_index(["item", "zone"])["meanItemRT"].reindex(corpus).to_numpy(np.float64)
    info = {
        "source": "wordinfo" if wordinfo else "brainscore_means",
        "source_alignment": "naturalstories2021" if wordinfo else "brainscore2022",
        "files": {path.name: io.sha256_file(path)},
    }
    readers = pd.DataFrame({"neuroid_id": ["mean"], "subject": ["mean"], "roi": ["mean"]})
    return ReadingTimes(stimulus_ids(words["item"], words["zone"]), means[:, None], readers, info)


def _reader_table(subjects: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"neuroid_id": subjects, "subject": subjects, "roi": "reader"})


def realign(
    matrix: np.ndarray, items: np.ndarray, zones: np.ndarray, source: str, target: str
) -> tuple[np.ndarray, int]:
    """Move reading times from one alignment to the other (rows in corpus order).

    In ``brainscore2022``, story 3 zone z >= 230 holds the time that ``naturalstories2021``
    gives zone z - 1, and zone 229 holds the blank token's time. Returns the realigned matrix
    and the number of words (rows) whose time the source does not hold (set to NaN).
    """
    if source == target:
        return matrix, 0
    out = matrix.copy()
    tail = np.flatnonzero((items == SHIFTED_STORY) & (zones >= SHIFT_START_ZONE))
    if len(tail) == 0:  # a corpus without the shifted part of story 3
        return out, 0
    if source == "naturalstories2021":  # to brainscore2022: shift later by one
        out[tail[1:]] = matrix[tail[:-1]]
        out[tail[0]] = np.nan  # the blank token's time is not in a realigned source
    else:  # brainscore2022 to naturalstories2021: shift earlier by one
        out[tail[:-1]] = matrix[tail[1:]]
        out[tail[-1]] = np.nan  # the story's last word was never aligned in the old version
    return out, 1


def resolve_source(files: dict, options: dict) -> str:
    """Return the reading-time source to use (``options.reading_times``, or the best one held)."""
    choice = options["reading_times"]
    if choice != "auto":
        return choice
    folder = Path(files["naturalstories"] or "")
    has = lambda name: bool(files["naturalstories"]) and (folder / name).is_file()  # noqa: E731
    if files["assembly"]:
        return "assembly"
    if has("processed_RTs.tsv"):
        return "processed_rts"
    if has("batch1_pro.csv") and has("batch2_pro.csv"):
        return "raw_batches"
    means = (
        ["brainscore_means", "wordinfo"]
        if options["alignment"] == "brainscore2022"
        else ["wordinfo", "brainscore_means"]
    )
    for source in means:
        if has(_MEAN_FILES[source]):
            return source
    raise DataError(
        f"no reading times found: files.assembly is unset and {folder} holds none of processed_RTs.tsv, "
        "batch1_pro.csv + batch2_pro.csv, brainscore_era_mean_rts.csv, processed_wordinfo.tsv. "
        "Download them (see the dataset's download block)."
    )


_MEAN_FILES = {"brainscore_means": "brainscore_era_mean_rts.csv", "wordinfo": "processed_wordinfo.tsv"}


def load_reading_times(files: dict, options: dict, words: pd.DataFrame | None = None) -> ReadingTimes:
    """Read the configured reading-time source and return it in the requested alignment."""
    files = {**FILES_DEFAULTS, **files}
    options = resolve_options(READER_OPTIONS, options)
    words = read_corpus_words(files["naturalstories"], files["assembly"]) if words is None else words
    source = resolve_source(files, options)
    folder = Path(files["naturalstories"] or "")
    if source == "assembly":
        if not files["assembly"]:
            raise ConfigError("options.reading_times is 'assembly' but files.assembly is not set.")
        times = read_assembly(files["assembly"], words)
    elif source == "processed_rts":
        times = read_per_reader([folder / "processed_RTs.tsv"], words, options["alignment"])
    elif source == "raw_batches":
        times = read_per_reader([folder / "batch1_pro.csv", folder / "batch2_pro.csv"], words, options["alignment"])
    else:
        times = read_word_means(folder / _MEAN_FILES[source], words)
    matrix, n_unavailable = realign(
        times.matrix,
        words["item"].to_numpy(),
        words["zone"].to_numpy(),
        times.info["source_alignment"],
        options["alignment"],
    )
    times.matrix = matrix
    times.info.update(
        alignment=options["alignment"],
        n_readers=int((times.readers["roi"] == "reader").sum()),
        n_words_realigned_unavailable=n_unavailable,
        n_words_without_time=int(np.all(np.isnan(matrix), axis=1).sum()),
    )
    return times


def prepare_responses(block: dict, stimuli_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Write the word x reader reading-time matrix (or one ``mean`` column) keyed by stimulus id."""
    files, options = block_settings(block)
    stimuli = io.read_stimuli(stimuli_path)
    words = read_corpus_words(files["naturalstories"], files["assembly"])
    times = load_reading_times(files, options, words)
    rows = io.align_rows(pd.Index(stimuli["stimulus_id"]), pd.Index(times.stimulus_ids), "reading times", str(out_path))
    io.write_responses(
        out_path,
        stimuli["stimulus_id"],
        times.matrix[rows],
        times.readers,
        {"dataset": "futrell2018", "stimuli_sha256": io.stimuli_checksum(stimuli_path), **times.info},
    )
