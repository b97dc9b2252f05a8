"""Surprisal against reading times: the paper's correlation and the regression protocol."""

import _package_path  # noqa: F401

from brainalign.behavior.pipeline import fit_reading_times
from brainalign.workflow import run_step

run_step(
    snakemake,
    fit_reading_times,
    model=snakemake.wildcards.model,
    dataset=snakemake.wildcards.dataset,
    surprisal_path=snakemake.input.regression,
    paper_surprisal_path=snakemake.input.paper,
    stimuli_path=snakemake.input.stimuli,
    responses_path=snakemake.input.responses,
    options=snakemake.params.options,
    out_path=snakemake.output[0],
)
