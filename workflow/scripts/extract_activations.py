"""Every unit's state at every layer, one Parquet file per readout, from one model load."""

import _package_path  # noqa: F401

from brainalign.models.extraction import extract_activations
from brainalign.workflow import run_step

run_step(
    snakemake,
    extract_activations,
    stimuli_path=snakemake.input.stimuli,
    manifest_path=snakemake.input.model,
    block=snakemake.params.block,
    options=snakemake.params.options,
    out_path=dict(zip(snakemake.params.readouts, snakemake.output)),
)
