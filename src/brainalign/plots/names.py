"""Names of the study's figures, known before any score exists (the workflow declares them as
outputs). Kept apart from :mod:`brainalign.plots.figures` so that planning a run does not
import the plotting stack."""

from __future__ import annotations

from collections.abc import Sequence


def figure_names(brain_protocols: Sequence[str], behavior_protocols: Sequence[str]) -> list[str]:
    """Names of the figures :func:`brainalign.plots.figures.study_figures` draws for the given protocols (no extension).

    The workflow declares these as outputs before any score exists.
    """
    names = []
    for alignment, protocols in (("brain", brain_protocols), ("behavior", behavior_protocols)):
        for protocol in sorted(protocols):
            key = f"{alignment}_{protocol}"
            names += [f"main_{key}", f"instruction_scatter_{key}", f"percent_change_{key}", f"properties_{key}"]
        if protocols:
            names.append(f"protocols_{alignment}")
    names += [f"layer_profiles_{protocol}" for protocol in sorted(brain_protocols)]
    if "robust" in brain_protocols:
        names.append("decomposition_brain_robust")
    return names
