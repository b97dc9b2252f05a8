"""Concatenate per-model scores and pair tests into the tidy tables."""

import _package_path  # noqa: F401

from brainalign.analysis.pipeline import aggregate_scores
from brainalign.workflow import run_step

run_step(
    snakemake,
    aggregate_scores,
    brain_paths=list(snakemake.input.brain),
    layer_paths=list(snakemake.input.brain_layers),
    behavior_paths=list(snakemake.input.behavior),
    pair_paths=list(snakemake.input.pairs),
    demo=bool(snakemake.params.demo),
    brain_out=snakemake.output.brain,
    layers_out=snakemake.output.brain_layers,
    behavior_out=snakemake.output.behavior,
    pairs_out=snakemake.output.pairs,
)
