"""One encoding fit: one layer of one model on one dataset under one protocol."""

import _package_path  # noqa: F401

from brainalign.encoding.pipeline import fit_encoding
from brainalign.workflow import run_step

run_step(
    snakemake,
    fit_encoding,
    protocol=snakemake.wildcards.protocol,
    model=snakemake.wildcards.model,
    activations_path=snakemake.input.activations,
    layer=int(snakemake.params.layer),
    stimuli_path=snakemake.input.stimuli,
    responses_path=snakemake.input.responses,
    model_block=snakemake.params.block,
    extraction_options=snakemake.params.extraction,
    manifest_path=snakemake.input.model,
    options=snakemake.params.options,
    out_path=snakemake.output[0],
    controls_path=snakemake.input.controls or None,  # empty under aw2024
)
