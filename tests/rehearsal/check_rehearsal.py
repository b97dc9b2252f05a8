"""Check a finished rehearsal run against the answers planted in its data; exit 1 on any failure.

The rehearsal datasets (``brainalign.rehearsal``) know their answer, so a run passes
only if:

- every (neural dataset, protocol, model) has a score and every layer a per-layer score, every
  (behavioral dataset, model) its scores, and none of them is NaN;
- on each planted neural dataset, under each protocol, the source model's best layer is the
  planted ``source_layer`` and the source model scores above every other model;
- the planted pair (the source model against its base) has a positive mean difference under
  each protocol, with p < ``--alpha`` wherever the subjects allow such a p-value (sign flips of
  n subjects reach at best 2 / 2**n two-sided);
- on each null variant, every model's robust headline (the LLM's unique held-out R^2 gain over
  the controls) lies within ``--null-tolerance`` of 0;
- on the planted reading times, the source model's surprisal scores best under both behavioral
  protocols and above its base's;
- with ``--snakemake``: the finished run re-plans nothing under its own profile, and the SLURM
  profile plans every one of its jobs (``--forceall`` dry run) with the same arguments.

Usage: ``python tests/rehearsal/check_rehearsal.py --suite rehearsal-ci [--workdir .]
[--snakemake .venv/bin/snakemake -- <the run's config arguments>]``; it prints one line per
check, a table of the null variants' scores and p-values, and the spread of their per-layer
p-values.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from brainalign.io import read_metadata

NULL_TOLERANCE = 0.01
"""Largest |robust headline| accepted on a null variant: R^2 gains of planted layers are > 0.1."""


class Checks:
    """Collects named pass/fail results and prints them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def expect(self, passed: bool, message: str) -> None:
        print(("ok    " if passed else "FAIL  ") + message)
        if not passed:
            self.failures.append(message)


def load_suite(config_path: Path, suite: str) -> tuple[dict, dict]:
    """The suite's block and the full config (dataset and model blocks)."""
    config = yaml.safe_load(config_path.read_text())
    if suite not in config["suites"]:
        raise SystemExit(f"suite {suite!r} is not in {config_path}")
    return config["suites"][suite], config


def check_coverage(
    checks: Checks,
    brain: pd.DataFrame,
    layers: pd.DataFrame,
    behavior: pd.DataFrame,
    neural: list[str],
    behavioral: list[str],
    models: list[str],
    protocols: list[str],
) -> None:
    """Every score exists and none is NaN."""
    expected = {(d, p, m) for d in neural for p in protocols for m in models}
    found = set(zip(brain["dataset"], brain["protocol"], brain["model"]))
    checks.expect(
        expected <= found,
        f"brain scores for all {len(expected)} dataset x protocol x model (missing: {sorted(expected - found)[:5]})",
    )
    checks.expect(bool(brain["score"].notna().all()), f"no NaN brain score ({int(brain['score'].isna().sum())} NaN)")
    checks.expect(
        bool(layers["score"].notna().all()), f"no NaN per-layer score ({int(layers['score'].isna().sum())} NaN)"
    )
    expected_behavior = {(d, m) for d in behavioral for m in models}
    checks.expect(
        expected_behavior <= set(zip(behavior["dataset"], behavior["model"])),
        f"behavioral scores for all {len(expected_behavior)} dataset x model",
    )
    checks.expect(
        bool(behavior["score"].notna().all()), f"no NaN behavioral score ({int(behavior['score'].isna().sum())} NaN)"
    )


