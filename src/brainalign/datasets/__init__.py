"""Dataset readers: each module ``brainalign.datasets.<reader>`` turns a dataset's files into
the stimuli and responses contracts of :mod:`brainalign.io` through two functions,
``prepare_stimuli(block, out_path)`` and ``prepare_responses(block, stimuli_path, out_path)``,
where ``block`` is the dataset's config block (paths relative to the working directory).
The demo readers (:data:`brainalign.config.SIMULATED_READERS`) have no response files: in place
of ``prepare_responses`` they have ``simulate_responses(block, stimuli_path, out_path,
simulation_source)``, which simulates the responses from a source model's activations or
surprisal."""

from __future__ import annotations

import importlib
from types import ModuleType

from brainalign.errors import ConfigError


def reader_module(reader: str) -> ModuleType:
    """Return the module implementing a dataset reader named in the config."""
    try:
        return importlib.import_module(f"brainalign.datasets.{reader}")
    except ModuleNotFoundError as error:
        raise ConfigError(f"unknown dataset reader {reader!r}: no module brainalign.datasets.{reader}.") from error
