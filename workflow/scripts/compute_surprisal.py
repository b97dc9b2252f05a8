"""Per-word surprisal in bits, one Parquet file per readout, from one model load."""

import _package_path  # noqa: F401

from brainalign.models.surprisal import compute_surprisal
from brainalign.workflow import run_step

run_step(
    snakemake,
    compute_surprisal,
    stimuli_path=snakemake.input.stimuli,
    manifest_path=snakemake.input.model,
    block=snakemake.params.block,
    options=snakemake.params.options,
    out_path=dict(zip(snakemake.params.readouts, snakemake.output)),
)
