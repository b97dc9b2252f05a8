"""Partial re-runs on a finished tiny run: each change re-plans only the jobs that depend on it.

Every case edits the config of a private copy of the finished run and asserts the exact
set of planned jobs (rule and wildcards) of a dry run. Library edits, which Snakemake does
not track, are found through the provenance sidecars (``brainalign provenance --stale``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_runs import REPO, completed_tiny_run, copy_run, job, planned_jobs

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

NEURAL = "tiny-passages"
BEHAVIOR = "tiny-story"
LAYERS = {"tiny-gpt2": 3, "tiny-gpt2-tuned": 3, "tiny-t5": 4}
TUNED = "tiny-gpt2-tuned"  # instruction-tuned, base tiny-gpt2
PROTOCOLS = ("aw2024", "robust")
AGGREGATES = {job("aggregate_scores"), job("analyze"), job("plot_figures"), job("all")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return completed_tiny_run(tmp_path_factory)


@pytest.fixture()
def run(reference, tmp_path) -> Path:
    return copy_run(reference, tmp_path / "run")


def edit_config(workdir: Path, edit) -> None:
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    edit(config)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def encoding_jobs(dataset: str, model: str, n_layers: int, protocols=PROTOCOLS) -> set:
    """A model's layer fits and scores on a neural dataset."""
    fits = {
        job("fit_encoding", protocol=protocol, dataset=dataset, model=model, layer=layer)
        for protocol in protocols
        for layer in range(1, n_layers + 1)
    }
    return fits | {job("score_model", protocol=protocol, dataset=dataset, model=model) for protocol in protocols}


def pair_jobs(dataset: str, protocols=PROTOCOLS) -> set:
    """The tuned model's paired tests against its base on a neural dataset."""
    return {job("compare_with_base", protocol=protocol, dataset=dataset, model=TUNED) for protocol in protocols}


def test_finished_run_plans_nothing(run):
    assert planned_jobs(run) == set()


def test_adding_a_model_plans_only_its_jobs_and_the_aggregates(run):
    def add_model(config):
        config["models"]["tiny-gpt2-copy"] = dict(config["models"]["tiny-gpt2"])
        config["suites"]["tiny"]["models"].append("tiny-gpt2-copy")

    edit_config(run, add_model)
    expected = {
        job("fetch_model", model="tiny-gpt2-copy"),
        job("extract_activations", dataset=NEURAL, model="tiny-gpt2-copy"),
        job("compute_surprisal", dataset=BEHAVIOR, model="tiny-gpt2-copy"),
        job("fit_reading_times", dataset=BEHAVIOR, model="tiny-gpt2-copy"),
        *encoding_jobs(NEURAL, "tiny-gpt2-copy", LAYERS["tiny-gpt2"]),
        *AGGREGATES,
    }
    assert planned_jobs(run) == expected


def test_add_model_command_plans_only_the_new_models_jobs(run, tmp_path):
    from brainalign.models.fetch import fetch_model

    checkpoint = tmp_path / "checkpoint" / "manifest.json"
    source = {
        "type": "random",
        "architecture": "llama",
        "seed": 5,
        "config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128,
        },
    }
    fetch_model("checkpoint", {"source": source}, checkpoint)
    command = [
        sys.executable,
        "-m",
        "brainalign.cli",
        "add-model",
        str(checkpoint.parent),
        "--name",
        "tiny-llama-tuned",
        "--base",
        "tiny-gpt2",
        "--suite",
        "tiny",
    ]
    added = subprocess.run(
        command, cwd=run, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")}
    )
    assert added.returncode == 0, added.stderr
    assert "causal, 2 layers" in added.stdout
    name = "tiny-llama-tuned"
    expected = {
        job("fetch_model", model=name),
        job("extract_activations", dataset=NEURAL, model=name),
        job("compute_surprisal", dataset=BEHAVIOR, model=name),
        job("fit_reading_times", dataset=BEHAVIOR, model=name),
        *encoding_jobs(NEURAL, name, 2),
        *(job("compare_with_base", protocol=protocol, dataset=NEURAL, model=name) for protocol in PROTOCOLS),
        *AGGREGATES,
    }
    assert planned_jobs(run) == expected


