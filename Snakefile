# brainalign: brain and behavioral alignment of vanilla and instruction-tuned language models.
# Quick start: `make demo` (offline demo suite) or `snakemake --cores all --sdm conda`.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/datasets.smk"
include: "rules/models.smk"
include: "rules/simulation.smk"
include: "rules/encoding.smk"
include: "rules/behavior.smk"
include: "rules/scores.smk"
include: "rules/analysis.smk"


rule all:
    default_target: True
    input:
        all_targets(),
    localrule: True
