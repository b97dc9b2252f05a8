"""Materialise a model's weights locally so compute jobs load them offline."""

import _package_path  # noqa: F401

from brainalign.models.fetch import fetch_model
from brainalign.workflow import run_step

run_step(
    snakemake,
    fetch_model,
    name=snakemake.params.name,
    block=snakemake.params.block,
    manifest_path=snakemake.output[0],
)
