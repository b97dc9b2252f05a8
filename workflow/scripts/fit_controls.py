"""The robust protocol's controls-only model of a dataset, fit once for every layer."""

import _package_path  # noqa: F401

from brainalign.encoding.pipeline import fit_controls
from brainalign.workflow import run_step

run_step(
    snakemake,
    fit_controls,
    stimuli_path=snakemake.input.stimuli,
    responses_path=snakemake.input.responses,
    options=snakemake.params.options,
    out_path=snakemake.output[0],
)
