"""The protocol registry: for each protocol and kind of data, the function that scores a layer
and the one that computes the noise ceiling.

Entries are ``module:function`` names imported on first use, so a job imports only its own
protocol's stack (scikit-learn for aw2024, himalaya for robust) and no protocol dispatches
to another.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from brainalign.errors import ConfigError

DATA_KINDS = ("sentences", "time_series")

LAYER_FITS = {
    ("aw2024", "sentences"): "brainalign.encoding.aw2024:fit_aw2024",
    ("aw2024", "time_series"): "brainalign.encoding.toneva:fit_toneva",
    ("robust", "sentences"): "brainalign.encoding.robust:fit_robust",
    ("robust", "time_series"): "brainalign.encoding.robust:fit_robust",
}
"""(protocol, data kind) -> the function fitting one layer: Brain-Score's shuffle-split OLS,
the Toneva & Wehbe pipeline (the paper's Wehbe2014 analysis), the leakage-free banded ridge."""

CEILINGS = {
    ("aw2024", "sentences"): "brainalign.encoding.ceiling:extrapolated_ceiling",
    ("aw2024", "time_series"): "brainalign.encoding.ceiling:extrapolated_ceiling",
    ("robust", "sentences"): "brainalign.encoding.robust_ceiling:compute_robust_ceiling",
    ("robust", "time_series"): "brainalign.encoding.robust_ceiling:compute_robust_ceiling",
}
"""(protocol, data kind) -> the noise ceiling: Brain-Score's extrapolated r of OLS (its time
series splits are the Toneva runs) and the robust protocol's held-out R^2 of grouped-CV ridge."""


def data_kind(options: Mapping[str, Any]) -> str:
    """``time_series`` for TR series (the dataset's ``time_series`` flag), else ``sentences``."""
    return "time_series" if options.get("time_series") else "sentences"


def _resolve(table: Mapping[tuple[str, str], str], protocol: str, options: Mapping[str, Any]) -> Callable:
    key = (protocol, data_kind(options))
    if key not in table:
        known = sorted({name for name, _ in table})
        raise ConfigError(f"unknown protocol {protocol!r}; use one of {known}.")
    module, function = table[key].split(":")
    return getattr(importlib.import_module(module), function)


def layer_fit(protocol: str, options: Mapping[str, Any]) -> Callable:
    """The function that scores one layer under ``protocol`` on this kind of data."""
    return _resolve(LAYER_FITS, protocol, options)


def ceiling(protocol: str, options: Mapping[str, Any]) -> Callable:
    """The function that computes the noise ceiling under ``protocol`` on this kind of data."""
    return _resolve(CEILINGS, protocol, options)
