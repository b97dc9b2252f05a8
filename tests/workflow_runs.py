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

import numpy as np
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
    completed = subprocess.run(
        snakemake_command(workdir, *args), cwd=workdir, capture_output=True, text=True, timeout=timeout
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-8000:]}"
        )
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


FLOAT_TOLERANCE = 1024 * float(np.finfo(np.float32).eps)
"""Relative and absolute tolerance of floats compared between two runs (2**-13, about 1.2e-4).

Model outputs are float32: the same inputs through another kernel path (a CPU's vector
width, a batch's shape) reorder float32 sums over a hidden width or vocabulary and move a
result by up to about a thousand float32 epsilons; a real change (another window, token,
weight or split) moves it by far more. Everything that is not a float compares exactly.
"""

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def assert_same_column(expected: pd.Series, actual: pd.Series, where: str) -> None:
    """Floats (and lists of floats) equal within :data:`FLOAT_TOLERANCE`; anything else exactly."""
    first = next((value for value in expected if value is not None), None)
    if isinstance(first, (np.ndarray, list)):
        expected_values, actual_values = np.stack(expected.to_numpy()), np.stack(actual.to_numpy())
    else:
        expected_values, actual_values = expected.to_numpy(), actual.to_numpy()
    if np.issubdtype(expected_values.dtype, np.floating) and np.issubdtype(actual_values.dtype, np.floating):
        np.testing.assert_allclose(
            actual_values, expected_values, rtol=FLOAT_TOLERANCE, atol=FLOAT_TOLERANCE, equal_nan=True, err_msg=where
        )
    else:
        pd.testing.assert_series_equal(expected, actual, check_exact=True, obj=where)


def assert_same_table(expected: pd.DataFrame, actual: pd.DataFrame, where: str) -> None:
    """Same columns, dtypes and row count; values as :func:`assert_same_column` compares them."""
    assert list(expected.columns) == list(actual.columns), (
        f"{where}: columns {list(expected.columns)} vs {list(actual.columns)}"
    )
    assert expected.dtypes.equals(actual.dtypes), f"{where}: dtypes differ"
    assert len(expected) == len(actual), f"{where}: {len(expected)} vs {len(actual)} rows"
    for column in expected.columns:
        assert_same_column(expected[column], actual[column], f"{where}, column {column!r}")


def _rounding_unit(printed: str) -> float:
    """One unit of a printed decimal's last digit (0 for an integer, which must match exactly)."""
    mantissa, _, exponent = printed.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.0 if not decimals and not exponent else 10.0 ** (int(exponent or 0) - decimals)


def assert_same_text(expected: str, actual: str, where: str) -> None:
    """Same text; a printed decimal may differ by one unit of its last digit (a rounding flip)."""
    assert _NUMBER.split(expected) == _NUMBER.split(actual), f"{where}: the text around the numbers differs"
    for printed_expected, printed_actual in zip(_NUMBER.findall(expected), _NUMBER.findall(actual), strict=True):
        unit = _rounding_unit(printed_expected)
        difference = abs(float(printed_expected) - float(printed_actual))
        assert difference <= unit * (1 + FLOAT_TOLERANCE), f"{where}: {printed_expected} vs {printed_actual}"


def assert_same_results(expected_dir: Path, actual_dir: Path) -> int:
    """Assert both runs hold the same result files with equal contents; return the count.

    Parquet: equal tables and equal ``brainalign`` metadata; TSV: equal tables; Markdown:
    equal text. Floats are equal within :data:`FLOAT_TOLERANCE`, everything else exactly.
    """
    expected_files, actual_files = result_files(expected_dir), result_files(actual_dir)
    assert expected_files == actual_files, set(expected_files) ^ set(actual_files)
    for relative in expected_files:
        expected, actual = expected_dir / relative, actual_dir / relative
        if relative.suffix == ".parquet":
            assert_same_table(pq.read_table(expected).to_pandas(), pq.read_table(actual).to_pandas(), str(relative))
            assert io.read_metadata(expected) == io.read_metadata(actual), relative
        elif relative.suffix == ".tsv":
            assert_same_table(io.read_tsv(expected), io.read_tsv(actual), str(relative))
        else:
            assert_same_text(expected.read_text(), actual.read_text(), str(relative))
    return len(expected_files)
