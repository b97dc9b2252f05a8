"""Configuration: schema validation with defaults, suites, and per-model/per-dataset blocks.

The schema (package data ``brainalign/schemas/config.schema.yaml``, linked from the workflow's
``workflow/schemas/``) is the single description of every key.
Validation fills defaults in place, so the workflow and the CLI see the same values, and
reports each error with the key's path and the allowed values.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from brainalign.errors import ConfigError
from brainalign.options import load_schema


def _extend_with_defaults(validator_class: type) -> type:
    """Return a validator class that fills ``default`` values of absent properties."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_defaults(jsonschema.Draft202012Validator)

SIMULATED_READERS = ("demo_fmri", "demo_reading_times")
"""Readers whose responses are simulated from a source model's activations or surprisal
(rule ``simulate_responses``, after extraction); every other reader's responses are read
from its files (rule ``prepare_responses``)."""


def _describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        hints = []
        for key in unexpected:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{path}: unknown key {', '.join(hints)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        return (
            f"{path}: {error.instance!r} is not allowed; allowed values: {', '.join(map(repr, error.validator_value))}"
        )
    if error.validator == "type":
        return f"{path}: {error.instance!r} has the wrong type; expected {error.validator_value}"
    return f"{path}: {error.message}"


def validate_config(config: dict[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``config`` in place against the schema, fill defaults, check cross-references.

    Raises
    ------
    ConfigError
        Listing every problem with its key path and the allowed values.
    """
    schema = load_schema() if schema is None else schema
    errors = sorted(_DefaultFillingValidator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = [_describe(e) for e in errors]
    if not problems:
        problems = _cross_reference_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def _cross_reference_problems(config: Mapping[str, Any]) -> list[str]:
    problems = []
    suite = config["suite"]
    if suite not in config["suites"]:
        problems.append(f"suite: {suite!r} is not defined; defined suites: {', '.join(config['suites'])}")
    for name, spec in config["suites"].items():
        for kind in ("datasets", "models"):
            for item in spec[kind]:
                if item not in config[kind]:
                    close = difflib.get_close_matches(item, list(config[kind]), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    problems.append(f"suites.{name}.{kind}: {item!r} is not defined under {kind}{hint}")
    for name, block in config["models"].items():
        base = block.get("base")
        if base is not None and base not in config["models"]:
            problems.append(f"models.{name}.base: {base!r} is not a defined model")
        if base is not None and not block.get("instruction_tuned"):
            problems.append(
                f"models.{name}.base: only instruction-tuned models have a base (set instruction_tuned: true)"
            )
    for name, block in config["datasets"].items():
        simulation = block.get("simulation") or {}
        source = simulation.get("source_model")
        if block["reader"] in SIMULATED_READERS and source not in config["models"]:
            problems.append(f"datasets.{name}.simulation.source_model: {source!r} is not a defined model")
        rehearsal = block.get("rehearsal") or {}
        if rehearsal and rehearsal["layout"] != block["reader"]:
            problems.append(
                f"datasets.{name}.rehearsal.layout: {rehearsal['layout']!r} differs from its reader {block['reader']!r}"
            )
        planted = rehearsal.get("variant") == "planted"
        if planted and rehearsal.get("source_model") not in config["models"]:
            problems.append(
                f"datasets.{name}.rehearsal.source_model: {rehearsal.get('source_model')!r} is not a defined model"
            )
    return problems


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read, override (top-level keys) and validate a config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist.")
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    config.update(overrides or {})
    return validate_config(config)


def _suite(config: Mapping[str, Any], suite: str | None) -> dict[str, Any]:
    name = suite or config["suite"]
    if name not in config["suites"]:
        raise ConfigError(f"suite {name!r} is not defined; defined suites: {sorted(config['suites'])}")
    return config["suites"][name]


def active_suite(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the selected suite's block."""
    return _suite(config, None)


def suite_models(config: Mapping[str, Any], suite: str | None = None) -> dict[str, dict[str, Any]]:
    """Return the model blocks of a suite (the selected one by default), by name."""
    return {name: config["models"][name] for name in _suite(config, suite)["models"]}


def suite_datasets(config: Mapping[str, Any], suite: str | None = None) -> dict[str, dict[str, Any]]:
    """Return the dataset blocks of a suite (the selected one by default), by name."""
    return {name: config["datasets"][name] for name in _suite(config, suite)["datasets"]}
