"""Options of one config section: the schema's defaults under the caller's values, unknown keys refused.

The packaged schema (``brainalign/schemas/config.schema.yaml``) is the one home of every
option's default and description. A library function that takes a config section (a
protocol's settings, the extraction settings, a reader's options) resolves it here, so it
fills the same defaults as config validation does and refuses a misspelt key outside the
workflow too (CLI, notebooks). A section is named by its dotted path in the config
(``protocols.robust``, ``protocols.aw2024.toneva``); ``*`` stands for any name of a keyed
collection (``datasets.*.time_series``) and ``$defs.<name>`` for a schema definition that
no config key holds (the readers' options, keys the workflow sets per job).

This module imports only the standard library and PyYAML, so a fit job that resolves its
options loads nothing heavier (config validation, in :mod:`brainalign.config`, needs jsonschema).
"""

from __future__ import annotations

import copy
import difflib
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from brainalign.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
"""Package data (``workflow/schemas/config.schema.yaml`` in a checkout links to it)."""


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Return the config JSON schema read from ``path`` (a fresh copy on every call)."""
    import yaml  # the caller that reads the schema pays for the parser, not every importer

    with open(path) as handle:
        return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def _packaged_schema() -> dict[str, Any]:
    # Read once per process; callers get deep copies of what they take from it.
    return load_schema()


def section_schema(path: str) -> dict[str, Any]:
    """Return the schema of the config section or key at the dotted ``path``.

    Raises
    ------
    KeyError
        When the schema has no such section (a programming error, not a user's).
    """
    node = _packaged_schema()
    parts = path.split(".")
    while parts:
        part = parts.pop(0)
        if part == "$defs":
            node = node["$defs"][parts.pop(0)]
        elif part == "*":
            node = node["additionalProperties"]
        else:
            node = node["properties"][part]
    return node


def schema_default(path: str) -> Any:
    """Return (a copy of) the schema's default of the key at the dotted ``path``."""
    return copy.deepcopy(section_schema(path)["default"])


def resolve_options(path: str, given: Mapping[str, Any] | None, borrowed: Sequence[str] = ()) -> dict[str, Any]:
    """Return the section's defaults with ``given`` over them; refuse keys the section does not have.

    Parameters
    ----------
    path : str
        Dotted path of the section in the config (see the module docstring).
    given : mapping or None
        The caller's values; None is an empty section.
    borrowed : sequence of str
        Keys of other sections that the caller takes with this one, as dotted paths (a
        protocol's fit reads the dataset's ``datasets.*.time_series``); each is accepted under
        its last name and filled with its own default.

    Returns
    -------
    dict
        Every key of the section that has a default, and every given key; a nested section
        (an object with its own keys, such as ``protocols.robust.alphas``) is resolved the same way.

    Raises
    ------
    ConfigError
        Naming the section, the unknown keys (with the closest accepted one) and the accepted keys.
    """
    schema = section_schema(path)
    keys = {**schema.get("properties", {}), **{name.rsplit(".", 1)[-1]: section_schema(name) for name in borrowed}}
    given = dict(given or {})
    _refuse_unknown(schema.get("title", path), given, sorted(keys))
    resolved = {name: copy.deepcopy(spec["default"]) for name, spec in keys.items() if "default" in spec}
    resolved.update(given)
    for name, spec in schema.get("properties", {}).items():
        if "properties" in spec:
            resolved[name] = _nested(f"{path}.{name}", resolved.get(name))
    return resolved


def _nested(path: str, value: Any) -> dict[str, Any]:
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{path} is {value!r}; it must be a mapping of its options (or absent for the defaults).")
    return resolve_options(path, value)


def _refuse_unknown(section: str, given: Mapping[str, Any], accepted: list[str]) -> None:
    unknown = sorted(set(given) - set(accepted))
    if not unknown:
        return
    closest_keys = {key: difflib.get_close_matches(str(key), accepted, n=1) for key in unknown}
    hints = [f"{key!r} -> {close[0]!r}" for key, close in closest_keys.items() if close]
    closest = f" (closest accepted: {', '.join(hints)})" if hints else ""
    raise ConfigError(
        f"{section}: unknown option(s) {unknown}{closest}; accepted: {accepted}. Fix the key in config.yaml."
    )
