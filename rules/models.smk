# Stage 2: models -> per-layer activations and per-word surprisal (GPU rules).


rule fetch_model:
    output:
        "resources/models/{model}/manifest.json",
    log:
        "logs/fetch_model/{model}.log",
    localrule: True
    conda:
        "../envs/extraction.yaml"
    params:
        name="{model}",
        block=model_runtime_block,
    script:
        "../workflow/scripts/fetch_model.py"


rule extract_activations:
    input:
        stimuli="results/stimuli/{dataset}.parquet",
        model="resources/models/{model}/manifest.json",
    output:
        expand(
            "results/activations/{{dataset}}/{{model}}.{readout}.parquet",
            readout=ACTIVATION_READOUTS,
        ),
    log:
        "logs/extract_activations/{dataset}/{model}.log",
    benchmark:
        "benchmarks/extract_activations/{dataset}/{model}.tsv"
    priority: UNLOCKS_MANY
    conda:
        "../envs/extraction.yaml"
    threads: 1
    resources:
        gpu=model_gpus,
        mem_mb=memory_mb(16000),
        runtime=runtime_min(120),
    params:
        block=model_runtime_block,
        options=extraction_options,
        readouts=ACTIVATION_READOUTS,
    script:
        "../workflow/scripts/extract_activations.py"


rule compute_surprisal:
    input:
        stimuli="results/stimuli/{dataset}.parquet",
        model="resources/models/{model}/manifest.json",
    output:
        expand(
            "results/surprisal/{{dataset}}/{{model}}.{readout}.parquet",
            readout=SURPRISAL_READOUTS,
        ),
    log:
        "logs/compute_surprisal/{dataset}/{model}.log",
    benchmark:
        "benchmarks/compute_surprisal/{dataset}/{model}.tsv"
    priority: UNLOCKS_MANY
    conda:
        "../envs/extraction.yaml"
    threads: 1
    resources:
        gpu=model_gpus,
        mem_mb=memory_mb(16000),
        runtime=runtime_min(60),
    params:
        block=model_runtime_block,
        options=extraction_options,
        readouts=SURPRISAL_READOUTS,
    script:
        "../workflow/scripts/compute_surprisal.py"
