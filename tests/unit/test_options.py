"""The options resolver: the schema's defaults under the given values, unknown keys refused."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO_ROOT as REPO

from brainalign.config import validate_config
from brainalign.errors import ConfigError
from brainalign.options import resolve_options, schema_default

SCHEMA = yaml.safe_load((REPO / "src" / "brainalign" / "schemas" / "config.schema.yaml").read_text())


def object_sections(schema: dict, path: str) -> list[tuple[str, dict]]:
    """Every section with its own keys below ``schema`` (``*`` for the keyed collections)."""
    found = [(path, schema)] if "properties" in schema else []
    children = {f"{path}.{name}": spec for name, spec in schema.get("properties", {}).items()}
    if isinstance(schema.get("additionalProperties"), dict):
        children[f"{path}.*"] = schema["additionalProperties"]
    for child, spec in children.items():
        found += object_sections(spec, child)
    return found


SECTION_SCHEMAS = {
    **{path.removeprefix("."): spec for path, spec in object_sections(SCHEMA, "") if path},
    **{f"$defs.{name}": spec for name, spec in SCHEMA["$defs"].items() if "properties" in spec},
}
SECTIONS = [path for path in SECTION_SCHEMAS if not path.startswith("$defs")]
READER_SECTIONS = [path for path in SECTION_SCHEMAS if path.startswith("$defs")]


def test_every_section_of_the_schema_is_found():
    assert {"protocols.aw2024", "protocols.aw2024.toneva", "protocols.robust.alphas", "extraction"} <= set(SECTIONS)
    assert {"behavior", "pair_tests", "datasets.*.simulation", "models.*.metadata"} <= set(SECTIONS)
    assert set(READER_SECTIONS) == {
        f"$defs.{r}_options" for r in ("pereira2018", "blank2014", "wehbe2014", "futrell2018")
    }


@pytest.mark.parametrize("section", ["protocols.aw2024", "protocols.robust", "extraction", "behavior", "pair_tests"])
def test_top_sections_resolve_to_what_config_validation_fills(section):
    """jsonschema's default filling (config validation) is the independent computation."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for settings in ("protocols", "extraction", "behavior", "pair_tests"):
        config.pop(settings, None)
    expected = validate_config(config)
    for part in section.split("."):
        expected = expected[part]
    assert resolve_options(section, None) == expected


@pytest.mark.parametrize("section", SECTIONS + READER_SECTIONS)
def test_every_section_resolves_to_its_declared_defaults(section):
    resolved = resolve_options(section, None)
    for name, spec in SECTION_SCHEMAS[section]["properties"].items():
        if "properties" in spec:
            assert isinstance(resolved[name], dict), name
        elif "default" in spec:
            assert resolved[name] == spec["default"], name
        else:
            assert name not in resolved, name


def test_given_values_win_and_nested_sections_keep_their_other_defaults():
    resolved = resolve_options("protocols.robust", {"n_outer_folds": 3, "alphas": {"n": 5}, "ceiling": {"seed": 7}})
    assert resolved["n_outer_folds"] == 3
    assert resolved["alphas"] == {"min_exp": -2, "max_exp": 8, "n": 5}
    assert resolved["ceiling"] == {"n_subsamples": 10, "n_holdouts": 5, "n_bootstraps": 100, "seed": 7}
    assert resolved["n_inner_folds"] == 5
    assert resolve_options("protocols.robust", {"alphas": None})["alphas"] == {"min_exp": -2, "max_exp": 8, "n": 21}


def test_the_defaults_are_copies():
    first = resolve_options("protocols.aw2024", None)
    first["toneva"]["delays"].append(99)
    first["ceiling"]["seed"] = 5
    assert resolve_options("protocols.aw2024", None)["toneva"]["delays"] == [1, 2, 3, 4]
    assert schema_default("protocols.aw2024.ceiling.seed") == 0


def test_an_unknown_key_names_the_section_the_key_the_closest_and_the_accepted_ones():
    with pytest.raises(ConfigError) as error:
        resolve_options("protocols.aw2024.toneva", {"n_component": 3, "zzz": 1})
    message = str(error.value)
    assert message.startswith("protocols.aw2024.toneva: unknown option(s) ['n_component', 'zzz']")
    assert "'n_component' -> 'n_components'" in message
    assert "accepted: ['alphas', 'boundary_trs', 'delays', 'fold_scheme', 'inner_folds', 'n_components'" in message


def test_an_unknown_key_of_a_nested_section_names_the_nested_section():
    with pytest.raises(ConfigError, match=r"^protocols\.robust\.ceiling: unknown option\(s\) \['n_splits'\]"):
        resolve_options("protocols.robust", {"ceiling": {"n_splits": 3}})
    with pytest.raises(ConfigError, match=r"protocols\.robust\.alphas is 5; it must be a mapping"):
        resolve_options("protocols.robust", {"alphas": 5})


def test_a_readers_options_are_named_as_the_config_holds_them():
    with pytest.raises(
        ConfigError, match=r"^datasets\.<name>\.options \(reader blank2014\): unknown option\(s\) \['strict'\]"
    ):
        resolve_options("$defs.blank2014_options", {"strict": False})


def test_borrowed_keys_are_accepted_with_their_own_defaults():
    resolved = resolve_options(
        "protocols.robust", {"cv_groups": "passage"}, ("datasets.*.time_series", "datasets.*.cv_groups")
    )
    assert resolved["time_series"] is False and resolved["cv_groups"] == "passage"
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['time_series'\]"):
        resolve_options("protocols.robust", {"time_series": True})


def test_the_configs_reader_options_are_accepted():
    """Every reader option the shipped config sets is a key of that reader's section."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    checked = 0
    for block in config["datasets"].values():
        if f"$defs.{block['reader']}_options" in READER_SECTIONS:
            resolved = resolve_options(f"$defs.{block['reader']}_options", block.get("options"))
            assert set(block.get("options") or {}) <= set(resolved)
            checked += 1
    assert checked >= 4
