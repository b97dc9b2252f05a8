"""Choose the layer (by the layer rule under aw2024, nested under robust) and normalise by the ceiling."""

import _package_path  # noqa: F401

from brainalign.encoding.pipeline import score_model
from brainalign.workflow import run_step

run_step(
    snakemake,
    score_model,
    protocol=snakemake.wildcards.protocol,
    model=snakemake.wildcards.model,
    dataset=snakemake.wildcards.dataset,
    layer_paths=list(snakemake.input.layers),
    ceiling_path=snakemake.input.ceiling,
    n_layers=int(snakemake.params.n_layers),
    model_out=snakemake.output.model,
    layers_out=snakemake.output.layers,
    neuroids_out=snakemake.output.neuroids,
    **snakemake.params.layer_choice,
)
