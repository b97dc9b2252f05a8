"""The tiny suite through a real SLURM cluster with the workflow's SLURM profile.

Needs ``sinfo`` and a SLURM node that is up (``.ci/slurm_setup.sh`` makes a one-node
cluster on Debian as root); skipped with the reason otherwise. The job resources are
shrunk to fit a 2-CPU node, and GPU requests are dropped (the node has none). Job states
are read with ``squeue``: the test cluster has no accounting database for ``sacct``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from brainalign import io
from brainalign.provenance import sidecar_path

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = REPO / "tests" / "integration"

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.slow]

CLUSTER_RULES = (
    "prepare_stimuli",
    "prepare_responses",
    "extract_activations",
    "compute_surprisal",
    "simulate_responses",
    "compute_ceiling",
    "fit_controls",
    "fit_encoding",
    "fit_reading_times",
    "score_model",
    "aggregate_scores",
    "analyze",
    "analyze_published",
    "plot_figures",
)
"""Rules that run as SLURM jobs (the others are localrules)."""

SMALL_JOB = {"mem_mb": 1500, "runtime": 15}
"""Per-job request that fits the test node; tiny models need far less."""


def slurm_unavailable_reason() -> str | None:
    """Why no SLURM job can run here, or None when a node is up."""
    if shutil.which("sinfo") is None:
        return "sinfo not found: no SLURM client here (run .ci/slurm_setup.sh as root to make a one-node cluster)"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed in this environment"
    try:
        states = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out: slurmctld is not answering"
    if states.returncode != 0:
        return f"no reachable slurmctld: sinfo says {states.stderr.strip()!r}"
    usable = [
        s
        for s in states.stdout.split()
        if s.rstrip("*~#$@").split("+")[0] in {"idle", "mixed", "allocated", "completing"}
    ]
    if not usable:
        return f"no SLURM node is up (node states: {states.stdout.split() or 'none'})"
    return None


def small_resources() -> list[str]:
    """``--set-resources`` entries: small memory and time, no GPU, for every cluster rule."""
    entries = [f"{rule}:{name}={value}" for rule in CLUSTER_RULES for name, value in SMALL_JOB.items()]
    return entries + ["extract_activations:gpu=0", "compute_surprisal:gpu=0"]


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("tiny-slurm")
    shutil.copytree(INTEGRATION, workdir, dirs_exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        "--executor",
        "slurm",
        "--slurm-status-command",
        "squeue",  # no accounting database behind sacct
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-keep-successful-logs",  # the tests read which jobs were submitted
        "--seconds-between-status-checks",
        "5",
        "--jobs",
        "4",
        "--cores",
        "2",  # per group job: the node has 2 CPUs
        "--local-cores",
        "1",
        "--resources",
        "mem_mb=3000",  # per group job
        "--set-resources",
        *small_resources(),
    ]
    completed = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=1500)
    if completed.returncode != 0:
        raise AssertionError(f"SLURM run failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-12000:]}")
    return workdir, completed


def test_tiny_suite_completes_through_slurm(slurm_run):
    workdir, _ = slurm_run
    brain = io.read_tsv(workdir / "results/scores/brain.tsv")
    behavior = io.read_tsv(workdir / "results/scores/behavior.tsv")
    assert set(brain["model"]) == {"tiny-gpt2", "tiny-gpt2-tuned", "tiny-t5"}
    assert set(brain["protocol"]) == {"aw2024", "robust"}
    assert set(behavior["model"]) == {"tiny-gpt2", "tiny-gpt2-tuned", "tiny-t5"}
    for protocol, table in brain.groupby("protocol"):
        assert table.loc[table["score"].idxmax(), "model"] == "tiny-gpt2", protocol
    assert (workdir / "results/summary.md").read_text().strip()


def slurm_log_folders(workdir: Path) -> set[str]:
    """The plugin's per-rule (``rule_<name>``) and per-group (``group_<name>``) log folders."""
    return {path.name for path in (workdir / ".snakemake/slurm_logs").iterdir()}


def test_jobs_ran_as_slurm_jobs(slurm_run):
    workdir, completed = slurm_run
    assert "has been submitted with SLURM jobid" in completed.stdout + completed.stderr
    expected = {f"rule_{rule}" for rule in ("prepare_stimuli", "extract_activations", "compute_surprisal", "analyze")}
    assert expected <= slurm_log_folders(workdir), slurm_log_folders(workdir)


def test_layer_fits_were_grouped(slurm_run):
    """Each (protocol, dataset, model)'s fits and score were one SLURM job, not one per layer."""
    workdir, _ = slurm_run
    slurm_dirs = slurm_log_folders(workdir)
    assert any(name.startswith("group_encoding") for name in slurm_dirs), slurm_dirs
    assert "rule_fit_encoding" not in slurm_dirs, slurm_dirs


def test_cluster_results_carry_provenance(slurm_run):
    workdir, _ = slurm_run
    fit = workdir / "results/encoding/aw2024/tiny-passages/tiny-gpt2/layer-2.parquet"
    record = json.loads(sidecar_path(fit).read_text())
    assert record["rule"] == "fit_encoding"
    assert record["wildcards"]["layer"] == "2"
