"""Helpers of the workflow-level tests: run Snakemake on copies of the tiny suite, parse plans.

The tiny suite (``tests/integration``) runs to completion once per pytest session, in a
folder under the session's base temporary directory; each test works on its own copy
(``shutil.copytree`` keeps modification times, so the copy is as up to date as the run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from brainalign import io
from brainalign.provenance import SIDECAR_SUFFIX

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
INTEGRATION = REPO / "tests" / "integration"


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command line that runs the repository's workflow in ``workdir``."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir``; raise with its output tail when it fails and ``check``."""
    completed = subprocess.run(snakemake_command(workdir, *args), cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and completed.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-8000:]}")
    return completed


def planned_jobs(workdir: Path, *args: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """(rule, sorted wildcard pairs) of every job a dry run plans."""
    output = snakemake(workdir, "-n", *args).stdout
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not match:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        pairs = tuple(sorted(tuple(item.split("=", 1)) for item in wildcards.group(1).split(", "))) if wildcards else ()
        jobs.add((match.group(1), pairs))
    return jobs


def job(rule: str, **wildcards: str | int) -> tuple[str, tuple[tuple[str, str], ...]]:
    """One planned job, in the form :func:`planned_jobs` returns."""
    return rule, tuple(sorted((key, str(value)) for key, value in wildcards.items()))


def completed_tiny_run(tmp_path_factory) -> Path:
    """The tiny suite run to completion once per session (a shared, read-only reference)."""
    reference = tmp_path_factory.getbasetemp() / "tiny-complete"
    if not (reference / "results" / "summary.md").exists():
        shutil.rmtree(reference, ignore_errors=True)
        shutil.copytree(INTEGRATION, reference)
        snakemake(reference, "--cores", "2")
    return reference


def copy_run(reference: Path, destination: Path) -> Path:
    """A private copy of a finished run (results, logs and Snakemake's records)."""
    shutil.copytree(reference, destination, dirs_exist_ok=True, symlinks=True)
    return destination


def result_files(workdir: Path) -> list[Path]:
    """Result tables and texts, relative to ``workdir`` (figures and sidecars excluded)."""
    keep = {".parquet", ".tsv", ".md"}
    return sorted(
        path.relative_to(workdir)
        for path in (workdir / "results").rglob("*")
        if path.suffix in keep and not path.name.endswith(SIDECAR_SUFFIX)
    )


def assert_same_results(expected_dir: Path, actual_dir: Path) -> int:
    """Assert both runs hold the same result files with equal contents; return the count.

    Parquet: equal tables (pandas) and equal ``brainalign`` metadata; TSV: equal tables;
    Markdown: equal text.
    """
    expected_files, actual_files = result_files(expected_dir), result_files(actual_dir)
    assert expected_files == actual_files, set(expected_files) ^ set(actual_files)
    for relative in expected_files:
        expected, actual = expected_dir / relative, actual_dir / relative
        if relative.suffix == ".parquet":
            pd.testing.assert_frame_equal(pq.read_table(expected).to_pandas(), pq.read_table(actual).to_pandas(), obj=str(relative))
            assert io.read_metadata(expected) == io.read_metadata(actual), relative
        elif relative.suffix == ".tsv":
            pd.testing.assert_frame_equal(io.read_tsv(expected), io.read_tsv(actual), obj=str(relative))
        else:
            assert expected.read_text() == actual.read_text(), relative
    return len(expected_files)
