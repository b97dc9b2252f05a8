"""File contracts between stages: atomic writes, checksums and the Parquet tables.

Every table that crosses a stage boundary is read and written here, so that its schema
has one home. Writers go to ``<path>.tmp`` and ``os.replace`` it, so a killed job never
leaves a file that looks complete. Each Parquet file carries a JSON document under the
``brainalign`` schema-metadata key (provenance and validity facts).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from brainalign import __version__
from brainalign.errors import DataError, StaleFileError

METADATA_KEY = b"brainalign"

STIMULI_COLUMNS = ("stimulus_id", "context_group", "position", "text", "cv_group", "partition")
"""Required stimuli columns. ``partition``: subsets scored separately and averaged
(Pereira2018's two experiments); a single value ``all`` elsewhere."""

NEUROID_COLUMNS = ("neuroid_id", "subject", "roi")


# --------------------------------------------------------------------------- basics
def file_digest(path: str | os.PathLike, algorithm: str, chunk_size: int = 1 << 20) -> str:
    """Return the hex digest of a file with ``hashlib`` algorithm ``algorithm``."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex SHA-256 digest of a file."""
    return file_digest(path, "sha256")


def sha256_frame(frame: pd.DataFrame) -> str:
    """Return a content digest of a DataFrame that does not depend on file encoding."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + ",".join(map(str, frame.columns)).encode()).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    The parent folder is created; an unwritable folder raises :class:`DataError` naming it.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(
            f"cannot create the output folder {target.parent}: {error.strerror}. "
            "Choose a writable results folder (run from a directory you can write to)."
        ) from error
    if not os.access(target.parent, os.W_OK):
        raise DataError(
            f"the output folder {target.parent} is not writable. "
            "Fix its permissions or run the workflow from a writable directory."
        )
    tmp = target.with_name(target.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, document: Mapping[str, Any]) -> None:
    """Write a JSON document atomically (NaN written as null)."""
    write_text(path, json.dumps(_jsonable(document), indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON document written by :func:`write_json`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist. Run the stage that writes it first.")
    return json.loads(path.read_text())


def write_tsv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write a tab-separated table atomically (missing values as ``NA``)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, na_rep="NA")


def read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_tsv`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist. Run the stage that writes it first.")
    return pd.read_csv(path, sep="\t", na_values=["NA"], keep_default_na=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------- metadata
def result_metadata(**facts: Any) -> dict[str, Any]:
    """Return the metadata document stored in every output file (its facts + the package version)."""
    return {"package_version": __version__, **_jsonable(facts)}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the ``brainalign`` metadata document of a Parquet file."""
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise DataError(
            f"{path} is not a readable Parquet file ({error}). It is probably truncated by "
            "a killed job: delete it and rerun the stage that writes it."
        ) from error
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def check_metadata(path: str | os.PathLike, expected: Mapping[str, Any]) -> dict[str, Any]:
    """Return the file's metadata, or raise :class:`StaleFileError` if any expected fact differs."""
    found = read_metadata(path)
    stale = {
        key: (found.get(key), value) for key, value in _jsonable(dict(expected)).items() if found.get(key) != value
    }
    if stale:
        details = "; ".join(f"{k}: file has {v[0]!r}, config wants {v[1]!r}" for k, v in stale.items())
        raise StaleFileError(
            f"{path} was made with other settings ({details}). Delete it, or rerun with "
            f"`snakemake --forcerun` for the stage that writes it."
        )
    return found


def _with_metadata(schema: pa.Schema, metadata: Mapping[str, Any]) -> pa.Schema:
    document = json.dumps(_jsonable(dict(metadata)), sort_keys=True).encode()
    return schema.with_metadata({**(schema.metadata or {}), METADATA_KEY: document})


def write_table(path: str | os.PathLike, frame: pd.DataFrame, metadata: Mapping[str, Any]) -> None:
    """Write a DataFrame as Parquet atomically, with a ``brainalign`` metadata document."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(_with_metadata(table.schema, metadata).metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet table, with a clear error for a missing or truncated file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist. Run the stage that writes it first.")
    read_metadata(path)  # raises a clear error for truncated files
    return pq.read_table(path, columns=columns).to_pandas()


# --------------------------------------------------------------------------- stimuli
def validate_stimuli(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check the stimuli contract; return a copy with string ids and integer positions, in
    the given row order (the order responses and activations are aligned to)."""
    missing = [c for c in STIMULI_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: stimuli table lacks columns {missing}; it needs {list(STIMULI_COLUMNS)}.")
    if frame.empty:
        raise DataError(f"{source}: the stimuli table is empty. Check the dataset's input files.")
    duplicated = frame["stimulus_id"][frame["stimulus_id"].duplicated()].unique()
    if len(duplicated):
        raise DataError(
            f"{source}: duplicated stimulus_id values {list(duplicated[:5])} "
            f"({len(duplicated)} in all). Every unit needs a unique id."
        )
    empty_text = frame["text"].isna() | (frame["text"].astype(str).str.strip() == "")
    if empty_text.any():
        raise DataError(
            f"{source}: {int(empty_text.sum())} stimuli have empty text "
            f"(first: {frame.loc[empty_text, 'stimulus_id'].iloc[0]!r}). Remove or fill them."
        )
    order_dup = frame.duplicated(["context_group", "position"])
    if order_dup.any():
        raise DataError(
            f"{source}: positions repeat within a context group "
            f"(first: {frame.loc[order_dup, ['context_group', 'position']].iloc[0].to_dict()})."
        )
    out = frame.copy()
    out["stimulus_id"] = out["stimulus_id"].astype(str)
    out["position"] = out["position"].astype("int64")
    return out.reset_index(drop=True)


def write_stimuli(path: str | os.PathLike, frame: pd.DataFrame, metadata: Mapping[str, Any]) -> str:
    """Validate and write a stimuli table; return its content checksum (stored in metadata)."""
    frame = validate_stimuli(frame, str(path))
    checksum = sha256_frame(frame[list(STIMULI_COLUMNS)])
    write_table(path, frame, result_metadata(stimuli_sha256=checksum, **metadata))
    return checksum


def read_stimuli(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a stimuli table."""
    return validate_stimuli(read_table(path), str(path))


def stimuli_checksum(path: str | os.PathLike) -> str:
    """Return the stimuli content checksum recorded when the table was written."""
    return read_metadata(path)["stimuli_sha256"]


# --------------------------------------------------------------------------- matrices
def _matrix_table(
    ids: Iterable[str], matrix: np.ndarray, id_column: str, extra: Mapping[str, Any] | None = None
) -> pa.Table:
    matrix = np.ascontiguousarray(matrix)
    n_rows, n_cols = matrix.shape
    values = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), n_cols)
    columns = {**(extra or {}), id_column: pa.array(list(ids), pa.string()), "values": values}
    return pa.table(columns)


def write_responses(
    path: str | os.PathLike,
    stimulus_ids: Iterable[str],
    matrix: np.ndarray,
    neuroids: pd.DataFrame,
    metadata: Mapping[str, Any],
    rows: pd.DataFrame | None = None,
) -> None:
    """Write a response matrix (float32, rows x neuroids) with its neuroid table.

    Rows are keyed by ``stimulus_id``: a stimulus, or for time series a TR id that the
    stimuli table's optional ``response_id`` column points to (several words per TR).
    ``rows`` adds per-row columns (e.g. ``run``, ``time``) in the same order.
    Reading times use the same contract: neuroids are readers (``roi`` = ``reader``) or a
    single ``mean`` column when only reader-averaged times exist (NaN = not measured).
    """
    stimulus_ids = [str(s) for s in stimulus_ids]
    missing = [c for c in NEUROID_COLUMNS if c not in neuroids.columns]
    if missing:
        raise DataError(f"{path}: neuroid table lacks {missing}.")
    if matrix.shape != (len(stimulus_ids), len(neuroids)):
        raise DataError(
            f"{path}: response matrix has shape {matrix.shape}, expected "
            f"({len(stimulus_ids)} stimuli, {len(neuroids)} neuroids)."
        )
    if len(set(stimulus_ids)) != len(stimulus_ids):
        raise DataError(f"{path}: duplicated stimulus ids in the response matrix.")
    # NaN marks a value not measured (a neuroid outside a partition, a skipped word); a
    # matrix with no measured value, or with infinities, is a reader or file error.
    if matrix.size and not np.isfinite(matrix).any() and not np.isinf(matrix).any():
        raise DataError(f"{path}: every response value is missing (NaN). Check the dataset's files and its reader.")
    if np.isinf(matrix).any():
        raise DataError(
            f"{path}: {int(np.isinf(matrix).sum())} response values are infinite. Check the dataset's files "
            "(NaN is the marker for a missing value)."
        )
    neuroid_json = neuroids[list(NEUROID_COLUMNS)].astype(str).to_dict(orient="list")
    extra = None if rows is None else {c: pa.array(rows[c].to_numpy()) for c in rows.columns}
    if rows is not None and len(rows) != len(stimulus_ids):
        raise DataError(f"{path}: {len(rows)} row descriptions for {len(stimulus_ids)} rows.")
    table = _matrix_table(stimulus_ids, matrix.astype(np.float32), "stimulus_id", extra)
    schema = _with_metadata(table.schema, result_metadata(neuroids=neuroid_json, **metadata))
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(schema.metadata), tmp)


def read_responses(path: str | os.PathLike) -> tuple[pd.Index, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Return (row ids, rows x neuroids float32 matrix, neuroid table, per-row columns)."""
    metadata = read_metadata(path)
    table = pq.read_table(path)
    ids = pd.Index(table.column("stimulus_id").to_pylist(), name="stimulus_id")
    matrix = _fixed_list_to_numpy(table.column("values"))
    neuroids = pd.DataFrame(metadata["neuroids"])
    rows = table.drop_columns(["stimulus_id", "values"]).to_pandas()
    return ids, matrix, neuroids, rows


def _fixed_list_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    column = column.combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)


# --------------------------------------------------------------------------- activations
class ActivationWriter:
    """Stream per-layer activations to Parquet: one row group per layer, written in order.

    Rows are (``layer`` int16, ``stimulus_id``, ``values`` fixed-size list). Memory stays
    bounded by one layer. The file appears under its final name only after :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        stimulus_ids: list[str],
        width: int,
        metadata: Mapping[str, Any],
        dtype: str = "float32",
    ):
        self.path = Path(path)
        self.stimulus_ids = [str(s) for s in stimulus_ids]
        self.width = width
        self.value_type = {"float32": pa.float32(), "float16": pa.float16()}[dtype]
        self.numpy_dtype = {"float32": np.float32, "float16": np.float16}[dtype]
        schema = pa.schema(
            [("layer", pa.int16()), ("stimulus_id", pa.string()), ("values", pa.list_(self.value_type, width))]
        )
        self.schema = _with_metadata(schema, result_metadata(dtype_on_disk=dtype, **metadata))
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, self.schema)
        self._last_layer: int | None = None

    def write_layer(self, layer: int, matrix: np.ndarray) -> None:
        """Append one layer (stimuli in the order given at construction)."""
        if matrix.shape != (len(self.stimulus_ids), self.width):
            raise ValueError(f"layer {layer}: shape {matrix.shape}, expected {(len(self.stimulus_ids), self.width)}")
        if not np.all(np.isfinite(matrix)):
            raise DataError(
                f"{self.path}: layer {layer} has non-finite activations; the model overflowed (try float32)."
            )
        if self._last_layer is not None and layer <= self._last_layer:
            raise ValueError("layers must be written in increasing order")
        flat = pa.array(np.ascontiguousarray(matrix, dtype=self.numpy_dtype).reshape(-1), self.value_type)
        table = pa.table(
            {
                "layer": pa.array(np.full(len(self.stimulus_ids), layer, np.int16)),
                "stimulus_id": pa.array(self.stimulus_ids, pa.string()),
                "values": pa.FixedSizeListArray.from_arrays(flat, self.width),
            },
            schema=self.schema,
        )
        self._writer.write_table(table, row_group_size=len(self.stimulus_ids))
        self._last_layer = layer

    def close(self) -> None:
        """Finish the file and move it to its final name."""
        self._writer.close()
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the partial file."""
        self._writer.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()

    def __enter__(self) -> ActivationWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def activation_layers(path: str | os.PathLike) -> list[int]:
    """Return the layers stored in an activation file (one per row group)."""
    parquet = pq.ParquetFile(path)
    layers = []
    for index in range(parquet.num_row_groups):
        stats = parquet.metadata.row_group(index).column(0).statistics
        layers.append(int(stats.min))
    return layers


def read_activations(
    path: str | os.PathLike, layer: int, expected: Mapping[str, Any] | None = None
) -> tuple[pd.Index, np.ndarray]:
    """Read one layer (one row group) as (stimulus ids, stimuli x features float32).

    ``expected`` facts are checked against the file metadata first (stale files are refused).
    """
    if expected:
        check_metadata(path, expected)
    else:
        read_metadata(path)
    parquet = pq.ParquetFile(path)
    layers = activation_layers(path)
    if layer not in layers:
        raise DataError(f"{path} has no layer {layer}; it holds layers {layers[0]}..{layers[-1]}.")
    table = parquet.read_row_group(layers.index(layer), columns=["stimulus_id", "values"])
    ids = pd.Index(table.column("stimulus_id").to_pylist(), name="stimulus_id")
    return ids, _fixed_list_to_numpy(table.column("values")).astype(np.float32)


# --------------------------------------------------------------------------- surprisal
SURPRISAL_COLUMNS = ("stimulus_id", "surprisal_bits", "n_tokens")


def write_surprisal(path: str | os.PathLike, frame: pd.DataFrame, metadata: Mapping[str, Any]) -> None:
    """Write per-word surprisal (bits; NaN where a word has no preceding context)."""
    missing = [c for c in SURPRISAL_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: surprisal table lacks {missing}.")
    write_table(path, frame, result_metadata(**metadata))


# --------------------------------------------------------------------------- alignment
def align_rows(reference_ids: pd.Index, other_ids: pd.Index, what: str, source: str) -> np.ndarray:
    """Return the positions of ``reference_ids`` within ``other_ids``; refuse any mismatch.

    Rows are matched by id, never by order, so features and responses cannot be silently
    misaligned.
    """
    other = pd.Index(other_ids)
    if other.has_duplicates:
        raise DataError(f"{source}: duplicated stimulus ids in the {what}.")
    positions = other.get_indexer(pd.Index(reference_ids))
    if (positions < 0).any():
        missing = list(pd.Index(reference_ids)[positions < 0][:5])
        raise DataError(
            f"{source}: {int((positions < 0).sum())} stimulus ids are missing from the {what} "
            f"(first: {missing}). The files were made from different stimuli: rerun the stage that "
            "writes them."
        )
    return positions
