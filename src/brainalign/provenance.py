"""Provenance of every result file: what made it, from what, with which settings and code.

Each job's outputs get a sidecar ``<output>.provenance.json`` written by
:func:`brainalign.workflow.run_step` after the job succeeds. One mechanism for every
output kind: results are Parquet, TSV, Markdown, PNG, PDF and JSON, and only Parquet can
embed a document; rewriting a finished Parquet file to embed it would double the I/O of
the largest files (activations). The Parquet files additionally keep the stage's own
validity facts under the ``brainalign`` schema-metadata key (see :mod:`brainalign.io`);
``brainalign provenance FILE`` shows both.

A sidecar records the package version, the rule and its wildcards, the rule's params (the
config values the job depends on), the SHA-256 of every input and of the output, and the
SHA-256 of every ``brainalign`` module the job imported. Snakemake's ``code`` rerun trigger
sees only the workflow script, not the library it calls; :func:`stale_results` compares the
recorded module checksums with the current source to list what a library edit invalidates.

An input's checksum is taken from its own sidecar when the file's size and modification
time still match the record, so a 48-layer model's activations are hashed once, not once
per layer fit.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from brainalign import __version__, io
from brainalign.errors import DataError

SIDECAR_SUFFIX = ".provenance.json"

ORCHESTRATION_MODULES = frozenset({"brainalign.workflow", "brainalign.provenance", "brainalign.cli"})
"""Modules that run jobs and record them but compute nothing in them: editing them does not
make a result stale, so they are left out of the recorded module checksums."""

SUMMARY_LIST_LENGTH = 8
"""Lists longer than this are abbreviated in the printed document (``--full`` shows all)."""


# ----------------------------------------------------------------------------- recording
def sidecar_path(path: str | os.PathLike) -> Path:
    """Return the provenance sidecar path of a result file."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


@cache
def _cached_checksum(source: str, size: int, mtime_ns: int) -> str:
    return io.sha256_file(source)


def _source_checksum(source: str) -> str:
    """SHA-256 of a source file, cached while its size and modification time are unchanged."""
    stat = os.stat(source)
    return _cached_checksum(source, stat.st_size, stat.st_mtime_ns)


def _module_source(name: str) -> str | None:
    module = sys.modules.get(name)
    source = getattr(module, "__file__", None) if module else None
    if source is None:
        spec = importlib.util.find_spec(name)
        source = spec.origin if spec and spec.has_location else None
    return source if source and os.path.exists(source) else None


def module_checksums(names: Iterable[str] | None = None) -> dict[str, str]:
    """Return the SHA-256 of each ``brainalign`` module's source, by module name.

    Parameters
    ----------
    names : iterable of str, optional
        Module names; by default every ``brainalign`` module imported in this process,
        except :data:`ORCHESTRATION_MODULES`.
    """
    if names is None:
        names = [
            name
            for name in sys.modules
            if (name == "brainalign" or name.startswith("brainalign.")) and name not in ORCHESTRATION_MODULES
        ]
    checksums = {}
    for name in sorted(names):
        source = _module_source(name)
        if source is not None:
            checksums[name] = _source_checksum(source)
    return checksums


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """Return ``{sha256, size, mtime_ns}`` of a file, reusing its sidecar's checksum if current."""
    path = Path(path)
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if path.is_dir():
        return {**record, "directory": True}
    known = _recorded_output(path)
    if known and known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        return {"sha256": known["sha256"], **record}
    return {"sha256": io.sha256_file(path), **record}


def _recorded_output(path: Path) -> dict[str, Any] | None:
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return None
    try:
        return json.loads(sidecar.read_text()).get("output")
    except (OSError, ValueError):
        return None


def discard_records(outputs: Iterable[str | os.PathLike]) -> None:
    """Remove the sidecars of outputs about to be rewritten, so none outlives its file."""
    for output in outputs:
        sidecar_path(output).unlink(missing_ok=True)


