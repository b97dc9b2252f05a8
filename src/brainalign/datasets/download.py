"""Pinned dataset downloads and the messages that say which files a user must bring.

:func:`fetch` streams a URL to ``<dest>.tmp``, verifies its checksum and only then renames
it, so a killed or corrupted download never looks like a finished file. Datasets without a
public URL (Wehbe2014) are described by :func:`missing_files_message`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brainalign import io
from brainalign.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
SUPPORTED_DIGESTS = ("sha1", "sha256")

WEHBE_TONEVA_FILES = (
    "fMRI/data_subject_{F,H,I,J,K,L,M,N}.npy (one per subject: kept TRs x voxels)",
    "fMRI/time_fmri.npy (TR start times, 1351 values)",
    "fMRI/runs_fmri.npy (run of each TR, 1..4)",
    "fMRI/time_words_fmri.npy (word onset times, 5176 values)",
    "fMRI/words_fmri.npy (the 5176 words; a unicode array, not an object array)",
)
WEHBE_SOURCES = (
    "the Toneva-preprocessed Harry Potter data distributed with "
    "github.com/mtoneva/brain_language_nlp (see its README for the download link)",
    "or the raw CMU release subject_{1..8}.mat from http://www.cs.cmu.edu/~fmri/plosone/",
)


def _digest_spec(checksum: Mapping[str, str], url: str) -> tuple[str, str]:
    """Return (algorithm, expected hex digest) from a ``{"sha1": ...}`` mapping."""
    known = {k: v for k, v in checksum.items() if k in SUPPORTED_DIGESTS}
    if len(known) != 1 or len(checksum) != 1:
        raise ConfigError(
            f"the download of {url} needs exactly one checksum, {{'sha1': ...}} or "
            f"{{'sha256': ...}}; got {dict(checksum)!r}."
        )
    algorithm, expected = next(iter(known.items()))
    return algorithm, str(expected).lower()


def fetch(url: str, dest: str | os.PathLike, checksum: Mapping[str, str], timeout: float = 30) -> None:
    """Download ``url`` to ``dest`` and verify its checksum.

    Parameters
    ----------
    url : str
        The pinned URL.
    dest : path
        Final location; the data is streamed to ``<dest>.tmp`` and renamed once verified.
        An existing ``dest`` with the right checksum is kept as it is.
    checksum : mapping
        ``{"sha1": hex}`` or ``{"sha256": hex}``.
    timeout : float
        Seconds allowed for connecting and for each read; a stalled server fails instead
        of hanging.

    Raises
    ------
    DataError
        The host cannot be reached (the message says what to download from where and
        where to put it), the transfer is cut short, or the checksum differs (the partial
        file is removed).
    """
    algorithm, expected = _digest_spec(checksum, url)
    dest = Path(dest)
    if dest.exists() and io.file_digest(dest, algorithm) == expected:
        logger.info("%s already present with the expected %s", dest, algorithm)
        return
    with io.atomic_path(dest) as tmp:
        found = _stream(url, tmp, algorithm, timeout, dest, expected)
        if found != expected:
            raise DataError(
                f"checksum mismatch for {dest} downloaded from {url}: expected {algorithm} "
                f"{expected}, found {found}. The partial file was removed; retry, or download "
                "it by hand and check the URL in the config."
            )
    logger.info("downloaded %s (%s verified)", dest, algorithm)


def _stream(url: str, tmp: Path, algorithm: str, timeout: float, dest: Path, expected: str) -> str:
    """Stream ``url`` into ``tmp``; return the hex digest of what was received."""
    digest = hashlib.new(algorithm)
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as handle:
            announced = response.headers.get("Content-Length")
            for block in iter(lambda: response.read(CHUNK_SIZE), b""):
                handle.write(block)
                digest.update(block)
                received += len(block)
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(
            f"could not download {url} ({reason}). Without network access, download it on "
            f"another machine from {url}, check its {algorithm} is {expected}, and put it at "
            f"{dest}. Any partial file was removed."
        ) from error
    if announced is not None and received != int(announced):
        raise DataError(
            f"the download of {url} was cut short: received {received} of {announced} bytes. "
            f"The partial file was removed; retry, or put a complete copy at {dest}."
        )
    return digest.hexdigest()


def missing_files_message(dataset: str, block: Mapping[str, Any]) -> str:
    """Return what a user must download, from where, and which config key to set.

    Parameters
    ----------
    dataset : str
        The dataset's config name (used in the message).
    block : mapping
        The dataset's config block (``reader``, ``files``, ``download``, ``options``).
    """
    reader = block.get("reader", dataset)
    files = dict(block.get("files") or {})
    downloads = dict(block.get("download") or {})
    if reader == "wehbe2014":
        return _wehbe_message(dataset, files)
    lines = [f"dataset {dataset!r} needs files that are not on disk:"]
    for key, path in files.items():
        source = downloads.get(key)
        if source:
            digest = ", ".join(f"{k} {v}" for k, v in source.items() if k != "url")
            lines.append(f"- files.{key} = {path}: download {source['url']} ({digest}) and put it there")
        else:
            lines.append(f"- files.{key} = {path}: no download is pinned; point files.{key} at your copy")
    lines.append("Run `snakemake download_dataset` (or set the files.* keys to copies you already have).")
    return "\n".join(lines)


def _wehbe_message(dataset: str, files: Mapping[str, Any]) -> str:
    folder = files.get("folder", "resources/downloads/wehbe2014/fMRI")
    masks = files.get("roi_masks", "resources/downloads/wehbe2014/language_roi_masks.npz")
    cmu = files.get("cmu_folder", "resources/downloads/wehbe2014/cmu")
    return "\n".join(
        [
            f"dataset {dataset!r} (Wehbe et al. 2014, Harry Potter chapter 9) has no public pinned "
            "download: the text is copyrighted and must come from your own copy of the data.",
            f"Get {WEHBE_SOURCES[0]}, and put these files in files.folder (now {folder}):",
            *(f"  - {name.removeprefix('fMRI/')}" for name in WEHBE_TONEVA_FILES),
            f"Language-ROI masks: a pickle-free npz with keys '{{subject}}__{{roi}}' at files.roi_masks "
            f"(now {masks}), converted from HP_subj_roi_inds.npy of github.com/awwkl/brain_language_summarization.",
            f"Alternatively {WEHBE_SOURCES[1]}: put them in files.cmu_folder (now {cmu}) and set options.format: cmu.",
        ]
    )


def require_file(dataset: str, block: Mapping[str, Any], key: str, default: str) -> Path:
    """Return the path ``block['files'][key]`` (or ``default``); raise if it does not exist.

    Raises
    ------
    DataError
        With :func:`missing_files_message`, naming what to download from where.
    """
    path = Path((block.get("files") or {}).get(key, default))
    if not path.exists():
        raise DataError(f"{path} (files.{key}) does not exist.\n" + missing_files_message(dataset, block))
    return path
