"""Our aw2024 scores against the values Brain-Score language pins in its integration tests."""

import _package_path  # noqa: F401

from brainalign.analysis.brainscore_check import check_brainscore
from brainalign.workflow import run_step

run_step(
    snakemake,
    check_brainscore,
    checks=snakemake.params.checks,
    out_path=snakemake.output[0],
)
