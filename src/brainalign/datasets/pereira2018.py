"""Pereira et al. (2018) sentences and language-network voxels, from Brain-Score's assembly.

The assembly ``assy_Pereira2018_language.nc`` holds 627 sentences (experiments
``243sentences`` and ``384sentences``) x 13,553 language-localizer voxels of 10 subjects;
a voxel is NaN in an experiment its subject did not take part in. As in Brain-Score,
each experiment is a partition scored on its own: its neuroids are those with no NaN in
its rows (12,155 for 384sentences, 8,031 for 243sentences). In the responses file a
neuroid dropped from a partition is NaN in all of that partition's rows, so "finite in
every row of the partition" selects exactly Brain-Score's neuroids.

Units are sentences. The model reads them as Brain-Score does: per experiment, grouped by
``passage_label`` (a 4-sentence passage in 384sentences; a whole topic of three passages
in 243sentences), groups in sorted order, sentences in assembly order within a group.
Grouped CV holds out topics (``cv_group`` = experiment + ``passage_category``), the unit
of leakage: passages of one topic share content words and the same scanning runs, so a
held-out passage whose topic stays in training is not new to the model. ``passage``
(experiment + ``passage_index``) names the passages, for passage-grouped CV
(``datasets.pereira2018.cv_groups: passage``). ``assembly_row`` keeps each sentence's position within its experiment
in the stored assembly (``data.sel(experiment=...)`` in Brain-Score), the order the
paper's shuffle splits are drawn over.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from brainalign import io
from brainalign.datasets import download, netcdf
from brainalign.errors import ConfigError
from brainalign.options import resolve_options

logger = logging.getLogger(__name__)

DATASET = "pereira2018"
DEFAULT_FILES = {"assembly": "resources/downloads/pereira2018/assy_Pereira2018_language.nc"}
VOXEL_SET = "Brain-Score language-localizer voxels (Pereira2018.language)"

PRESENTATION_COORDS = ("stimulus_id", "experiment", "passage_index", "passage_label", "passage_category")
NEUROID_COORDS = ("subject", "neuroid_id")
EXTRA_COLUMNS = ("story", "sentence_num", "stimulus_num")
EXPECTED_SENTENCES = {"243sentences": 243, "384sentences": 384}
EXPECTED_SUBJECTS = 10
EXPECTED_NEUROIDS = 13553
EXPECTED_KEPT = {"243sentences": 8031, "384sentences": 12155}
KNOWN_SENTENCES = (
    "Beekeeping encourages the conservation of local habitats.",
    "A woman is a female human adult.",
)


@dataclass
class PereiraData:
    """Sentences in reading order, their responses and the neuroid table.

    Attributes
    ----------
    stimuli : DataFrame
        The stimuli contract columns plus ``experiment``, ``passage_index``,
        ``passage_label``, ``passage_category``, ``assembly_row`` (and ``story``,
        ``sentence_num`` when present).
    matrix : ndarray
        Sentences x neuroids, in ``stimuli`` order; NaN where a neuroid is dropped from a partition.
    neuroids : DataFrame
        ``neuroid_id``, ``subject``, ``roi``.
    kept : dict
        Neuroids kept per partition.
    """

    stimuli: pd.DataFrame
    matrix: np.ndarray
    neuroids: pd.DataFrame
    kept: dict[str, int]


def _settings(block: Mapping[str, Any]) -> dict[str, Any]:
    settings = resolve_options("$defs.pereira2018_options", block.get("options"))
    if settings["format"] != "brainscore":
        raise ConfigError(
            f"{DATASET}: options.format {settings['format']!r} is not supported; use 'brainscore' "
            "(Brain-Score's assy_Pereira2018_language.nc)."
        )
    return settings


def load(block: Mapping[str, Any]) -> PereiraData:
    """Read and validate the assembly named by ``block['files']['assembly']``."""
    settings = _settings(block)
    path = download.require_file(DATASET, block, "assembly", DEFAULT_FILES["assembly"])
    return read_assembly(path, strict=bool(settings["strict_counts"]))


def read_assembly(path: str | os.PathLike, strict: bool = True) -> PereiraData:
    """Read a Brain-Score Pereira2018 assembly, check it, and drop NaN neuroids per experiment.

    Parameters
    ----------
    path : path
        The netCDF assembly.
    strict : bool
        Require the published counts (627 sentences, 10 subjects, 13,553 neuroids, 12,155 and
        8,031 neuroids kept per experiment) and known sentences; off for deliberate subsets.
    """
    source = str(path)
    array = netcdf.open_assembly(path)
    netcdf.require_coords(array, "presentation", PRESENTATION_COORDS, path)
    netcdf.require_coords(array, "neuroid", NEUROID_COORDS, path)
    presentations = netcdf.coords_frame(array, "presentation")
    text_column = next((c for c in ("stimulus", "sentence") if c in presentations), None)
    if text_column is None:
        netcdf.require_coords(array, "presentation", ["stimulus"], path)
    netcdf.check_unique(presentations["stimulus_id"], "stimulus_id values", source)
    neuroids = _neuroid_table(netcdf.coords_frame(array, "neuroid"), source)
    _check_counts(presentations, text_column, neuroids, source, strict)

    matrix = np.array(array.values, dtype=np.float64)
    kept = {}
    for experiment in sorted(presentations["experiment"].unique()):
        rows = (presentations["experiment"] == experiment).to_numpy()
        kept[experiment] = _drop_nan_neuroids(matrix, rows, experiment, source)
        if experiment in EXPECTED_KEPT:
            netcdf.check_count(
                kept[experiment],
                EXPECTED_KEPT[experiment],
                f"neuroids in {experiment} after dropping NaN neuroids",
                source,
                strict,
            )

    stimuli, order = _stimuli_table(presentations, text_column)
    return PereiraData(stimuli=stimuli, matrix=matrix[order], neuroids=neuroids, kept=kept)


def _neuroid_table(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    netcdf.check_unique(frame["neuroid_id"], "neuroid_id values", source)
    roi = frame["roi"] if "roi" in frame else "language"
    return pd.DataFrame({"neuroid_id": frame["neuroid_id"], "subject": frame["subject"], "roi": roi}).astype(str)


def _check_counts(
    presentations: pd.DataFrame, text_column: str, neuroids: pd.DataFrame, source: str, strict: bool
) -> None:
    counts = presentations["experiment"].value_counts()
    netcdf.check_count(len(presentations), sum(EXPECTED_SENTENCES.values()), "sentences", source, strict)
    for experiment, expected in EXPECTED_SENTENCES.items():
        netcdf.check_count(int(counts.get(experiment, 0)), expected, f"{experiment} sentences", source, strict)
    netcdf.check_count(neuroids["subject"].nunique(), EXPECTED_SUBJECTS, "subjects", source, strict)
    netcdf.check_count(len(neuroids), EXPECTED_NEUROIDS, "neuroids", source, strict)
    netcdf.check_present(presentations[text_column], KNOWN_SENTENCES, "sentences", source, strict)


def _drop_nan_neuroids(matrix: np.ndarray, rows: np.ndarray, experiment: str, source: str) -> int:
    """NaN-out, within ``rows``, every neuroid with a NaN there; return how many remain.

    Brain-Score's ``dropna('neuroid')`` drops a neuroid with any NaN in the experiment:
    all-NaN ones (the subject did not take part) and, should any exist, partly-NaN ones.
    """
    block = matrix[rows]
    missing = np.isnan(block)
    all_nan = missing.all(axis=0)
    partly_nan = missing.any(axis=0) & ~all_nan
    logger.info(
        "%s: %s: dropped %d all-NaN neuroids (subjects without this experiment), kept %d",
        source,
        experiment,
        int(all_nan.sum()),
        int((~missing.any(axis=0)).sum()),
    )
    if partly_nan.any():
        logger.warning(
            "%s: %s: also dropped %d neuroids with some NaN values, as Brain-Score does",
            source,
            experiment,
            int(partly_nan.sum()),
        )
    block[:, all_nan | partly_nan] = np.nan
    matrix[rows] = block
    return int((~(all_nan | partly_nan)).sum())


def _stimuli_table(presentations: pd.DataFrame, text_column: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Sentences in Brain-Score's reading order with the stimuli contract columns.

    Returns
    -------
    stimuli : DataFrame
        With ``assembly_row``, the sentence's position within its experiment as stored.
    order : index array
        Each stimuli row's presentation index in the assembly.
    """
    frame = presentations.assign(
        stored_index=np.arange(len(presentations)),
        assembly_row=presentations.groupby("experiment").cumcount().to_numpy(),
    )
    frame = frame.sort_values(["experiment", "passage_label", "stored_index"], kind="stable")
    experiment = frame["experiment"]
    frame = frame.assign(
        text=frame[text_column],
        partition=experiment,
        context_group=experiment + "." + frame["passage_label"],
        cv_group=experiment + "." + frame["passage_category"].astype(str),
        passage=experiment + "." + frame["passage_index"].astype(str),
    )
    frame["position"] = frame.groupby("context_group").cumcount()
    columns = [*io.STIMULI_COLUMNS, "experiment", "passage", "passage_index", "passage_label", "passage_category"]
    columns += [c for c in EXTRA_COLUMNS if c in frame]
    return frame[[*columns, "assembly_row"]].reset_index(drop=True), frame["stored_index"].to_numpy()


