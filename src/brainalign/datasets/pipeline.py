"""Dataset stages on files: fetch or check the raw files, then write stimuli and responses.

Responses are read from the dataset's files (:func:`prepare_responses`), or, for the demo
readers, simulated from a source model's outputs once extraction has run (:func:`simulate_responses`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brainalign import io
from brainalign.config import SIMULATED_READERS
from brainalign.datasets import reader_module
from brainalign.datasets.download import fetch, missing_files_message
from brainalign.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def download_dataset(name: str, block: Mapping[str, Any], manifest_path: str | Path) -> None:
    """Fetch a dataset's pinned downloads, check every input file exists, record checksums.

    Datasets without public URLs (Wehbe2014) are the user's files: a missing one stops
    with a message saying which files to get from where and where to put them.
    """
    for key, entry in block.get("download", {}).items():
        destination = Path(
            entry.get("dest") or block["files"].get(key) or Path(manifest_path).parent / Path(entry["url"]).name
        )
        # fetch keeps a present file whose checksum matches and replaces any other
        checksum = {algorithm: entry[algorithm] for algorithm in ("sha1", "sha256") if algorithm in entry}
        fetch(entry["url"], destination, checksum)
    recorded = {}
    for key, path in block["files"].items():
        if path is None:
            continue
        path = Path(path)
        if not path.exists():
            raise DataError(missing_files_message(name, block))
        recorded[key] = {"path": str(path), "sha256": io.sha256_file(path) if path.is_file() else None}
    io.write_json(manifest_path, io.result_metadata(dataset=name, reader=block["reader"], files=recorded))


def prepare_stimuli(block: Mapping[str, Any], out_path: str | Path) -> None:
    """Write the stimuli table of a dataset with its reader."""
    reader_module(block["reader"]).prepare_stimuli(dict(block), out_path)


def prepare_responses(block: Mapping[str, Any], stimuli_path: str | Path, out_path: str | Path) -> None:
    """Write the response matrix of a dataset whose reader reads its responses from its files.

    Raises
    ------
    ConfigError
        For a reader whose responses are simulated (:data:`brainalign.config.SIMULATED_READERS`):
        :func:`simulate_responses` writes those, from the source model's outputs.
    """
    if block["reader"] in SIMULATED_READERS:
        raise ConfigError(
            f"reader {block['reader']!r} has no response files to read: its responses are simulated from "
            "the source model's outputs by simulate_responses, not prepare_responses."
        )
    reader_module(block["reader"]).prepare_responses(dict(block), stimuli_path, out_path)


def simulate_responses(
    block: Mapping[str, Any], stimuli_path: str | Path, out_path: str | Path, simulation_source: str | Path
) -> None:
    """Simulate the response matrix of a demo dataset from its source model's outputs.

    Parameters
    ----------
    block : mapping
        The dataset's config block; its reader is one of :data:`brainalign.config.SIMULATED_READERS`
        and ``simulation`` holds the generative model's settings.
    stimuli_path : path
        The dataset's stimuli table (``prepare_stimuli``).
    out_path : path
        Where the responses go.
    simulation_source : path
        The source model's activation file (``demo_fmri``) or surprisal file
        (``demo_reading_times``) on these stimuli.

    Raises
    ------
    ConfigError
        For a reader that reads its responses from files (:func:`prepare_responses` writes those).
    """
    if block["reader"] not in SIMULATED_READERS:
        raise ConfigError(
            f"reader {block['reader']!r} reads its responses from the dataset's files: prepare_responses "
            f"writes them; simulate_responses serves the readers {', '.join(SIMULATED_READERS)} only."
        )
    reader_module(block["reader"]).simulate_responses(dict(block), stimuli_path, out_path, simulation_source)
