"""Figures (PNG and PDF) of scores, effects and correlations."""

import _package_path  # noqa: F401

from brainalign.plots.pipeline import plot_figures
from brainalign.workflow import run_step

run_step(
    snakemake,
    plot_figures,
    brain_path=snakemake.input.brain,
    layers_path=snakemake.input.brain_layers,
    behavior_path=snakemake.input.behavior,
    effect_path=snakemake.input.effect,
    models=snakemake.params.models,
    demo=bool(snakemake.params.demo),
    figure_paths=list(snakemake.output.figures),
)
