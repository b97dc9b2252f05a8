"""Behavioral stage on files: a model's surprisal against a dataset's reading times."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from brainalign import io
from brainalign.behavior.reading_times import score_reading_times


def fit_reading_times(
    model: str,
    dataset: str,
    surprisal_path: str | Path,
    stimuli_path: str | Path,
    responses_path: str | Path,
    options: Mapping[str, Any],
    out_path: str | Path,
    paper_surprisal_path: str | Path | None = None,
) -> None:
    """Score a model's surprisal against reading times under every behavioral protocol.

    ``paper_surprisal_path`` holds the surprisal of the ``aw2024`` score (the paper's
    readout); None: ``surprisal_path`` serves every protocol.
    """
    stimuli = io.read_stimuli(stimuli_path)
    checksum = {"stimuli_sha256": io.stimuli_checksum(stimuli_path)}
    io.check_metadata(surprisal_path, checksum)
    surprisal = io.read_table(surprisal_path)
    paper_surprisal = None
    if paper_surprisal_path is not None:
        io.check_metadata(paper_surprisal_path, checksum)
        paper_surprisal = io.read_table(paper_surprisal_path)
    row_ids, reading_times, readers, _ = io.read_responses(responses_path)
    order = io.align_rows(pd.Index(stimuli["stimulus_id"]), row_ids, "reading times", str(responses_path))
    # The reading-time alignment (Natural Stories) is a property of the responses file (absent:
    # the options' own, else the schema's default).
    metadata = io.read_metadata(responses_path)
    given = {**options, "alignment": metadata["alignment"]} if "alignment" in metadata else dict(options)
    scores = score_reading_times(surprisal, stimuli, reading_times[order], readers, given, paper_surprisal)
    scores.insert(0, "dataset", dataset)
    scores.insert(0, "model", model)
    # The paper correlation reads the paper's surprisal, the regression the other readout.
    paper_path = surprisal_path if paper_surprisal_path is None else paper_surprisal_path
    facts = {path: io.read_metadata(path) for path in (surprisal_path, paper_path)}
    sources = [paper_path if protocol == "aw2024" else surprisal_path for protocol in scores["protocol"]]
    for key in ("readout", "context_policy"):
        scores[f"surprisal_{key}"] = [facts[source].get(key) for source in sources]
    io.write_tsv(out_path, scores)
