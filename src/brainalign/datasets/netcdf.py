"""Reading Brain-Score assemblies (netCDF) without brainio, and the checks shared by readers.

Brain-Score stores a ``DataAssembly`` as a netCDF file with one data variable (``data``)
over the dims ``(presentation, neuroid)``; its MultiIndex levels are flattened into plain
coordinates along those dims (``stimulus_id(presentation)``, ``subject(neuroid)``, ...).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import xarray as xr

from brainalign import io
from brainalign.errors import DataError

logger = logging.getLogger(__name__)

ASSEMBLY_DIMS = ("presentation", "neuroid")


def load_netcdf(path: Path, what: str) -> xr.Dataset:
    """Read a netCDF file into memory; a file that is not readable netCDF raises :class:`DataError`."""
    try:
        with xr.open_dataset(path) as dataset:
            return dataset.load()
    except (OSError, ValueError, RuntimeError) as error:
        raise DataError(
            f"{path} is not a readable netCDF {what} ({error}). It is probably truncated or "
            "corrupted: delete it and download it again (`snakemake download_dataset`)."
        ) from error


def open_assembly(path: str | os.PathLike) -> xr.DataArray:
    """Load a Brain-Score assembly as a ``(presentation, neuroid)`` DataArray in memory.

    Raises
    ------
    DataError
        The file is not readable netCDF (e.g. truncated), holds no single data variable,
        or lacks the presentation/neuroid dims.
    """
    path = Path(path)
    dataset = load_netcdf(path, "assembly")
    names = list(dataset.data_vars)
    name = "data" if "data" in names else (names[0] if len(names) == 1 else None)
    if name is None:
        raise DataError(f"{path}: expected one data variable ('data'), found {names}.")
    array = dataset[name]
    if set(array.dims) != set(ASSEMBLY_DIMS):
        raise DataError(f"{path}: the data variable has dims {array.dims}, expected {ASSEMBLY_DIMS}.")
    return array.transpose(*ASSEMBLY_DIMS)


def read_score(path: str | os.PathLike) -> float:
    """Read a Brain-Score ``Score`` file (e.g. a precomputed ceiling) as one number.

    Brain-Score writes a scalar ``Score`` as a netCDF file whose single data variable is 0-d
    (unnamed, so ``__xarray_dataarray_variable__``); a score with an ``aggregation`` dim
    (``center``, ``error``) is read at ``center``.

    Raises
    ------
    DataError
        The file is not readable netCDF, or holds no single scalar score.
    """
    path = Path(path)
    dataset = load_netcdf(path, "score")
    names = list(dataset.data_vars)
    if len(names) != 1:
        raise DataError(f"{path}: expected one data variable (a Brain-Score Score), found {names}.")
    score = dataset[names[0]]
    if "aggregation" in score.dims and "center" in score.coords.get("aggregation", []):
        score = score.sel(aggregation="center")
    if score.ndim != 0:
        raise DataError(
            f"{path}: the score has dims {dict(score.sizes)}; a precomputed ceiling is one number. "
            "Is this the ceiling file (ceiling_*.nc) and not its per-neuroid raw_ file?"
        )
    return float(score.values)


def require_coords(array: xr.DataArray, dim: str, names: Iterable[str], path: str | os.PathLike) -> None:
    """Raise :class:`DataError` naming the coordinates along ``dim`` that ``array`` lacks."""
    missing = [n for n in names if n not in array.coords or array.coords[n].dims != (dim,)]
    if missing:
        present = sorted(n for n, c in array.coords.items() if c.dims == (dim,))
        raise DataError(
            f"{path}: the assembly lacks the {dim} coordinate(s) {missing} (it has {present}). "
            "Is this the right Brain-Score assembly? Download the pinned file again."
        )


def coords_frame(array: xr.DataArray, dim: str) -> pd.DataFrame:
    """Return every coordinate along ``dim`` as a DataFrame column (strings as ``str``)."""
    columns = {}
    for name, coord in array.coords.items():
        if coord.dims == (dim,):
            values = coord.values
            columns[name] = values.astype(str) if values.dtype.kind in "OSU" else values
    return pd.DataFrame(columns)


def check_count(found: int, expected: int, what: str, source: str, strict: bool) -> None:
    """Raise :class:`DataError` if ``found != expected`` and ``strict``; else log a warning."""
    if found == expected:
        return
    message = f"{source}: found {found} {what}, expected {expected}."
    if strict:
        raise DataError(
            message + " The file is not the published dataset; re-download it, or set "
            "options.strict_counts: false for a subset you made on purpose."
        )
    logger.warning("%s (strict_counts is off)", message)


def check_present(values: Iterable[str], required: Iterable[str], what: str, source: str, strict: bool) -> None:
    """Raise :class:`DataError` (or warn when not ``strict``) if required values are absent."""
    have = set(values)
    absent = [v for v in required if v not in have]
    if not absent:
        return
    message = f"{source}: known {what} missing: {absent[:3]}."
    if strict:
        raise DataError(message + " The file is not the published dataset; re-download it.")
    logger.warning("%s (strict_counts is off)", message)


def check_unique(values: pd.Series, what: str, source: str) -> None:
    """Raise :class:`DataError` if ``values`` repeat."""
    repeated = values[values.duplicated()].unique()
    if len(repeated):
        raise DataError(f"{source}: duplicated {what} {list(repeated[:5])} ({len(repeated)} in all).")


def matching_stimuli(stimuli_path: str | os.PathLike, response_ids: Iterable[str], source: str) -> pd.DataFrame:
    """Read the stimuli table and check that every unit's response row exists (and back).

    Units point to rows through ``response_id`` (time series) or their own ``stimulus_id``.
    Every response row must be pointed at unless the stimuli have a ``response_id`` column
    (TRs without words are valid rows then).

    Raises
    ------
    DataError
        When ids disagree: the stimuli and responses were made from different files.
    """
    stimuli = io.read_stimuli(stimuli_path)
    key = "response_id" if "response_id" in stimuli.columns else "stimulus_id"
    rows = pd.Index([str(r) for r in response_ids])
    wanted = pd.Index(stimuli[key].astype(str).unique())
    unknown = wanted.difference(rows)
    unused = rows.difference(wanted) if key == "stimulus_id" else pd.Index([])
    if len(unknown) or len(unused):
        raise DataError(
            f"{source}: the response rows do not match the stimuli in {stimuli_path} "
            f"({len(unknown)} {key}s without a response row, first {list(unknown[:3])}; "
            f"{len(unused)} response rows without a stimulus, first {list(unused[:3])}). "
            "Rerun prepare_stimuli and prepare_responses from the same files."
        )
    return stimuli
