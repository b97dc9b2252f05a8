"""Fetch a dataset's pinned downloads (or check the user's files) and record a manifest."""

import _package_path  # noqa: F401

from brainalign.datasets.pipeline import download_dataset
from brainalign.workflow import run_step

run_step(
    snakemake,
    download_dataset,
    name=snakemake.params.name,
    block=snakemake.params.block,
    manifest_path=snakemake.output[0],
)
