# Stage 1: raw dataset files -> stimuli table and response matrix.


rule download_dataset:
    output:
        "resources/downloads/{dataset}/manifest.json",
    log:
        "logs/download_dataset/{dataset}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        name="{dataset}",
        block=dataset_block,
    script:
        "../workflow/scripts/download_dataset.py"


# A rehearsal dataset's files in the real reader's format, simulated from the source model's
# features (extracted in-process with the workflow's extraction settings) or from controls only.
rule generate_rehearsal_data:
    input:
        source=rehearsal_source,
    output:
        "resources/rehearsal/{dataset}/manifest.json",
    log:
        "logs/generate_rehearsal_data/{dataset}.log",
    benchmark:
        "benchmarks/generate_rehearsal_data/{dataset}.tsv"
    priority: UNLOCKS_MANY
    conda:
        "../envs/rehearsal.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(8000),
        runtime=runtime_min(60),
    params:
        name="{dataset}",
        block=dataset_block,
        source_block=rehearsal_source_block,
        extraction=extraction_options,
    script:
        "../workflow/scripts/generate_rehearsal_data.py"


rule prepare_stimuli:
    input:
        dataset_files,
    output:
        "results/stimuli/{dataset}.parquet",
    log:
        "logs/prepare_stimuli/{dataset}.log",
    benchmark:
        "benchmarks/prepare_stimuli/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=memory_mb(4000),
        runtime=runtime_min(30),
    params:
        block=dataset_block,
    script:
        "../workflow/scripts/prepare_stimuli.py"


# The responses of the readers of response files (real and rehearsal data); the demo readers'
# responses are simulated after extraction (rules/simulation.smk).
rule prepare_responses:
    input:
        files=dataset_files,
        stimuli="results/stimuli/{dataset}.parquet",
    output:
        "results/responses/{dataset}.parquet",
    log:
        "logs/prepare_responses/{dataset}.log",
    benchmark:
        "benchmarks/prepare_responses/{dataset}.tsv"
    wildcard_constraints:
        dataset=_alternatives(READ_DATASETS),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=memory_mb(8000),
        runtime=runtime_min(60),
    params:
        block=dataset_block,
    script:
        "../workflow/scripts/prepare_responses.py"
