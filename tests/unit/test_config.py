"""Config validation: defaults, suites, and errors that name the key and the allowed values."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO_ROOT as REPO

from brainalign.config import load_config, suite_datasets, suite_models, validate_config
from brainalign.encoding import aw2024, robust, toneva
from brainalign.errors import ConfigError
from brainalign.models.extraction_options import complete_options


@pytest.fixture()
def raw_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_main_config_is_valid_and_defaults_are_filled(raw_config):
    config = validate_config(raw_config)
    assert config["suite"] == "demo"
    assert config["models"]["llama-7b"]["trust_remote_code"] is False
    assert config["models"]["llama-7b"]["prompt_policy"] == "raw"
    assert config["datasets"]["pereira2018"]["demo"] is False


def test_paper_suite_matches_the_paper(raw_config):
    config = validate_config(raw_config)
    models = suite_models(config, "paper")
    assert len(models) == 25
    assert sum(block["instruction_tuned"] for block in models.values()) == 17
    assert {block["base"] for block in models.values() if block["instruction_tuned"]} == {
        "t5-small",
        "t5-base",
        "t5-large",
        "t5-xl",
        "t5-xxl",
        "llama-7b",
        "llama-13b",
        "llama-33b",
    }
    assert models["flan-t5-xxl"]["metadata"]["mmlu"] == pytest.approx(0.545)
    assert set(suite_datasets(config, "paper")) == {"pereira2018", "blank2014", "wehbe2014", "futrell2018"}


# The layers the Brain-Score fork's registrations commit to (0-based block or layer index).
FORK_COMMITTED = {
    "t5-small": ("decoder", 6),
    "t5-base": ("encoder", 9),
    "t5-large": ("encoder", 17),
    "t5-xl": ("decoder", 2),
    "t5-xxl": ("decoder", 0),
    "flan-t5-small": ("encoder", 7),
    "flan-t5-base": ("decoder", 7),
    "flan-t5-large": ("encoder", 18),
    "flan-t5-xl": ("decoder", 2),
    "flan-t5-xxl": ("decoder", 0),
    "flan-alpaca-base": ("encoder", 11),
    "flan-alpaca-large": ("encoder", 19),
    "flan-alpaca-xl": ("decoder", 5),
    "flan-alpaca-xxl": ("decoder", 0),
    "flan-gpt4all-xl": ("decoder", 2),
    "flan-sharegpt-xl": ("decoder", 5),
    "flan-alpaca-gpt4-xl": ("decoder", 2),
    "llama-7b": ("layers", 29),
    "alpaca-7b": ("layers", 29),
    "vicuna-7b": ("layers", 28),
    "llama-13b": ("layers", 33),
    "vicuna-13b": ("layers", 33),
    "llama-33b": ("layers", 53),
    "vicuna-33b": ("layers", 52),
}


def test_committed_layers_are_the_forks_in_our_numbering(raw_config):
    """Encoder block N is layer N + 1, decoder block N is layer E + N + 1, LLaMA layer N is N + 1."""
    models = suite_models(validate_config(raw_config), "paper")
    for name, (stack, index) in FORK_COMMITTED.items():
        offset = models[name]["n_layers"] // 2 if stack == "decoder" else 0
        assert models[name]["committed_layer"] == offset + index + 1, name
    assert {name for name, block in models.items() if block["committed_layer"] is None} == {"stable-vicuna-13b"}


def every_schema_property_is_documented(schema: dict, path: str = "") -> list[str]:
    problems = []
    for name, sub in (schema.get("properties") or {}).items():
        if "description" not in sub:
            problems.append(f"{path}{name}: no description")
        problems += every_schema_property_is_documented(sub, f"{path}{name}.")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += every_schema_property_is_documented(schema["additionalProperties"], f"{path}*.")
    return problems


def test_every_schema_key_has_a_description():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert every_schema_property_is_documented(schema) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["models"]["tiny-t5"].update(n_layer=4),
            ["models.tiny-t5", "'n_layer'", "did you mean 'n_layers'"],
        ),
        (lambda c: c["models"]["tiny-t5"].update(kind="casual"), ["models.tiny-t5.kind", "'causal', 'seq2seq'"]),
        (lambda c: c["models"]["tiny-t5"].update(n_layers="four"), ["models.tiny-t5.n_layers", "integer"]),
        (lambda c: c.update(suite="papr"), ["suite: 'papr'", "demo, brainscore-check, paper"]),
        (
            lambda c: c["suites"]["demo"]["models"].append("gemma-270m"),
            ["suites.demo.models", "did you mean 'gemma-3-270m'"],
        ),
        (lambda c: c["models"]["vicuna-7b"].update(base="lama-7b"), ["models.vicuna-7b.base", "'lama-7b'"]),
        (
            lambda c: c["datasets"]["demo-passages"].update(reader="pereira"),
            ["datasets.demo-passages.reader", "'pereira2018'"],
        ),
        (lambda c: c["protocols"].update(robus={}), ["protocols", "did you mean 'robust'"]),
    ],
)
def test_bad_config_names_key_and_allowed_values(raw_config, edit, expected):
    config = copy.deepcopy(raw_config)
    edit(config)
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    for fragment in expected:
        assert fragment in str(error.value)


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_the_librarys_protocol_defaults_are_the_validated_configs(raw_config):
    """Outside the workflow (CLI, notebooks) the library fills what config validation fills."""
    protocols = validate_config(copy.deepcopy(raw_config))["protocols"]
    library = {"aw2024": aw2024.resolve_aw2024_options({}), "robust": robust.resolve_robust_options({})}
    dataset_facts = {
        "time_series": False,
        "permutation": "group_swap",
        "cv_groups": "cv_group",
        "ceiling_pools": "sampled",
    }
    for name, resolved in library.items():
        assert {k: v for k, v in resolved.items() if k not in dataset_facts} == protocols[name]
    assert library["aw2024"]["time_series"] is False and library["aw2024"]["ceiling_pools"] == "sampled"
    assert {k: library["robust"][k] for k in dataset_facts} == dataset_facts  # permutation auto: group swaps
    assert toneva.resolve_toneva_options({}) == protocols["aw2024"]["toneva"]
    assert protocols["aw2024"]["toneva"]["alphas"] == [10.0**k for k in range(-6, 10)]


def test_the_librarys_extraction_defaults_are_the_validated_configs(raw_config):
    """``readout`` and ``time_series`` are set per job by the workflow, not in the config."""
    extraction = validate_config(copy.deepcopy(raw_config))["extraction"]
    set_by_the_workflow = {"readout": "unit", "time_series": False}
    assert complete_options({}) == {**extraction, **set_by_the_workflow}
    assert extraction["word_window"] == 20


def test_unknown_suite_is_named_with_the_defined_ones(raw_config):
    config = validate_config(copy.deepcopy(raw_config))
    with pytest.raises(
        ConfigError,
        match=r"suite 'nosuch' is not defined; defined suites: \['brainscore-check', 'demo', 'paper', 'rehearsal', "
        r"'rehearsal-ci'\]",
    ):
        suite_models(config, "nosuch")
