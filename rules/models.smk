# Stage 2: models -> per-layer activations and per-word surprisal (GPU rules).


rule fetch_model:
    localrule: True
    output:
        "resources/models/{model}/manifest.json",
    params:
        name="{model}",
        block=model_runtime_block,
    log:
        "logs/fetch_model/{model}.log",
    conda:
        "../envs/extraction.yaml"
    script:
        "../workflow/scripts/fetch_model.py"


rule extract_activations:
    input:
        stimuli="results/stimuli/{dataset}.parquet",
        model="resources/models/{model}/manifest.json",
    output:
        "results/activations/{dataset}/{model}.parquet",
    params:
        block=model_runtime_block,
        options=lookup(dpath="extraction", within=config),
    log:
        "logs/extract_activations/{dataset}/{model}.log",
    benchmark:
        "benchmarks/extract_activations/{dataset}/{model}.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=memory_mb(16000),
        runtime=runtime_min(120),
    conda:
        "../envs/extraction.yaml"
    script:
        "../workflow/scripts/extract_activations.py"


rule compute_surprisal:
    input:
        stimuli="results/stimuli/{dataset}.parquet",
        model="resources/models/{model}/manifest.json",
    output:
        "results/surprisal/{dataset}/{model}.parquet",
    params:
        block=model_runtime_block,
        options=lookup(dpath="extraction", within=config),
    log:
        "logs/compute_surprisal/{dataset}/{model}.log",
    benchmark:
        "benchmarks/compute_surprisal/{dataset}/{model}.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=memory_mb(16000),
        runtime=runtime_min(60),
    conda:
        "../envs/extraction.yaml"
    script:
        "../workflow/scripts/compute_surprisal.py"
