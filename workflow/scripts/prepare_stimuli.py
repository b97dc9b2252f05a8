"""Turn a dataset's files into the stimuli table."""

import _package_path  # noqa: F401

from brainalign.datasets.pipeline import prepare_stimuli
from brainalign.workflow import run_step

run_step(snakemake, prepare_stimuli, block=snakemake.params.block, out_path=snakemake.output[0])
