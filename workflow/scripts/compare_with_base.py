"""Paired permutation test of an instruction-tuned model against its base."""

import _package_path  # noqa: F401

from brainalign.encoding.pipeline import compare_with_base
from brainalign.workflow import run_step

run_step(
    snakemake,
    compare_with_base,
    protocol=snakemake.wildcards.protocol,
    dataset=snakemake.wildcards.dataset,
    model=snakemake.wildcards.model,
    base=snakemake.params.base,
    model_path=snakemake.input.model,
    base_path=snakemake.input.base,
    options=dict(snakemake.params.options),
    out_path=snakemake.output[0],
)
