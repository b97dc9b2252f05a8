"""Instruction-tuning effects, correlations with model properties, and the written summary."""

from pathlib import Path

import _package_path  # noqa: F401

from brainalign.analysis.pipeline import analyze
from brainalign.workflow import run_step

run_step(
    snakemake,
    analyze,
    brain_path=snakemake.input.brain,
    behavior_path=snakemake.input.behavior,
    pairs_path=snakemake.input.pairs,
    published_dir=Path(snakemake.input.published[0]).parent,
    models=snakemake.params.models,
    demo=bool(snakemake.params.demo),
    effect_out=snakemake.output.effect,
    pair_tests_out=snakemake.output.pair_tests,
    summary_out=snakemake.output.summary,
    surprisal_paths=list(snakemake.input.surprisal),
)
