"""The dataset's noise ceiling under one protocol, computed once and cached."""

import _package_path  # noqa: F401

from brainalign.encoding.pipeline import compute_ceiling
from brainalign.workflow import run_step

run_step(
    snakemake,
    compute_ceiling,
    protocol=snakemake.wildcards.protocol,
    stimuli_path=snakemake.input.stimuli,
    responses_path=snakemake.input.responses,
    options=snakemake.params.options,
    out_path=snakemake.output[0],
)
