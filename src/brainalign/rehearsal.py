"""Dress-rehearsal datasets: the paper's four datasets in their exact on-disk formats, with
simulated responses whose answer is known.

The generator writes each layout exactly as its reader expects the real file (Brain-Score
netCDF assemblies for Pereira2018, Blank2014 and Futrell2018; the Toneva folder and the ROI
mask npz for Wehbe2014), reads it back with the real reader to get the exact stimuli table,
simulates responses and rewrites the file. The text is the real stimulus text where the
project's reference data (``../shared/data``) is present (Pereira2018 sentences, Blank2014
fragments, Natural Stories words; Wehbe2014 gets Natural Stories words, never Harry Potter),
else the demo texts (``resources/demo/``), so the rehearsal runs anywhere.

Generative model of a neural dataset (``block['rehearsal']``), for every neuroid::

    y = sqrt(signal_fraction) * S w + sqrt(control_fraction) * C u + sqrt(1 - both) * e

- ``S``: variant ``planted``: the first ``n_components`` principal components of the source
  model's ``source_layer`` under each readout the protocols read (``aw2024`` and ``unit``,
  side by side), built into rows as the robust protocol builds its LLM band (time series:
  averaged per TR, FIR-delayed); variant ``null``: absent (``signal_fraction`` must be 0).
- ``C``: the robust protocol's ``length`` and ``position`` control bands (word counts or word
  rate, position in the passage, story or run).
- ``e``: AR(1) noise with coefficient ``autocorrelation`` within each context group or run.

Each term has unit variance over rows, weights are standard normal. The tuned member of the
planted pair carries the signal, its base none. Futrell2018's readers follow
:func:`brainalign.datasets.demo_reading_times.simulate_readers` on the source model's
surprisal (mean of both readouts), each reader skipping some stories (NaN).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from brainalign import io
from brainalign.datasets import blank2014, futrell2018, pereira2018, wehbe2014
from brainalign.datasets.demo_fmri import principal_components, random_mixture, unit_variance
from brainalign.datasets.demo_reading_times import simulate_readers, word_length
from brainalign.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

SHARED_DATA = Path("../shared/data")
DEMO_FOLDER = Path("resources/demo")
LABEL = "REHEARSAL DATA (real file formats, simulated responses; not human data)"
READOUTS = ("aw2024", "unit")
"""Readouts the planted signal is built from: the features each protocol reads."""
DESIGN_OPTIONS = {"controls": ["length", "position"], "oasm_width": 1.0, "cv_groups": "cv_group", "block_trs": 20}

PEREIRA_EXPERIMENTS = {"384sentences": (96, 4, 24), "243sentences": (81, 3, 27)}
"""Demo-text fallback: passages, sentences per passage and topics of each experiment."""
BLANK_STORIES = {
    "Aqua": 143,
    "Boar": 153,
    "Elvis": 135,
    "HighSchool": 157,
    "KingOfBirds": 181,
    "MatchstickSeller": 181,
    "MrSticky": 189,
    "Tulips": 178,
}
BLANK_FROIS = (
    "LIFGorb",
    "LIFG",
    "LMFG",
    "LAntTemp",
    "LPostTemp",
    "LAngG",
    "RIFGorb",
    "RIFG",
    "RMFG",
    "RAntTemp",
    "RPostTemp",
    "RAngG",
)
WEHBE_RUN_TRS = (324, 337, 349, 341)
"""TRs per run (1,351 in all, 1,211 after trimming 20 + 15 per run)."""
WEHBE_WORDS = 5176
WEHBE_PAUSE_SLOTS = 2
"""Word slots (0.5 s each) of a pause after a sentence end: 1 s, shorter than a TR."""
WEHBE_MASK_SUBJECTS = ("F", "G", "H", "I", "J", "K", "L", "M", "N")
"""Mask subjects of the shipped npz (G has a mask but no fMRI)."""
FUTRELL_ITEMS = 10

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        # (experiments, voxels) per subject: 12,155 neuroids in 384sentences, 8,031 in 243sentences,
        # 13,553 in all, as in Brain-Score's Pereira2018.language.
        "pereira2018": [(("384sentences", "243sentences"), n) for n in (1105,) * 5 + (1108,)]
        + [(("384sentences",), 2761)] * 2
        + [(("243sentences",), 699)] * 2,
        "blank2014": 5,
        "wehbe2014": {"voxels": 500, "per_roi": 30},
        "futrell2018": {"readers": 180, "stories": 10},
    },
    "ci": {
        "pereira2018": [(("384sentences", "243sentences"), 12)] * 6
        + [(("384sentences",), 12)] * 2
        + [(("243sentences",), 12)] * 2,
        "blank2014": 5,
        "wehbe2014": {"voxels": 60, "per_roi": 4},
        # aw2024 surprisal tokenizes every growing context of the one-stream corpus afresh
        # (quadratic in its length): 2 of the 10 stories keep CI within minutes.
        "futrell2018": {"readers": 24, "stories": 2},
    },
}
"""Subjects, voxels and readers per layout and size; stimuli are the real counts, except
Futrell2018's stories at CI size."""


