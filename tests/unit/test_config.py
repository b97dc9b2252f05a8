"""Config validation: defaults, suites, and errors that name the key and the allowed values."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from brainalign.config import load_config, suite_datasets, suite_models, validate_config
from brainalign.encoding import robust, toneva
from brainalign.errors import ConfigError

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
        "t5-small", "t5-base", "t5-large", "t5-xl", "t5-xxl", "llama-7b", "llama-13b", "llama-33b"
    }
    assert models["flan-t5-xxl"]["metadata"]["mmlu"] == pytest.approx(0.545)
    assert set(suite_datasets(config, "paper")) == {"pereira2018", "blank2014", "wehbe2014", "futrell2018"}


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
        (lambda c: c["models"]["tiny-t5"].update(n_layer=4), ["models.tiny-t5", "'n_layer'", "did you mean 'n_layers'"]),
        (lambda c: c["models"]["tiny-t5"].update(kind="casual"), ["models.tiny-t5.kind", "'causal', 'seq2seq'"]),
        (lambda c: c["models"]["tiny-t5"].update(n_layers="four"), ["models.tiny-t5.n_layers", "integer"]),
        (lambda c: c.update(suite="papr"), ["suite: 'papr'", "demo, paper"]),
        (lambda c: c["suites"]["demo"]["models"].append("gemma-270m"), ["suites.demo.models", "did you mean 'gemma-3-270m'"]),
        (lambda c: c["models"]["vicuna-7b"].update(base="lama-7b"), ["models.vicuna-7b.base", "'lama-7b'"]),
        (lambda c: c["datasets"]["demo-passages"].update(reader="pereira"), ["datasets.demo-passages.reader", "'pereira2018'"]),
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
    library = {key: spec for key, spec in robust.OPTIONS_SCHEMA["properties"].items() if key not in ("time_series", "permutation")}
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    robust_schema = dict(schema["properties"]["protocols"]["properties"]["robust"]["properties"])
    robust_schema.pop("readout")  # it picks the activation file the fits read; no fit option
    assert robust_schema == library


def test_unknown_suite_is_named_with_the_defined_ones(raw_config):
    config = validate_config(copy.deepcopy(raw_config))
    with pytest.raises(ConfigError, match=r"suite 'nosuch' is not defined; defined suites: \['demo', 'paper'\]"):
        suite_models(config, "nosuch")
