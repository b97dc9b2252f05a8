"""Blank et al. (2014) story listening: language fROI time courses, from Brain-Score's assembly.

The assembly ``assy_Blank2014_fROI.nc`` holds 1,317 TRs (2 s) over 8 stories x 60 neuroids
(12 language fROIs in each of 5 subjects). Each presentation is the chunk of story text
heard during one TR, with the 4 s BOLD delay already applied in the chunking, so one unit
is one response row (``response_id`` = ``stimulus_id``). Chunks carry their own spacing
(Brain-Score joins them with ``""``) and are kept verbatim. The model reads each story as
one stream, stories in sorted order as Brain-Score does, chunks in story order
(sentence, then part); grouped CV holds out whole stories. ``assembly_row`` keeps each
chunk's position in the stored assembly, the order the paper's shuffle splits are drawn
over.
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
from brainalign.options import resolve_options

logger = logging.getLogger(__name__)

DATASET = "blank2014"
DEFAULT_FILES = {"assembly": "resources/downloads/blank2014/assy_Blank2014_fROI.nc"}

PRESENTATION_COORDS = ("stimulus", "stimulus_id", "story", "sentence_number_in_story", "part_number_in_sentence")
NEUROID_COORDS = ("subject_id", "fROI_area", "neuroid_id")
EXPECTED_TRS = 1317
EXPECTED_NEUROIDS = 60
EXPECTED_SUBJECTS = 5
EXPECTED_FROIS = 12
EXPECTED_STORIES = ("Aqua", "Boar", "Elvis", "HighSchool", "KingOfBirds", "MatchstickSeller", "MrSticky", "Tulips")
KNOWN_CHUNKS = ("Once upon a ",)


@dataclass
class BlankData:
    """TR chunks in listening order, their fROI responses and the neuroid table."""

    stimuli: pd.DataFrame
    matrix: np.ndarray
    neuroids: pd.DataFrame


def load(block: Mapping[str, Any]) -> BlankData:
    """Read and validate the assembly named by ``block['files']['assembly']``."""
    settings = resolve_options("$defs.blank2014_options", block.get("options"))
    path = download.require_file(DATASET, block, "assembly", DEFAULT_FILES["assembly"])
    return read_assembly(path, strict=bool(settings["strict_counts"]))


def read_assembly(path: str | os.PathLike, strict: bool = True) -> BlankData:
    """Read a Brain-Score Blank2014 fROI assembly and check it as Brain-Score's tests do.

    Parameters
    ----------
    path : path
        The netCDF assembly.
    strict : bool
        Require 1,317 TRs, 60 neuroids, 5 subjects, 12 fROIs, the 8 stories and a known
        chunk; off for deliberate subsets.
    """
    source = str(path)
    array = netcdf.open_assembly(path)
    netcdf.require_coords(array, "presentation", PRESENTATION_COORDS, path)
    netcdf.require_coords(array, "neuroid", NEUROID_COORDS, path)
    presentations = netcdf.coords_frame(array, "presentation")
    neuroid_coords = netcdf.coords_frame(array, "neuroid")
    netcdf.check_unique(presentations["stimulus_id"], "stimulus_id values", source)
    netcdf.check_unique(neuroid_coords["neuroid_id"], "neuroid_id values", source)
    neuroids = pd.DataFrame(
        {
            "neuroid_id": neuroid_coords["neuroid_id"],
            "subject": neuroid_coords["subject_id"],
            "roi": neuroid_coords["fROI_area"],
        }
    ).astype(str)

    netcdf.check_count(len(presentations), EXPECTED_TRS, "TR chunks", source, strict)
    netcdf.check_count(len(neuroids), EXPECTED_NEUROIDS, "neuroids", source, strict)
    netcdf.check_count(neuroids["subject"].nunique(), EXPECTED_SUBJECTS, "subjects", source, strict)
    netcdf.check_count(neuroids["roi"].nunique(), EXPECTED_FROIS, "fROIs", source, strict)
    netcdf.check_present(presentations["story"], EXPECTED_STORIES, "stories", source, strict)
    netcdf.check_present(presentations["stimulus"], KNOWN_CHUNKS, "TR chunks", source, strict)

    stimuli = _stimuli_table(presentations)
    matrix = np.asarray(array.values, dtype=np.float64)[stimuli["assembly_row"].to_numpy()]
    return BlankData(stimuli=stimuli, matrix=matrix, neuroids=neuroids)


def _stimuli_table(presentations: pd.DataFrame) -> pd.DataFrame:
    """TR chunks sorted by story, then sentence and part; ``assembly_row`` is the stored position."""
    frame = presentations.assign(assembly_row=np.arange(len(presentations)))
    frame = frame.sort_values(
        ["story", "sentence_number_in_story", "part_number_in_sentence", "assembly_row"], kind="stable"
    )
    story = frame["story"]
    frame = frame.assign(
        text=frame["stimulus"],
        context_group=story,
        cv_group=story,
        partition="all",
        response_id=frame["stimulus_id"],
        run=story,
    )
    frame["position"] = frame.groupby("story").cumcount()
    frame["tr_index"] = frame["position"]
    columns = [
        *io.STIMULI_COLUMNS,
        "response_id",
        "run",
        "tr_index",
        "story",
        "sentence_number_in_story",
        "part_number_in_sentence",
    ]
    columns += [c for c in ("timepoint_value",) if c in frame]
    return frame[[*columns, "assembly_row"]].reset_index(drop=True)


def _metadata(block: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dataset": DATASET,
        "source": (block.get("files") or {}).get("assembly", DEFAULT_FILES["assembly"]),
        "tr_seconds": 2.0,
    }


def prepare_stimuli(block: Mapping[str, Any], out_path: str | os.PathLike) -> None:
    """Write the 1,317 TR chunks (``results/stimuli/blank2014.parquet``)."""
    io.write_stimuli(out_path, load(block).stimuli, _metadata(block))


def prepare_responses(block: Mapping[str, Any], stimuli_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Write TRs x fROI neuroids, rows keyed by the TR chunk's id (``story`` per row)."""
    data = load(block)
    source = str((block.get("files") or {}).get("assembly", DEFAULT_FILES["assembly"]))
    stimuli = netcdf.matching_stimuli(stimuli_path, data.stimuli["stimulus_id"], source)
    order = io.align_rows(stimuli["response_id"], data.stimuli["stimulus_id"], "assembly", source)
    rows = pd.DataFrame(
        {"run": data.stimuli["story"].to_numpy()[order], "tr_index": data.stimuli["tr_index"].to_numpy()[order]}
    )
    io.write_responses(out_path, stimuli["response_id"], data.matrix[order], data.neuroids, _metadata(block), rows=rows)
