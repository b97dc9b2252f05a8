"""Workflow tests: lint, the paper suite's plan, a tiny end-to-end run, add-a-model re-runs.

Snakemake is driven through subprocesses (``python -m snakemake``), the way users run it.
The tiny suite (``tests/integration``) runs in a copy of its folder, so the repository
stays clean and ``--configfile`` merging never mixes it with the main config.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from brainalign import io

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
INTEGRATION = REPO / "tests" / "integration"

pytestmark = pytest.mark.workflow


def snakemake(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile in ``cwd``."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(cwd), *args]
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if check and completed.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{completed.stdout[-4000:]}\n{completed.stderr[-8000:]}")
    return completed


def planned_jobs(*args: str, cwd: Path) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run plans."""
    output = snakemake("-n", "--quiet", "rules", "--printshellcmds", "--verbose", *args, cwd=cwd).stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not match:
            continue
        wildcards = re.search(r"wildcards: (.*)", block)
        pairs = dict(item.split("=", 1) for item in wildcards.group(1).split(", ")) if wildcards else {}
        jobs.append((match.group(1), pairs))
    return jobs


def test_lint_is_clean():
    completed = snakemake("--lint", cwd=REPO, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Lints for" not in completed.stdout + completed.stderr


def test_paper_suite_plans_every_job():
    jobs = planned_jobs("--config", "suite=paper", cwd=REPO)
    rules = pd.Series([rule for rule, _ in jobs]).value_counts()
    n_models, n_neural, n_behavior = 25, 3, 1
    assert rules["fetch_model"] == n_models
    assert rules["extract_activations"] == n_models * n_neural
    assert rules["compute_surprisal"] == n_models * n_behavior
    n_layers = sum(
        block["n_layers"] for name, block in yaml.safe_load((REPO / "config.yaml").read_text())["models"].items()
        if name in yaml.safe_load((REPO / "config.yaml").read_text())["suites"]["paper"]["models"]
    )
    assert rules["fit_encoding"] == 2 * n_neural * n_layers
    assert rules["download_dataset"] == 4
    assert rules["aggregate_scores"] == 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny suite run to completion in a copy of tests/integration."""
    workdir = tmp_path_factory.mktemp("tiny")
    shutil.copytree(INTEGRATION, workdir, dirs_exist_ok=True)
    snakemake("--cores", "2", cwd=workdir)
    return workdir


def test_tiny_pipeline_produces_every_output(tiny_run: Path):
    brain = io.read_tsv(tiny_run / "results/scores/brain.tsv")
    behavior = io.read_tsv(tiny_run / "results/scores/behavior.tsv")
    assert set(brain["model"]) == {"tiny-gpt2", "tiny-gpt2-tuned", "tiny-t5"}
    assert set(brain["protocol"]) == {"aw2024", "robust"}
    assert brain["demo"].all() and behavior["demo"].all()
    assert set(behavior["protocol"]) == {"aw2024", "regression"}
    assert (tiny_run / "results/summary.md").read_text().strip()
    for png in (tiny_run / "results/figures").glob("*.png"):
        assert png.stat().st_size > 1000
    assert len(list((tiny_run / "results/figures").glob("*.png"))) >= 5


def test_planted_model_ranks_first(tiny_run: Path):
    """The simulated voxels come from tiny-gpt2's layer 2: it must win under both protocols."""
    brain = io.read_tsv(tiny_run / "results/scores/brain.tsv")
    for protocol, table in brain.groupby("protocol"):
        best = table.loc[table["score"].idxmax()]
        assert best["model"] == "tiny-gpt2", (protocol, table[["model", "score"]])
    layers = io.read_tsv(tiny_run / "results/scores/brain_layers.tsv")
    planted = layers[(layers["model"] == "tiny-gpt2") & (layers["protocol"] == "aw2024")]
    assert int(planted.loc[planted["score"].idxmax(), "layer"]) == 2


def test_rerun_has_nothing_to_do(tiny_run: Path):
    completed = snakemake("-n", cwd=tiny_run)
    assert "Nothing to be done" in completed.stdout + completed.stderr


def test_adding_a_model_plans_only_its_jobs(tiny_run: Path):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    config["models"]["tiny-gpt2-copy"] = dict(config["models"]["tiny-gpt2"])
    config["suites"]["tiny"]["models"].append("tiny-gpt2-copy")
    (tiny_run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        jobs = planned_jobs(cwd=tiny_run)
    finally:
        shutil.copy(INTEGRATION / "config.yaml", tiny_run / "config.yaml")
    with_model = [(rule, wc) for rule, wc in jobs if "model" in wc]
    assert with_model, "the new model plans no jobs"
    assert {wc["model"] for _, wc in with_model} == {"tiny-gpt2-copy"}
    others = {rule for rule, wc in jobs if "model" not in wc}
    assert others <= {"aggregate_scores", "analyze", "plot_figures", "all"}, others


def test_report_bundles_scores_figures_and_summary(tiny_run: Path):
    snakemake("--report", "report.html", cwd=tiny_run)
    html = (tiny_run / "report.html").read_text(errors="ignore")
    for caption_fragment in ("Brain alignment per model", "Instruction-tuning effect", "layer_profiles_aw2024"):
        assert caption_fragment in html
    assert "DEMO" in (tiny_run / "results/summary.md").read_text()


def test_snakemake_files_are_formatted():
    completed = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules/"], cwd=REPO, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
