"""Every unit's last-token state at every layer, streamed to Parquet."""

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
    out_path=snakemake.output[0],
)