def _metadata(data: PereiraData, block: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dataset": DATASET,
        "source": (block.get("files") or {}).get("assembly", DEFAULT_FILES["assembly"]),
        "voxel_set": VOXEL_SET,
        "neuroids_per_partition": data.kept,
    }


def prepare_stimuli(block: Mapping[str, Any], out_path: str | os.PathLike) -> None:
    """Write the 627 sentences (``results/stimuli/pereira2018.parquet``)."""
    data = load(block)
    io.write_stimuli(out_path, data.stimuli, _metadata(data, block))


def prepare_responses(block: Mapping[str, Any], stimuli_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Write sentences x neuroids (rows in the stimuli file's order, ``experiment`` per row)."""
    data = load(block)
    source = str((block.get("files") or {}).get("assembly", DEFAULT_FILES["assembly"]))
    stimuli = netcdf.matching_stimuli(stimuli_path, data.stimuli["stimulus_id"], source)
    order = io.align_rows(stimuli["stimulus_id"], data.stimuli["stimulus_id"], "assembly", source)
    rows = pd.DataFrame({"experiment": data.stimuli["experiment"].to_numpy()[order]})
    io.write_responses(
        out_path, stimuli["stimulus_id"], data.matrix[order], data.neuroids, _metadata(data, block), rows=rows
    )
