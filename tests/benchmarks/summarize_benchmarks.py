"""Summarize a run's Snakemake benchmark files per rule: jobs, wall and CPU time, peak memory.

Every real rule writes ``benchmarks/<rule>/<wildcards...>.tsv`` (Snakemake's ``benchmark:``
directive: ``s`` seconds of wall time, ``cpu_time`` seconds of CPU, ``max_rss`` megabytes).
This prints, per rule, the number of jobs, their summed and largest wall time, their summed
CPU time (the unit that does not grow when other work shares the machine), and the largest
peak RSS, plus totals.

Usage: ``python tests/benchmarks/summarize_benchmarks.py [BENCHMARKS_DIR] [--match TEXT]``
(``--match`` keeps the files whose path contains TEXT, e.g. a dataset name prefix).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def benchmark_table(folder: Path, match: str = "") -> pd.DataFrame:
    """One row per benchmark file: ``rule``, ``job`` (the path below the rule), ``s``, ``cpu_time``, ``max_rss``."""
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        relative = path.relative_to(folder)
        if match not in str(relative):
            continue
        measured = pd.read_csv(path, sep="\t", na_values=["-"])
        rows.append(
            {
                "rule": relative.parts[0],
                "job": str(relative.with_suffix("")),
                "s": float(measured["s"].max()),
                "cpu_time": float(measured["cpu_time"].max()),
                "max_rss": float(measured["max_rss"].max()),
            }
        )
    if not rows:
        raise SystemExit(f"no benchmark files under {folder}" + (f" matching {match!r}" if match else ""))
    return pd.DataFrame(rows)


def per_rule(table: pd.DataFrame) -> pd.DataFrame:
    """Jobs, summed and largest wall time (s), summed CPU time (s) and largest peak RSS (MB) of
    each rule, costliest first."""
    summary = table.groupby("rule").agg(
        jobs=("s", "size"),
        total_s=("s", "sum"),
        max_s=("s", "max"),
        cpu_s=("cpu_time", "sum"),
        max_rss_mb=("max_rss", "max"),
    )
    return summary.sort_values("total_s", ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path("benchmarks"))
    parser.add_argument("--match", default="", help="keep files whose path contains this text")
    args = parser.parse_args()
    table = benchmark_table(args.folder, args.match)
    summary = per_rule(table)
    print(summary.round(1).to_string())
    print(
        f"\n{len(table)} jobs, {table['s'].sum():.0f} s of job wall time and {table['cpu_time'].sum():.0f} s of CPU "
        "time in all, "
        f"largest peak RSS {table['max_rss'].max():.0f} MB ({table.loc[table['max_rss'].idxmax(), 'job']})"
    )


if __name__ == "__main__":
    main()
