"""Dataset stages on files: fetch or check the raw files, then write stimuli and responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brainalign import io
from brainalign.datasets import reader_module
from brainalign.datasets.download import fetch, missing_files_message
from brainalign.errors import DataError

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


def prepare_responses(
    block: Mapping[str, Any],
    stimuli_path: str | Path,
    out_path: str | Path,
    simulation_source: str | Path | None = None,
) -> None:
    """Write the response matrix of a dataset; demo readers simulate it from ``simulation_source``."""
    reader = reader_module(block["reader"])
    if simulation_source:
        reader.prepare_responses(dict(block), stimuli_path, out_path, simulation_source=simulation_source)
    else:
        reader.prepare_responses(dict(block), stimuli_path, out_path)
