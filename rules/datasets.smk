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
        block=lookup(dpath="datasets/{dataset}", within=config),
    script:
        "../workflow/scripts/download_dataset.py"


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
        block=lookup(dpath="datasets/{dataset}", within=config),
    script:
        "../workflow/scripts/prepare_stimuli.py"


rule prepare_responses:
    input:
        files=dataset_files,
        stimuli="results/stimuli/{dataset}.parquet",
        simulation_source=simulation_source,
    output:
        "results/responses/{dataset}.parquet",
    log:
        "logs/prepare_responses/{dataset}.log",
    benchmark:
        "benchmarks/prepare_responses/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=memory_mb(8000),
        runtime=runtime_min(60),
    params:
        block=lookup(dpath="datasets/{dataset}", within=config),
    script:
        "../workflow/scripts/prepare_responses.py"