def check_planted_layer(
    checks: Checks, brain: pd.DataFrame, layers: pd.DataFrame, dataset: str, source: str, layer: int
) -> None:
    """The source model's best layer is the planted one and the source model ranks first."""
    for protocol, table in layers[(layers["dataset"] == dataset) & (layers["model"] == source)].groupby("protocol"):
        best = int(table.loc[table["score"].idxmax(), "layer"])
        profile = ", ".join(f"{int(r.layer)}: {r.score:.3f}" for r in table.sort_values("layer").itertuples())
        checks.expect(best == layer, f"{dataset} {protocol}: {source}'s best layer {best} (planted {layer}; {profile})")
    for protocol, table in brain[brain["dataset"] == dataset].groupby("protocol"):
        ranked = table.sort_values("score", ascending=False)
        checks.expect(
            ranked["model"].iloc[0] == source,
            f"{dataset} {protocol}: {source} ranks first "
            f"({', '.join(f'{r.model} {r.score:.3f}' for r in ranked.itertuples())})",
        )


def check_pair(checks: Checks, pairs: pd.DataFrame, dataset: str, source: str, alpha: float) -> None:
    """The tuned source model beats its base: right sign, significant where the subjects allow."""
    rows = pairs[(pairs["dataset"] == dataset) & (pairs["model"] == source)]
    checks.expect(len(rows) > 0, f"{dataset}: a pair test of {source} against its base")
    for row in rows.itertuples():
        checks.expect(
            row.mean_difference > 0, f"{dataset} {row.protocol}: {source} - {row.base} = {row.mean_difference:+.4f} > 0"
        )
        if 2.0 / 2 ** int(row.n_groups) < alpha:
            checks.expect(
                row.p_value < alpha,
                f"{dataset} {row.protocol}: pair p = {row.p_value:.4g} < {alpha} ({row.n_groups} subjects)",
            )
        else:
            print(
                f"note  {dataset} {row.protocol}: {row.n_groups} subjects cannot reach p < {alpha} "
                f"(p = {row.p_value:.4g}); sign only"
            )


def check_null(checks: Checks, brain: pd.DataFrame, dataset: str, tolerance: float) -> pd.DataFrame:
    """Every model's robust headline on a null variant is about 0; return the rows for the report."""
    robust = brain[(brain["dataset"] == dataset) & (brain["protocol"] == "robust")]
    for row in robust.itertuples():
        checks.expect(
            abs(row.score) <= tolerance,
            f"{dataset} robust: {row.model} unique R^2 gain {row.score:+.4f} "
            f"within {tolerance} of 0 (p = {row.p_value:.3g})",
        )
    return robust[["dataset", "model", "score", "p_value"]]


def null_layer_p_values(results: Path, dataset: str) -> pd.DataFrame:
    """Every robust layer fit's p-value on a null variant (for the report, not a check: the layers
    of one dataset share its responses, so their p-values are not independent draws; the seed
    test in tests/unit/test_rehearsal_null_pvalues.py checks uniformity)."""
    rows = []
    for path in sorted((results / "encoding" / "robust" / dataset).glob("*/layer-*.parquet")):
        facts = read_metadata(path)
        rows.append(
            {"model": path.parent.name, "layer": facts["layer"], "score": facts["score"], "p_value": facts["p_value"]}
        )
    return pd.DataFrame(rows)


def summarize_null_p_values(dataset: str, table: pd.DataFrame) -> str:
    """One line: how the per-layer p-values of a null variant are spread."""
    p = table["p_value"].to_numpy(dtype=float)
    return (
        f"{dataset}: {len(p)} layer fits, p-values min {p.min():.3f} median {np.median(p):.3f} "
        f"max {p.max():.3f}, {int((p < 0.05).sum())} below 0.05, KS against uniform p = "
        f"{stats.kstest(p, 'uniform').pvalue:.3f}; |unique R^2 gain| at most {table['score'].abs().max():.2e}"
    )


def check_behavior(checks: Checks, behavior: pd.DataFrame, dataset: str, source: str, base: str | None) -> None:
    """The source model's surprisal fits the planted reading times best, and better than its base's."""
    for protocol, table in behavior[behavior["dataset"] == dataset].groupby("protocol"):
        ranked = table.sort_values("score", ascending=False)
        checks.expect(
            ranked["model"].iloc[0] == source,
            f"{dataset} {protocol}: {source} ranks first "
            f"({', '.join(f'{r.model} {r.score:.3f}' for r in ranked.itertuples())})",
        )
        if base in set(table["model"]):
            scores = table.set_index("model")["score"]
            checks.expect(scores[source] > scores[base], f"{dataset} {protocol}: {source} above its base {base}")


