"""Benchmark the demo suite end to end: wall time, peak memory, job count, planted-signal outcome.

Runs ``snakemake --cores N`` on a fresh copy of the demo inputs in a temporary folder (so
existing results are neither reused nor touched), then reports:

- wall time of the whole run;
- peak resident memory of the largest single job (``getrusage(RUSAGE_CHILDREN)``: the
  maximum over finished child processes) and of the Snakemake scheduler process;
- the number of jobs per rule (from the dry run);
- the planted-signal outcome: which model and layer rank first on ``demo-passages`` and
  which model's surprisal best matches the simulated reading times.

Usage: ``python tests/benchmarks/bench_demo.py [--cores 2] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="2")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="brainalign-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    shutil.copytree(REPO / "resources" / "demo", workdir / "resources" / "demo", dirs_exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--workflow-profile",
        str(REPO / "profiles" / "default"),
    ]  # as `make demo` runs it

    plan = subprocess.run([*command, "-n", "--quiet", "rules"], capture_output=True, text=True, check=True).stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", plan, re.M))
    start = time.perf_counter()
    run = subprocess.run([*command, "--cores", args.cores], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"demo failed:\n{run.stderr[-5000:]}")
    children_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    brain = pd.read_csv(workdir / "results/scores/brain.tsv", sep="\t")
    layers = pd.read_csv(workdir / "results/scores/brain_layers.tsv", sep="\t")
    behavior = pd.read_csv(workdir / "results/scores/behavior.tsv", sep="\t")
    print(f"demo wall time: {wall:.0f} s on {args.cores} cores")
    print(f"peak RSS of the largest process (job or scheduler): {children_peak_mb:.0f} MB")
    print(f"jobs: {counts.get('total')} ({', '.join(f'{k} {v}' for k, v in counts.items() if k != 'total')})")
    for protocol, table in brain.groupby("protocol"):
        ranked = table.sort_values("score", ascending=False)[["model", "layer", "score", "ceiling", "normalized_score"]]
        print(f"\nbrain, {protocol}:\n{ranked.to_string(index=False)}")
    planted = layers[(layers["model"] == "smollm2-135m-instruct") & (layers["protocol"] == "aw2024")]
    top = planted.nlargest(3, "score")[["layer", "score"]]
    print(f"\nsmollm2 best aw2024 layers (planted layer 18):\n{top.to_string(index=False)}")
    print(f"\nbehavior:\n{behavior[['model', 'protocol', 'score', 'ceiling']].to_string(index=False)}")
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