def test_adding_a_dataset_plans_only_its_jobs_and_the_aggregates(run):
    def add_dataset(config):
        block = dict(config["datasets"][NEURAL])
        block["simulation"] = {**block["simulation"], "seed": 8}
        config["datasets"]["tiny-passages-b"] = block
        config["suites"]["tiny"]["datasets"].append("tiny-passages-b")

    edit_config(run, add_dataset)
    expected = {
        job("prepare_stimuli", dataset="tiny-passages-b"),
        job("simulate_responses", dataset="tiny-passages-b"),
        *(job("compute_ceiling", protocol=protocol, dataset="tiny-passages-b") for protocol in PROTOCOLS),
        job("fit_controls", dataset="tiny-passages-b"),
        *(job("extract_activations", dataset="tiny-passages-b", model=model) for model in LAYERS),
        *(jobs for model, n in LAYERS.items() for jobs in encoding_jobs("tiny-passages-b", model, n)),
        *pair_jobs("tiny-passages-b"),
        *AGGREGATES,
    }
    assert planned_jobs(run) == expected


def test_changing_one_protocol_setting_plans_only_that_protocol(run):
    edit_config(run, lambda config: config["protocols"]["robust"].update(n_permutations=200))
    expected = {jobs for model, n in LAYERS.items() for jobs in encoding_jobs(NEURAL, model, n, protocols=("robust",))}
    assert planned_jobs(run) == expected | pair_jobs(NEURAL, protocols=("robust",)) | AGGREGATES


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_changing_a_protocols_ceiling_reruns_only_that_ceiling_and_its_scores(run, protocol):
    edit_config(run, lambda config: config["protocols"][protocol].setdefault("ceiling", {}).update(n_bootstraps=20))
    scores = {job("score_model", protocol=protocol, dataset=NEURAL, model=model) for model in LAYERS}
    ceiling = job("compute_ceiling", protocol=protocol, dataset=NEURAL)
    assert planned_jobs(run) == {ceiling} | scores | pair_jobs(NEURAL, protocols=(protocol,)) | AGGREGATES


def test_changing_a_datasets_subject_pools_reruns_its_ceilings_and_scores_but_no_fit(run):
    edit_config(run, lambda config: config["datasets"][NEURAL].update(ceiling_pools="all"))
    scores = {job("score_model", protocol=p, dataset=NEURAL, model=model) for p in PROTOCOLS for model in LAYERS}
    ceilings = {job("compute_ceiling", protocol=p, dataset=NEURAL) for p in PROTOCOLS}
    assert planned_jobs(run) == ceilings | scores | pair_jobs(NEURAL) | AGGREGATES


def test_changing_a_pair_test_setting_reruns_only_the_pair_tests(run):
    edit_config(run, lambda config: config.setdefault("pair_tests", {}).update(group_by="neuroid"))
    assert planned_jobs(run) == pair_jobs(NEURAL) | AGGREGATES


def test_changing_model_metadata_reruns_only_the_analysis(run):
    edit_config(run, lambda config: config["models"]["tiny-gpt2-tuned"]["metadata"].update(mmlu=0.31))
    assert planned_jobs(run) == {job("analyze"), job("plot_figures"), job("all")}


def test_library_edit_is_listed_by_provenance_not_by_snakemake(run, tmp_path):
    """Snakemake does not see library code; the sidecars' module checksums do.

    The edited library is a copy of ``src`` first on PYTHONPATH, so the repository stays
    untouched; the edit adds a comment to ``brainalign.encoding.robust``. Provenance records
    the modules a job imported, and a job imports only its protocol's code (the protocol
    registry), so only the robust protocol's results are stale.
    """
    source = tmp_path / "src"
    shutil.copytree(REPO / "src", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    module = source / "brainalign" / "encoding" / "robust.py"
    module.write_text(module.read_text() + "\n# edited\n")
    assert planned_jobs(run) == set()

    environment = {**os.environ, "PYTHONPATH": str(source)}
    completed = subprocess.run(
        [sys.executable, "-m", "brainalign.cli", "provenance", "--stale", "results"],
        cwd=run,
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    stale = [line.split("\t") for line in completed.stdout.splitlines()]
    assert all(reasons == "module brainalign.encoding.robust changed" for _, _, reasons in stale), stale
    stale_rules = {rule for _, rule, _ in stale}
    # Every job whose code path reached robust (the robust protocol's fits, ceiling and scores) is listed ...
    assert {"fit_encoding", "score_model", "compute_ceiling"} <= stale_rules, stale_rules
    fits = [path for path, rule, _ in stale if rule == "fit_encoding"]
    assert len(fits) == sum(LAYERS.values()) and all("/robust/" in path for path in fits), fits
    assert all("/robust/" in path for path, rule, _ in stale if rule in ("score_model", "compute_ceiling")), stale
    # ... and no job that never imported it: the aw2024 fits load only their own protocol's code.
    assert not stale_rules & {"prepare_stimuli", "extract_activations", "compute_surprisal", "fit_reading_times"}, (
        stale_rules
    )