@dataclass
class TextSources:
    """Where each layout's text comes from: the shared reference data or the demo texts."""

    shared: Path | None
    demo: Path

    @property
    def label(self) -> str:
        return f"reference data in {self.shared}" if self.shared else f"demo texts in {self.demo}"


def text_sources(shared: str | Path = SHARED_DATA, demo: str | Path = DEMO_FOLDER) -> TextSources:
    """The shared reference data when every file the generator reads is there, else the demo texts."""
    shared = Path(shared)
    needed = ["pereira2018/stimulus_set.csv", "blank2014/story_fragments.npz", "naturalstories/all_stories.tok"]
    if all((shared / name).is_file() for name in needed):
        return TextSources(shared, Path(demo))
    logger.warning("%s lacks the reference texts: the rehearsal uses the demo texts in %s", shared, demo)
    return TextSources(None, Path(demo))


def settings_of(block: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The dataset's ``rehearsal`` settings, checked for a consistent variant."""
    settings = dict(block.get("rehearsal") or {})
    if not settings:
        raise ConfigError(f"datasets.{name} has no rehearsal block; only rehearsal datasets are generated.")
    if settings["variant"] == "null" and settings["signal_fraction"] != 0:
        raise ConfigError(
            f"datasets.{name}.rehearsal: a null variant has signal_fraction 0, not {settings['signal_fraction']}."
        )
    if settings["signal_fraction"] + settings["control_fraction"] >= 1:
        raise ConfigError(
            f"datasets.{name}.rehearsal: signal_fraction + control_fraction must stay below 1 (noise is left)."
        )
    return settings


# --------------------------------------------------------------------------- texts
def demo_words(demo: Path) -> list[str]:
    """The demo story's words, in order."""
    return (demo / "story.txt").read_text().split()


def natural_stories_words(texts: TextSources) -> pd.DataFrame:
    """``item``, ``zone``, ``word`` of the Natural Stories corpus, or the demo story cut into 10 items."""
    if texts.shared:
        return futrell2018.read_corpus_words(texts.shared / "naturalstories")
    words = demo_words(texts.demo)
    item = np.arange(len(words)) * FUTRELL_ITEMS // len(words) + 1
    zone = pd.Series(item).groupby(item).cumcount().to_numpy() + 1
    return pd.DataFrame({"item": item, "zone": zone, "word": words})


def pereira_sentences(texts: TextSources) -> pd.DataFrame:
    """The 627 sentences with Brain-Score's presentation columns, in the stimulus set's order."""
    if texts.shared:
        frame = pd.read_csv(texts.shared / "pereira2018" / "stimulus_set.csv", index_col=0)
        return frame.reset_index(drop=True)
    passages = pd.read_csv(texts.demo / "passages.tsv", sep="\t")
    sentences = passages["sentence"].str.strip().tolist()
    rows, number = [], 0
    for experiment, (n_passages, per_passage, n_topics) in PEREIRA_EXPERIMENTS.items():
        for passage in range(n_passages):
            topic = f"topic{passage % n_topics:02d}"
            # 243sentences groups a whole topic under one passage_label, as Brain-Score does
            label = topic if experiment == "243sentences" else f"{topic}.{passage}"
            for _ in range(per_passage):
                rows.append(
                    (
                        sentences[number % len(sentences)],
                        number,
                        f"{experiment}.{number}",
                        experiment,
                        f"{experiment}.{topic}",
                        passage + 1,
                        label,
                        topic,
                    )
                )
                number += 1
    columns = [
        "sentence",
        "sentence_num",
        "stimulus_id",
        "experiment",
        "story",
        "passage_index",
        "passage_label",
        "passage_category",
    ]
    return pd.DataFrame(rows, columns=columns)


def blank_fragments(texts: TextSources) -> dict[str, list[str]]:
    """Each story's TR fragments (the words heard in each 2-s bin), stories in the real lengths."""
    if texts.shared:
        with np.load(texts.shared / "blank2014" / "story_fragments.npz", allow_pickle=False) as stored:
            return {story: [str(f) for f in stored[story]] for story in stored.files}
    words, cursor, fragments = demo_words(texts.demo), 0, {}
    for story, n_trs in BLANK_STORIES.items():
        fragments[story] = []
        for tr in range(n_trs):
            size = 2 + tr % 3
            fragments[story].append(" ".join(words[(cursor + k) % len(words)] for k in range(size)) + " ")
            cursor += size
    return fragments


# --------------------------------------------------------------------------- files
def write_assembly(
    path: Path, values: np.ndarray, dims: tuple[str, str], coords: Mapping[str, tuple[str, Any]]
) -> None:
    """Write a Brain-Score-style netCDF assembly: one variable ``data`` over ``dims`` with flat coordinates."""
    array = xr.DataArray(values, dims=dims, coords={name: (dim, np.asarray(v)) for name, (dim, v) in coords.items()})
    with io.atomic_path(path) as temporary:
        xr.Dataset({"data": array}).to_netcdf(temporary, engine="h5netcdf")


def pereira_coords(sentences: pd.DataFrame, subjects: list[tuple[tuple[str, ...], int]]) -> tuple[dict, np.ndarray]:
    """The assembly's coordinates and the (presentation x neuroid) mask of measured values."""
    presentation = {
        "stimulus": sentences["sentence"],
        "stimulus_id": sentences["stimulus_id"],
        "sentence": sentences["sentence"],
        "experiment": sentences["experiment"],
        "passage_index": sentences["passage_index"],
        "passage_label": sentences["passage_label"],
        "passage_category": sentences["passage_category"],
        "story": sentences["story"],
        "stimulus_num": sentences["sentence_num"],
    }
    subject, voxel, experiments = [], [], []
    for index, (done, n_voxels) in enumerate(subjects):
        subject += [f"{index + 1:03d}"] * n_voxels
        voxel += list(range(n_voxels))
        experiments += [done] * n_voxels
    voxel = np.asarray(voxel)
    rois = np.asarray(["LH_AntTemp", "LH_IFG", "LH_IFGorb", "LH_MFG", "LH_PostTemp", "LH_AngG"])[voxel % 6]
    neuroid = {
        "subject": subject,
        "voxel_num": voxel,
        "neuroid_id": [f"{s}.{v}" for s, v in zip(subject, voxel)],
        "filter_strategy": [""] * len(voxel),
        "atlas_selection": ["from90to100prcnt"] * len(voxel),
        "roi": rois,
        "indices_in_3d": voxel * 7 + 3,
        "col_to_coord_1": voxel % 79,
        "col_to_coord_2": voxel // 79 % 95,
        "col_to_coord_3": voxel // 7505,
    }
    coords = {
        **{k: ("presentation", v) for k, v in presentation.items()},
        **{k: ("neuroid", v) for k, v in neuroid.items()},
    }
    measured = np.array([[e in done for done in experiments] for e in sentences["experiment"]])
    return coords, measured


def blank_coords(fragments: dict[str, list[str]], n_subjects: int, rng: np.random.Generator) -> dict:
    """The assembly's coordinates, presentations in a shuffled stored order (stories interleaved)."""
    rows = []
    for story, chunks in fragments.items():
        sentence, part = 1, 1
        for tr, chunk in enumerate(chunks):
            rows.append((chunk, f"{story}.{sentence}.{part}", story, sentence, part, tr * 2.0))
            closes = chunk.rstrip().endswith((".", "!", "?", '."', '?"', '!"'))
            sentence, part = (sentence + 1, 1) if closes else (sentence, part + 1)
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
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    subjects = np.repeat([f"{s + 288}" for s in range(n_subjects)], len(BLANK_FROIS))
    frois = np.tile(BLANK_FROIS, n_subjects)
    return {
        **{name: ("presentation", frame[name].to_numpy()) for name in frame.columns},
        "subject_id": ("neuroid", subjects),
        "fROI_area": ("neuroid", frois),
        "neuroid_id": ("neuroid", [f"{s}.{f}" for s, f in zip(subjects, frois)]),
    }


def wehbe_timeline(words: list[str], rng: np.random.Generator) -> wehbe2014.Timeline:
    """TR starts every 2 s without gaps (as the real ``time_fmri.npy``), runs 1-4, and word
    onsets from each run's third TR.

    Words last 0.5 s; the time each run has left over goes to 1-s pauses after random
    sentence ends, so the word rate (words per TR, a control band) varies within runs. A
    pause is shorter than a TR, so every TR between a run's first and last word holds a
    word, as in the real files, where a TR without words would zero the paper pipeline's
    design columns for its whole run (:mod:`brainalign.encoding.toneva`).
    """
    tr_time, tr_run, capacity, start = [], [], [], 0.0
    for run, n_trs in enumerate(WEHBE_RUN_TRS, start=1):
        tr_time.append(start + 2.0 * np.arange(n_trs))
        tr_run.append(np.full(n_trs, run))
        capacity.append(4 * (n_trs - 4))
        start += 2.0 * n_trs
    capacity = np.asarray(capacity)
    per_run = np.floor(len(words) * capacity / capacity.sum()).astype(int)
    per_run[-1] = len(words) - per_run[:-1].sum()
    onsets, first = [], 0
    for times, n_words, slots in zip(tr_time, per_run, capacity):
        run_words = words[first : first + n_words]
        ends = np.flatnonzero([w.endswith((".", "!", "?")) for w in run_words[:-1]])
        n_pauses = min(len(ends), int((slots - n_words) // WEHBE_PAUSE_SLOTS))
        pause = np.zeros(n_words)
        pause[rng.choice(ends, size=n_pauses, replace=False) + 1] = 0.5 * WEHBE_PAUSE_SLOTS
        onsets.append(times[2] + 0.25 + 0.5 * np.arange(n_words) + np.cumsum(pause))
        first += n_words
    return wehbe2014.Timeline(
        np.concatenate(tr_time), np.concatenate(tr_run), np.concatenate(onsets), np.asarray(words)
    )


def write_wehbe_timeline(folder: Path, timeline: wehbe2014.Timeline) -> None:
    """The Toneva folder's timing files (numbers as float/int, words as a unicode array: no pickle)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in (
        ("time_fmri", timeline.tr_time),
        ("runs_fmri", timeline.tr_run),
        ("time_words_fmri", timeline.word_time),
        ("words_fmri", timeline.words.astype(str)),
    ):
        np.save(folder / f"{name}.npy", values)


def write_wehbe_masks(path: Path, voxels: int, per_roi: int) -> None:
    """Non-overlapping language-ROI masks per subject (``all``: their union), keys ``{subject}__{roi}``."""
    masks = {}
    for index, subject in enumerate(WEHBE_MASK_SUBJECTS):
        owner = np.full(voxels, -1)
        # ROI blocks start at a subject-specific offset, so subjects' voxel spaces differ
        offset = index % max(1, voxels - per_roi * len(wehbe2014.LANGUAGE_ROIS))
        for roi in range(len(wehbe2014.LANGUAGE_ROIS)):
            owner[offset + roi * per_roi : offset + (roi + 1) * per_roi] = roi
        masks[f"{subject}__all"] = owner >= 0
        for roi, name in enumerate(wehbe2014.LANGUAGE_ROIS):
            masks[f"{subject}__{name}"] = owner == roi
    with io.atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **masks)


# --------------------------------------------------------------------------- simulation
def ar1_noise(streams: np.ndarray, coefficient: float, n_outputs: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance AR(1) noise, restarting at each stream (rows in stream order)."""
    innovations = rng.standard_normal((len(streams), n_outputs))
    noise = np.empty_like(innovations)
    scale = np.sqrt(1 - coefficient**2)
    for row in range(len(streams)):
        starts = row == 0 or streams[row] != streams[row - 1]
        noise[row] = innovations[row] if starts else coefficient * noise[row - 1] + scale * innovations[row]
    return noise


def neural_design(
    features: np.ndarray, stimuli: pd.DataFrame, response_rows: pd.DataFrame | None, delays: list[int]
) -> dict:
    """The robust protocol's design on these rows: the features as its LLM band, its control bands."""
    from brainalign.encoding.robust import sentence_design, time_series_design

    options = {**DESIGN_OPTIONS, "delays": list(delays)}
    if response_rows is None:
        return sentence_design(features, stimuli, options)
    return time_series_design(features, stimuli, response_rows, options)


def simulate_neural(design: dict, settings: Mapping[str, Any], n_neuroids: int) -> np.ndarray:
    """Rows x neuroids from the design's LLM band, its controls and AR(1) noise (module docstring)."""
    rng = np.random.default_rng(settings["seed"])
    signal_fraction, control_fraction = settings["signal_fraction"], settings["control_fraction"]
    controls = unit_variance(np.hstack(list(design["controls"].values())))
    responses = np.sqrt(control_fraction) * random_mixture(controls, n_neuroids, rng)
    if signal_fraction:
        responses += np.sqrt(signal_fraction) * random_mixture(design["llm"], n_neuroids, rng)
    noise = ar1_noise(design["streams"], settings["autocorrelation"], n_neuroids, rng)
    return responses + np.sqrt(1 - signal_fraction - control_fraction) * noise


@dataclass
class SourceModel:
    """The planted model: its config block, fetched manifest and the extraction settings."""

    block: dict[str, Any]
    manifest: Path
    extraction: dict[str, Any]


def planted_features(stimuli: pd.DataFrame, source: SourceModel, layer: int, n_components: int) -> np.ndarray:
    """Principal components of the source layer under each readout, side by side (stimuli order)."""
    from brainalign.models.extraction import extract_activations

    with tempfile.TemporaryDirectory() as scratch:
        stimuli_path = Path(scratch) / "stimuli.parquet"
        io.write_stimuli(stimuli_path, stimuli, {"dataset": "rehearsal"})
        paths = {readout: Path(scratch) / f"{readout}.parquet" for readout in READOUTS}
        extract_activations(stimuli_path, source.manifest, source.block, source.extraction, paths)
        blocks = []
        for path in paths.values():
            ids, values = io.read_activations(path, layer)
            values = values[io.align_rows(pd.Index(stimuli["stimulus_id"]), ids, "activations", str(path))]
            blocks.append(principal_components(values.astype(np.float64), n_components))
    return np.hstack(blocks)


def planted_surprisal(stimuli: pd.DataFrame, source: SourceModel) -> np.ndarray:
    """The source model's surprisal (bits), mean of both readouts, in stimuli order."""
    from brainalign.models.surprisal import compute_surprisal

    with tempfile.TemporaryDirectory() as scratch:
        stimuli_path = Path(scratch) / "stimuli.parquet"
        io.write_stimuli(stimuli_path, stimuli, {"dataset": "rehearsal"})
        paths = {readout: Path(scratch) / f"{readout}.parquet" for readout in READOUTS}
        compute_surprisal(stimuli_path, source.manifest, source.block, source.extraction, paths)
        bits = []
        for path in paths.values():
            table = io.read_table(path)
            order = io.align_rows(
                pd.Index(stimuli["stimulus_id"]), pd.Index(table["stimulus_id"]), "surprisal", str(path)
            )
            bits.append(table["surprisal_bits"].to_numpy(np.float64)[order])
    return np.mean(bits, axis=0)


def signal_features(stimuli: pd.DataFrame, settings: Mapping[str, Any], source: SourceModel | None) -> np.ndarray:
    """The planted features, or no column for a null variant."""
    if settings["variant"] == "null":
        return np.zeros((len(stimuli), 0))
    if source is None:
        raise ConfigError("a planted rehearsal dataset needs its source model (rehearsal.source_model).")
    return planted_features(stimuli, source, settings["source_layer"], settings["n_components"])


# --------------------------------------------------------------------------- layouts
def generate_pereira(
    block: Mapping[str, Any], settings: Mapping[str, Any], texts: TextSources, source: SourceModel | None
) -> None:
    """Pereira2018.language: 627 sentences in the stimulus set's order, subjects NaN in experiments they skipped."""
    path = Path(block["files"]["assembly"])
    sentences = pereira_sentences(texts)
    coords, measured = pereira_coords(sentences, SIZES[settings["size"]]["pereira2018"])
    write_assembly(path, np.where(measured, 0.0, np.nan), ("presentation", "neuroid"), coords)
    stimuli = pereira2018.load(block).stimuli
    design = neural_design(signal_features(stimuli, settings, source), stimuli, None, [])
    simulated = simulate_neural(design, settings, measured.shape[1])
    stored = pd.Index(sentences["stimulus_id"]).get_indexer(stimuli["stimulus_id"])
    values = np.empty_like(simulated)
    values[stored] = simulated
    write_assembly(path, np.where(measured, values, np.nan).astype(np.float32), ("presentation", "neuroid"), coords)


def generate_blank(
    block: Mapping[str, Any], settings: Mapping[str, Any], texts: TextSources, source: SourceModel | None
) -> None:
    """Blank2014.fROI: 1,317 TR fragments of 8 stories, 5 subjects x 12 fROIs, stored in shuffled order."""
    path = Path(block["files"]["assembly"])
    n_subjects = SIZES[settings["size"]]["blank2014"]
    coords = blank_coords(blank_fragments(texts), n_subjects, np.random.default_rng(settings["seed"]))
    n_rows, n_neuroids = len(coords["stimulus_id"][1]), n_subjects * len(BLANK_FROIS)
    write_assembly(path, np.zeros((n_rows, n_neuroids)), ("presentation", "neuroid"), coords)
    data = blank2014.load(block)
    design = neural_design(signal_features(data.stimuli, settings, source), data.stimuli, None, [])
    values = np.empty((n_rows, n_neuroids))
    values[data.stimuli["assembly_row"].to_numpy()] = simulate_neural(design, settings, n_neuroids)
    write_assembly(path, values.astype(np.float32), ("presentation", "neuroid"), coords)


def generate_wehbe(
    block: Mapping[str, Any], settings: Mapping[str, Any], texts: TextSources, source: SourceModel | None
) -> None:
    """Wehbe2014 Toneva folder: 5,176 words, 1,351 TRs in 4 runs, run edges absent from the subject files."""
    folder, size = Path(block["files"]["folder"]), SIZES[settings["size"]]["wehbe2014"]
    words = natural_stories_words(texts)["word"].tolist() if texts.shared else demo_words(texts.demo)
    rng = np.random.default_rng(settings["seed"])
    timeline = wehbe_timeline([words[i % len(words)] for i in range(WEHBE_WORDS)], rng)
    write_wehbe_timeline(folder, timeline)
    write_wehbe_masks(Path(block["files"]["roi_masks"]), size["voxels"], size["per_roi"])
    options = wehbe2014.reader_settings(block)
    stimuli = wehbe2014.stimuli_table(wehbe2014.read_timeline(block))
    trimmed = wehbe2014.trimmed_mask(timeline.tr_run, int(options["trim_start"]), int(options["trim_end"]))
    rows = pd.DataFrame(
        {
            "stimulus_id": wehbe2014.tr_ids(len(timeline.tr_time)),
            "run": timeline.tr_run,
            "time": timeline.tr_time,
            "trimmed": trimmed,
        }
    )
    design = neural_design(signal_features(stimuli, settings, source), stimuli, rows, settings["delays"])
    n_subjects = len(options["subjects"])
    simulated = simulate_neural(design, settings, n_subjects * size["voxels"])
    for index, subject in enumerate(options["subjects"]):
        columns = slice(index * size["voxels"], (index + 1) * size["voxels"])
        np.save(folder / f"data_subject_{subject}.npy", simulated[~trimmed, columns].astype(np.float32))


def generate_futrell(
    block: Mapping[str, Any], settings: Mapping[str, Any], texts: TextSources, source: SourceModel | None
) -> None:
    """Futrell2018: the corpus folder and a (word x reader) assembly, each reader skipping some stories."""
    folder, path = Path(block["files"]["naturalstories"]), Path(block["files"]["assembly"])
    size = SIZES[settings["size"]]["futrell2018"]
    words = natural_stories_words(texts)
    words = words[words["item"] <= size["stories"]]
    folder.mkdir(parents=True, exist_ok=True)
    words[["word", "zone", "item"]].to_csv(folder / "all_stories.tok", sep="\t", index=False)
    if texts.shared:
        io.write_text(
            folder / "stories-aligned.conllx", (texts.shared / "naturalstories" / "stories-aligned.conllx").read_text()
        )
    options = futrell2018.block_settings(dict(block))[1]
    stimuli = futrell2018.load_stimuli({"naturalstories": str(folder)}, options["context"])
    if source is None:
        raise ConfigError("the Futrell2018 rehearsal plants surprisal: set rehearsal.source_model.")
    n_readers = size["readers"]
    simulation = {**settings["reading_times"], "n_readers": n_readers, "seed": settings["seed"]}
    times = simulate_readers(planted_surprisal(stimuli, source), word_length(stimuli["text"]), simulation).astype(
        np.float64
    )
    rng = np.random.default_rng(settings["seed"] + 1)
    items = stimuli["item"].to_numpy()
    for reader in range(n_readers):
        stories = np.unique(items)
        read = rng.choice(stories, size=rng.integers(max(1, len(stories) // 3), len(stories) + 1), replace=False)
        times[~np.isin(items, read), reader] = np.nan
    readers = [f"A{reader:05d}" for reader in range(n_readers)]
    coords = {
        "word": ("presentation", stimuli["text"].to_numpy()),
        "stimulus_id": ("presentation", stimuli["stimulus_id"].to_numpy()),
        "story_id": ("presentation", items),
        "word_id": ("presentation", stimuli["zone"].to_numpy()),
        "sentence_id": ("presentation", stimuli["sentence_id"].to_numpy()),
        "word_within_sentence_id": ("presentation", stimuli["word_in_sentence"].to_numpy()),
        "subject_id": ("subject", readers),
    }
    write_assembly(path, times.astype(np.float32), ("presentation", "subject"), coords)


GENERATORS = {
    "pereira2018": generate_pereira,
    "blank2014": generate_blank,
    "wehbe2014": generate_wehbe,
    "futrell2018": generate_futrell,
}


def generated_files(block: Mapping[str, Any]) -> dict[str, str]:
    """The block's files, which the generator writes."""
    return {key: str(path) for key, path in (block.get("files") or {}).items() if path}


def generate_rehearsal_data(
    name: str,
    block: Mapping[str, Any],
    manifest_path: str | Path,
    source_block: Mapping[str, Any] | None = None,
    source_manifest: str | Path | None = None,
    extraction: Mapping[str, Any] | None = None,
) -> None:
    """Write one rehearsal dataset's files in its real format, then a manifest of them.

    Parameters
    ----------
    name : str
        The dataset's config key.
    block : mapping
        Its config block (``reader``, ``files``, ``options``, ``rehearsal``).
    manifest_path : path
        The manifest to write (files, checksums, text source, settings).
    source_block, source_manifest : mapping and path, optional
        The planted model's config block and fetched manifest (planted variants only).
    extraction : mapping, optional
        The extraction settings the workflow uses (its features are the ones planted).
    """
    settings = settings_of(block, name)
    texts = text_sources()
    logger.info(
        "%s: %s layout, %s variant, %s size, text from the %s",
        name,
        settings["layout"],
        settings["variant"],
        settings["size"],
        texts.label,
    )
    source = None
    if source_manifest:
        options = {**(extraction or {}), "time_series": bool(block.get("time_series"))}
        source = SourceModel(dict(source_block or {}), Path(source_manifest), options)
    GENERATORS[settings["layout"]](block, settings, texts, source)
    files = {
        key: {"path": path, "sha256": io.sha256_file(path) if Path(path).is_file() else None}
        for key, path in generated_files(block).items()
    }
    missing = [entry["path"] for entry in files.values() if not Path(entry["path"]).exists()]
    if missing:
        raise DataError(f"{name}: the generator did not write {missing}; check datasets.{name}.files.")
    io.write_json(
        manifest_path,
        io.result_metadata(
            dataset=name, reader=block["reader"], label=LABEL, text_source=texts.label, rehearsal=settings, files=files
        ),
    )
