"""The same analysis on the paper's published per-model scores."""

import _package_path  # noqa: F401

from brainalign.analysis.pipeline import analyze_published
from brainalign.workflow import run_step

run_step(
    snakemake,
    analyze_published,
    brain_path=snakemake.input.brain,
    behavior_path=snakemake.input.behavior,
    models_path=snakemake.input.models,
    effect_out=snakemake.output.effect,
)