def record_job(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike],
    rule: str,
    wildcards: Mapping[str, str],
    params: Mapping[str, Any],
) -> list[Path]:
    """Write the provenance sidecar of each output of a finished job; return their paths.

    Parameters
    ----------
    outputs, inputs : iterables of paths
        The job's files (existing outputs only are recorded).
    rule : str
        The rule name.
    wildcards : mapping
        The job's wildcard values.
    params : mapping
        The rule's params: the config values the job depends on.
    """
    shared = {
        "package_version": __version__,
        "rule": rule,
        "wildcards": dict(wildcards),
        "params": dict(params),
        "inputs": {str(path): file_record(path) for path in dict.fromkeys(map(str, inputs))},
        "modules": module_checksums(),
        "python": platform.python_version(),
        "host": platform.node(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    written = []
    for output in dict.fromkeys(map(str, outputs)):
        if not Path(output).exists():
            continue
        record = file_record(output)
        io.write_json(sidecar_path(output), {**shared, "file": output, "output": record})
        written.append(sidecar_path(output))
    return written


# ----------------------------------------------------------------------------- reading
def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """Return what is known of a result file: its sidecar record and its Parquet metadata.

    ``path`` may be the result file or its sidecar. Raises :class:`DataError` when the file
    does not exist or carries no provenance at all.
    """
    path = Path(path)
    if path.name.endswith(SIDECAR_SUFFIX):
        path = path.with_name(path.name[: -len(SIDECAR_SUFFIX)])
    if not path.exists():
        raise DataError(f"{path} does not exist. Give the path of a result file (e.g. results/scores/brain.tsv).")
    document: dict[str, Any] = {"file": str(path)}
    sidecar = sidecar_path(path)
    if sidecar.exists():
        try:
            document["provenance"] = json.loads(sidecar.read_text())
        except ValueError as error:
            raise DataError(f"{sidecar} is not valid JSON ({error}). Rerun the job that writes {path}.") from error
    if path.suffix == ".parquet":
        document["parquet_metadata"] = io.read_metadata(path)
    if len(document) == 1:
        raise DataError(
            f"{path} has no provenance: no {sidecar.name} next to it and no embedded metadata. "
            "Only files written by the workflow's jobs carry provenance; rerun the job that writes it."
        )
    return document


def abbreviate(value: Any, max_items: int = SUMMARY_LIST_LENGTH) -> Any:
    """Return ``value`` with lists longer than ``max_items`` cut to their first items plus a count."""
    if isinstance(value, Mapping):
        return {key: abbreviate(item, max_items) for key, item in value.items()}
    if isinstance(value, list):
        if len(value) > max_items:
            return [abbreviate(item, max_items) for item in value[:max_items]] + [f"... {len(value)} items in all"]
        return [abbreviate(item, max_items) for item in value]
    return value


# ----------------------------------------------------------------------------- staleness
@dataclasses.dataclass(frozen=True)
class StaleResult:
    """A result whose recorded code or content no longer matches what is on disk."""

    path: str
    rule: str
    reasons: tuple[str, ...]


def stale_reasons(record: Mapping[str, Any]) -> list[str]:
    """Return why one sidecar record no longer describes current code or content (empty: current)."""
    reasons = []
    if record.get("package_version") != __version__:
        reasons.append(f"package version {record.get('package_version')} -> {__version__}")
    current = module_checksums(record.get("modules", {}))
    for name, checksum in sorted(record.get("modules", {}).items()):
        if name not in current:
            reasons.append(f"module {name} removed")
        elif current[name] != checksum:
            reasons.append(f"module {name} changed")
    output = Path(record["file"])
    if not output.exists():
        reasons.append("output file missing")
    else:
        stat = output.stat()
        recorded = record.get("output", {})
        moved = (stat.st_size, stat.st_mtime_ns) != (recorded.get("size"), recorded.get("mtime_ns"))
        if moved and io.sha256_file(output) != recorded.get("sha256"):
            reasons.append("output file modified after it was written")
    return reasons


def stale_results(results_dir: str | os.PathLike) -> list[StaleResult]:
    """Return every result under ``results_dir`` made by code (or content) that has changed since.

    Paths in sidecars are relative to the workflow's working directory, which is the parent
    of ``results_dir`` (the workflow writes ``results/...``).
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(f"{results_dir} is not a folder. Give the workflow's results folder (e.g. results).")
    workdir = results_dir.resolve().parent
    stale = []
    for sidecar in sorted(results_dir.rglob("*" + SIDECAR_SUFFIX)):
        record = json.loads(sidecar.read_text())
        record = {**record, "file": str(workdir / record["file"])}
        reasons = stale_reasons(record)
        if reasons:
            path = sidecar.with_name(sidecar.name[: -len(SIDECAR_SUFFIX)])
            stale.append(StaleResult(str(path), record.get("rule", "?"), tuple(reasons)))
    return stale


# ----------------------------------------------------------------------------- CLI
def _show(args: argparse.Namespace) -> None:
    if args.stale:
        stale = stale_results(args.path)
        if args.paths:
            print("\n".join(result.path for result in stale))
            return
        for result in stale:
            print(f"{result.path}\t{result.rule}\t{'; '.join(result.reasons)}")
        if stale:
            print(
                f"{len(stale)} result files are stale. Recompute them with:\n"
                f"  snakemake --forcerun $(brainalign provenance --stale {args.path} --paths)",
                file=sys.stderr,
            )
        else:
            print(f"No stale results under {args.path}.", file=sys.stderr)
        return
    document = read_provenance(args.path)
    print(json.dumps(document if args.full else abbreviate(document), indent=2, sort_keys=True))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``provenance`` subcommand."""
    parser = subparsers.add_parser(
        "provenance",
        help="show how a result file was made, or list results made by code that changed since",
        description=(
            "Print a result file's provenance (package version, rule, wildcards, params, input and "
            "module checksums) and, for Parquet files, the embedded `brainalign` metadata. With "
            "--stale, list the results under a folder whose recorded library modules changed."
        ),
    )
    parser.add_argument("path", help="a result file (or, with --stale, the results folder)")
    parser.add_argument("--stale", action="store_true", help="list stale results under the folder PATH")
    parser.add_argument("--paths", action="store_true", help="with --stale: print only the paths (for --forcerun)")
    parser.add_argument("--full", action="store_true", help="print long lists in full")
    parser.set_defaults(func=_show)
