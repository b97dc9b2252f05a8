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
from collections import Counter
from pathlib import Path

import pytest
import yaml
from workflow_runs import INTEGRATION, REPO, completed_tiny_run, copy_run, planned_jobs, snakemake

from brainalign import io
from brainalign.provenance import SIDECAR_SUFFIX

pytestmark = pytest.mark.workflow


def test_lint_is_clean():
    completed = snakemake(REPO, "--lint", check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "Lints for" not in completed.stdout + completed.stderr


def test_paper_suite_plans_every_job():
    rules = Counter(rule for rule, _ in planned_jobs(REPO, "--config", "suite=paper"))
    n_models, n_neural, n_behavior = 25, 3, 1
    assert rules["fetch_model"] == n_models
    assert rules["extract_activations"] == n_models * n_neural
    assert rules["compute_surprisal"] == n_models * n_behavior
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    n_layers = sum(config["models"][name]["n_layers"] for name in config["suites"]["paper"]["models"])
    assert rules["fit_encoding"] == 2 * n_neural * n_layers
    assert rules["fit_controls"] == n_neural  # one controls-only fit per dataset serves every layer
    assert rules["download_dataset"] == 4
    assert rules["aggregate_scores"] == 1
    paper_models = set(config["suites"]["paper"]["models"])
    n_pairs = sum(config["models"][name].get("base") in paper_models for name in paper_models)
    assert n_pairs == 17  # the paper's 17 instruction-tuned/base pairs
    assert rules["compare_with_base"] == 2 * n_neural * n_pairs


@pytest.mark.parametrize(("device", "gpus"), [("cpu", 0), ("cuda", 1)])
def test_model_jobs_hold_the_local_gpu_slot_only_when_they_run_on_a_gpu(device, gpus):
    # profiles/default admits one gpu-holding job at a time; on a CPU, model jobs run side by side.
    dry_run = snakemake(REPO, "-n", "--forceall", "--config", f"extraction={{device: {device}}}").stdout
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", dry_run)
    for rule in ("extract_activations", "compute_surprisal"):
        requests = [re.search(r"resources: .*\bgpu=(\d+)", b).group(1) for b in blocks if b.startswith(f"rule {rule}:")]
        assert requests and set(requests) == {str(gpus)}, (rule, requests)


def test_brainscore_check_suite_plans_the_check_on_published_ceilings():
    jobs = planned_jobs(REPO, "--config", "suite=brainscore-check")
    rules = Counter(rule for rule, _ in jobs)
    assert rules["check_brainscore"] == 1 and rules["fetch_model"] == 2
    assert {dict(w)["protocol"] for rule, w in jobs if rule == "compute_ceiling"} == {"aw2024"}
    # Pereira2018's aw2024 ceiling reads Brain-Score's precomputed files, checked by the download manifest.
    dry_run = snakemake(REPO, "--config", "suite=brainscore-check", "-n", "results/ceiling/aw2024/pereira2018.parquet")
    block = dry_run.stdout.split("rule compute_ceiling:")[1].split("\n\n")[0]
    assert "resources/downloads/pereira2018/manifest.json" in block, block


@pytest.mark.parametrize("suite", ["rehearsal", "rehearsal-ci"])
def test_rehearsal_suites_generate_their_data_and_plan_every_job(suite, tmp_path):
    """Rehearsal datasets come from generate_rehearsal_data (never a download), through the real readers."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")  # a fresh folder: nothing made yet
    rules = Counter(rule for rule, _ in planned_jobs(tmp_path, "--config", f"suite={suite}"))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    datasets = [config["datasets"][name] for name in config["suites"][suite]["datasets"]]
    models = config["suites"][suite]["models"]
    n_neural = sum(block["measure"] == "neural" for block in datasets)
    n_layers = sum(config["models"][name]["n_layers"] for name in models)
    assert {block["reader"] for block in datasets} == {"pereira2018", "blank2014", "wehbe2014", "futrell2018"}
    assert rules["generate_rehearsal_data"] == len(datasets) and rules["download_dataset"] == 0
    # The real readers read the generated files: no response of theirs is simulated by the workflow.
    assert rules["prepare_responses"] == len(datasets) and rules["simulate_responses"] == 0
    assert rules["extract_activations"] == len(models) * n_neural
    assert rules["compute_surprisal"] == len(models) * (len(datasets) - n_neural)
    assert rules["fit_encoding"] == 2 * n_neural * n_layers


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A private copy of the tiny suite run to completion (shared once per session)."""
    return copy_run(completed_tiny_run(tmp_path_factory), tmp_path_factory.mktemp("tiny"))


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


def test_each_tuned_model_is_tested_against_its_base_on_the_chosen_layers(tiny_run: Path):
    pairs = io.read_tsv(tiny_run / "results/scores/brain_pairs.tsv")
    assert sorted(pairs["protocol"]) == ["aw2024", "robust"]
    assert set(zip(pairs["model"], pairs["base"])) == {("tiny-gpt2-tuned", "tiny-gpt2")}
    assert pairs["p_value"].between(0, 1).all() and pairs["n_groups"].eq(3).all()
    brain = io.read_tsv(tiny_run / "results/scores/brain.tsv").set_index(["protocol", "model"])
    for model in ("tiny-gpt2", "tiny-gpt2-tuned"):
        # aw2024 keeps the best layer, so each neuroid's r is that layer's fit
        scores = io.read_table(tiny_run / f"results/scores/aw2024/tiny-passages/{model}.neuroids.parquet")
        layer = int(brain.loc[("aw2024", model), "layer"])
        fit = io.read_table(tiny_run / f"results/encoding/aw2024/tiny-passages/{model}/layer-{layer}.parquet")
        assert scores["r"].tolist() == pytest.approx(fit["r"].tolist(), abs=1e-12)
    tests = io.read_tsv(tiny_run / "results/analysis/instruction_pair_tests.tsv")
    assert tests["p_fdr"].between(0, 1).all()
    assert "tiny-gpt2-tuned vs tiny-gpt2: mean score difference" in (tiny_run / "results/summary.md").read_text()
    # The robust rows carry the headline (R^2 gain over the controls) with each model beside it.
    robust = brain.xs("robust", level="protocol")
    assert robust[["score", "score_joint", "score_controls", "score_llm", "r_joint", "r_unique"]].notna().all().all()


def test_planted_model_ranks_first(tiny_run: Path):
    """The simulated voxels come from tiny-gpt2's layer 2: it must win under both protocols."""
    brain = io.read_tsv(tiny_run / "results/scores/brain.tsv")
    for protocol, table in brain.groupby("protocol"):
        best = table.loc[table["score"].idxmax()]
        assert best["model"] == "tiny-gpt2", (protocol, table[["model", "score"]])
    layers = io.read_tsv(tiny_run / "results/scores/brain_layers.tsv")
    planted = layers[(layers["model"] == "tiny-gpt2") & (layers["protocol"] == "aw2024")]
    assert int(planted.loc[planted["score"].idxmax(), "layer"]) == 2


def declared_outputs(workdir: Path) -> set[str]:
    """Every output file of the jobs of a run's default target, as Snakemake's ``--summary`` lists them."""
    lines = snakemake(workdir, "--summary").stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("output_file\t")))
    return {line.split("\t", 1)[0] for line in lines[header + 1 :] if line.strip()}


