"""Write a rehearsal dataset's files in its real format, with simulated responses."""

import _package_path  # noqa: F401

from brainalign.rehearsal import generate_rehearsal_data
from brainalign.workflow import run_step

run_step(
    snakemake,
    generate_rehearsal_data,
    name=snakemake.params.name,
    block=snakemake.params.block,
    manifest_path=snakemake.output[0],
    source_block=snakemake.params.source_block,
    source_manifest=snakemake.input.source or None,
    extraction=snakemake.params.extraction,
)
