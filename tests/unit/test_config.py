"""Config validation: defaults, suites, and errors that name the key and the allowed values."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from brainalign.config import load_config, suite_datasets, suite_models, validate_config
from brainalign.encoding import aw2024, robust, toneva
from brainalign.encoding.ceiling import CEILING_DEFAULTS
from brainalign.errors import ConfigError
from brainalign.models.activations import OPTION_DEFAULTS

REPO = Path(__file__).resolve().parents[2]


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


def test_protocol_defaults_in_the_schema_equal_the_librarys(raw_config):
    """The library fills the same defaults when called outside the workflow (CLI, notebooks)."""
    protocols = validate_config(copy.deepcopy(raw_config))["protocols"]
    assert protocols["aw2024"]["toneva"] == toneva.DEFAULTS
    # readout picks the activation file the fits read; published_ceilings picks the ceiling's source
    not_fit_options = ("toneva", "ceiling", "readout", "published_ceilings")
    assert {k: v for k, v in protocols["aw2024"].items() if k not in not_fit_options} == {
        k: v
        for k, v in aw2024.DEFAULTS.items()
        if k != "time_series"  # a dataset fact, not a setting
    }
    library = {
        key: spec
        for key, spec in robust.OPTIONS_SCHEMA["properties"].items()
        if key not in ("time_series", "permutation", "cv_groups")
    }
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    robust_schema = dict(schema["properties"]["protocols"]["properties"]["robust"]["properties"])
    robust_schema.pop("readout")  # it picks the activation file the fits read; no fit option
    robust_schema.pop("ceiling")  # the ceiling's draws, read by the ceiling only (below)
    assert robust_schema == library
    assert protocols["robust"]["ceiling"] == protocols["aw2024"]["ceiling"] == CEILING_DEFAULTS


def test_extraction_defaults_in_the_schema_equal_the_librarys(raw_config):
    """``readout`` and ``time_series`` are set per job by the workflow, not in the config."""
    extraction = validate_config(copy.deepcopy(raw_config))["extraction"]
    set_by_the_workflow = ("readout", "time_series")
    assert extraction == {k: v for k, v in OPTION_DEFAULTS.items() if k not in set_by_the_workflow}
    assert extraction["word_window"] == 20


def test_unknown_suite_is_named_with_the_defined_ones(raw_config):
    config = validate_config(copy.deepcopy(raw_config))
    with pytest.raises(
        ConfigError,
        match=r"suite 'nosuch' is not defined; defined suites: \['brainscore-check', 'demo', 'paper', 'rehearsal', "
        r"'rehearsal-ci'\]",
    ):
        suite_models(config, "nosuch")
