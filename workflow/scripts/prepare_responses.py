"""Turn a dataset's files into the response matrix."""

import _package_path  # noqa: F401

from brainalign.datasets.pipeline import prepare_responses
from brainalign.workflow import run_step

run_step(
    snakemake,
    prepare_responses,
    block=snakemake.params.block,
    stimuli_path=snakemake.input.stimuli,
    out_path=snakemake.output[0],
)
