"""Behavioral stage on files: a model's surprisal against a dataset's reading times."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from brainalign import io
from brainalign.behavior.reading_times import score_reading_times
from brainalign.errors import DataError


def fit_reading_times(
    model: str,
    dataset: str,
    surprisal_path: str | Path,
    stimuli_path: str | Path,
    responses_path: str | Path,
    options: Mapping[str, Any],
    out_path: str | Path,
) -> None:
    """Score a model's surprisal against reading times under every behavioral protocol."""
    stimuli = io.read_stimuli(stimuli_path)
    surprisal = io.read_table(surprisal_path)
    expected = io.stimuli_checksum(stimuli_path)
    found = io.read_metadata(surprisal_path).get("stimuli_sha256")
    if found != expected:
        raise DataError(
            f"{surprisal_path} was computed on other stimuli than {stimuli_path}. "
            "Delete it and rerun compute_surprisal."
        )
    row_ids, reading_times, readers, _ = io.read_responses(responses_path)
    order = io.align_rows(pd.Index(stimuli["stimulus_id"]), row_ids, "reading times", str(responses_path))
    scores = score_reading_times(surprisal, stimuli, reading_times[order], readers, dict(options))
    scores.insert(0, "dataset", dataset)
    scores.insert(0, "model", model)
    io.write_tsv(out_path, scores)