def dry_run(snakemake: str, workdir: Path, profile: str, arguments: list[str], *extra: str) -> tuple[int, str]:
    """Exit code and combined output of a dry run under a workflow profile."""
    command = [snakemake, "--workflow-profile", profile, "--dry-run", *arguments, *extra]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def planned_total(output: str) -> int:
    """The job count of a dry run's summary table (0 when nothing is planned)."""
    found = re.search(r"^total\s+(\d+)\s*$", output, flags=re.MULTILINE)
    return int(found.group(1)) if found else 0


def check_plans(checks: Checks, snakemake: str, workdir: Path, arguments: list[str]) -> None:
    """The finished run re-plans nothing; the SLURM profile plans all of its jobs."""
    code, output = dry_run(snakemake, workdir, "profiles/default", arguments)
    checks.expect(code == 0 and "Nothing to be done" in output, "a re-run of the finished run plans no job")
    code, local = dry_run(snakemake, workdir, "profiles/default", arguments, "--forceall")
    code_slurm, slurm = dry_run(snakemake, workdir, "profiles/slurm", arguments, "--forceall")
    checks.expect(
        code == 0 and code_slurm == 0 and planned_total(slurm) == planned_total(local) > 0,
        f"the SLURM profile plans all {planned_total(local)} jobs of the run ({planned_total(slurm)} planned)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--workdir", type=Path, default=Path("."))
    parser.add_argument("--config", type=Path, default=None, help="default: WORKDIR/config.yaml")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--null-tolerance", type=float, default=NULL_TOLERANCE)
    parser.add_argument("--snakemake", help="the snakemake executable: also check the run's re-run and SLURM plans")
    parser.add_argument("arguments", nargs="*", help="after --: the run's snakemake config arguments")
    args = parser.parse_args()
    suite, config = load_suite(args.config or args.workdir / "config.yaml", args.suite)
    scores = args.workdir / "results" / "scores"
    brain = pd.read_csv(scores / "brain.tsv", sep="\t")
    layers = pd.read_csv(scores / "brain_layers.tsv", sep="\t")
    behavior = pd.read_csv(scores / "behavior.tsv", sep="\t")
    pairs = pd.read_csv(scores / "brain_pairs.tsv", sep="\t")
    blocks = {name: config["datasets"][name] for name in suite["datasets"]}
    neural = [name for name, block in blocks.items() if block["measure"] == "neural"]
    behavioral = [name for name, block in blocks.items() if block["measure"] == "behavior"]
    protocols = suite.get("protocols", ["aw2024", "robust"])

    checks = Checks()
    check_coverage(checks, brain, layers, behavior, neural, behavioral, suite["models"], protocols)
    nulls, null_layers = [], []
    for name, block in blocks.items():
        rehearsal = block["rehearsal"]
        if rehearsal["variant"] == "null":
            nulls.append(check_null(checks, brain, name, args.null_tolerance))
            null_layers.append(summarize_null_p_values(name, null_layer_p_values(args.workdir / "results", name)))
            continue
        source = rehearsal["source_model"]
        if block["measure"] == "behavior":
            check_behavior(checks, behavior, name, source, config["models"][source].get("base"))
            continue
        check_planted_layer(checks, brain, layers, name, source, int(rehearsal.get("source_layer", 2)))
        check_pair(checks, pairs, name, source, args.alpha)
    if args.snakemake:
        check_plans(checks, args.snakemake, args.workdir, args.arguments)
    if nulls:
        print("\nnull variants (robust headline and permutation p-value):")
        print(pd.concat(nulls).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print("\nnull variants, every robust layer fit:")
        print("\n".join(null_layers))
    if checks.failures:
        print(f"\n{len(checks.failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print(f"\nall checks passed ({args.suite})")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