def test_every_result_file_is_a_declared_output_with_its_provenance(tiny_run: Path):
    """Nothing under results/ is written behind Snakemake's back, and every result says how it was made."""
    present = {path.relative_to(tiny_run).as_posix() for path in (tiny_run / "results").rglob("*") if path.is_file()}
    sidecars = {path for path in present if path.endswith(SIDECAR_SUFFIX)}
    results = present - sidecars
    declared = {path for path in declared_outputs(tiny_run) if path.startswith("results/")}
    assert declared and declared <= results, f"declared outputs missing after the run: {sorted(declared - results)}"
    assert results <= declared, f"files under results/ that no job of the run declares: {sorted(results - declared)}"
    unrecorded = sorted(path for path in results if path + SIDECAR_SUFFIX not in sidecars)
    assert not unrecorded, f"results without a provenance sidecar ({SIDECAR_SUFFIX}): {unrecorded}"
    orphans = sorted(path for path in sidecars if path.removesuffix(SIDECAR_SUFFIX) not in results)
    assert not orphans, f"provenance sidecars of no result file: {orphans}"
    # The responses of the demo readers are simulated by their own rule, after extraction.
    for dataset in ("tiny-passages", "tiny-story"):
        record = io.read_json(tiny_run / f"results/responses/{dataset}.parquet{SIDECAR_SUFFIX}")
        assert record["rule"] == "simulate_responses", (dataset, record["rule"])


def test_rerun_has_nothing_to_do(tiny_run: Path):
    completed = snakemake(tiny_run, "-n")
    assert "Nothing to be done" in completed.stdout + completed.stderr


def test_adding_a_model_plans_only_its_jobs(tiny_run: Path):
    config = yaml.safe_load((tiny_run / "config.yaml").read_text())
    config["models"]["tiny-gpt2-copy"] = dict(config["models"]["tiny-gpt2"])
    config["suites"]["tiny"]["models"].append("tiny-gpt2-copy")
    (tiny_run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        jobs = planned_jobs(tiny_run)
    finally:
        shutil.copy(INTEGRATION / "config.yaml", tiny_run / "config.yaml")
    with_model = [(rule, dict(pairs)) for rule, pairs in jobs if "model" in dict(pairs)]
    assert with_model, "the new model plans no jobs"
    assert {wildcards["model"] for _, wildcards in with_model} == {"tiny-gpt2-copy"}
    others = {rule for rule, pairs in jobs if "model" not in dict(pairs)}
    assert others <= {"aggregate_scores", "analyze", "plot_figures", "all"}, others


def test_report_bundles_scores_figures_and_summary(tiny_run: Path):
    snakemake(tiny_run, "--report", "report.html")
    html = (tiny_run / "report.html").read_text(errors="ignore")
    for caption_fragment in ("Brain alignment per model", "Instruction-tuning effect", "layer_profiles_aw2024"):
        assert caption_fragment in html
    assert "DEMO" in (tiny_run / "results/summary.md").read_text()


def test_snakemake_files_are_formatted():
    completed = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules/"], cwd=REPO, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_a_suite_with_only_a_behavioral_dataset_runs_to_the_end(tmp_path, tiny_run: Path):
    """Empty brain tables keep their columns, and only the declared figures are drawn."""
    run = copy_run(tiny_run, tmp_path / "behavior-only")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["suites"]["tiny"]["datasets"] = ["tiny-story"]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.rmtree(run / "results/figures")  # the full suite's figures
    snakemake(run, "--cores", "2")
    assert io.read_tsv(run / "results/scores/brain.tsv").empty
    assert "tiny-story" in (run / "results/summary.md").read_text()
    drawn = {png.stem for png in (run / "results/figures").glob("*.png")}
    assert drawn == {name for name in drawn if "behavior" in name}
    assert {"protocols_behavior", "properties_behavior_regression"} <= drawn
