"""Simulate a demo dataset's responses from its source model's activations or surprisal."""

import _package_path  # noqa: F401

from brainalign.datasets.pipeline import simulate_responses
from brainalign.workflow import run_step

run_step(
    snakemake,
    simulate_responses,
    block=snakemake.params.block,
    stimuli_path=snakemake.input.stimuli,
    out_path=snakemake.output[0],
    simulation_source=snakemake.input.source,
)
