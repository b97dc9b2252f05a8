# Stage 3: noise ceilings (one per protocol: each normalises its own scores) and one
# encoding fit per dataset x model x layer x protocol.


rule compute_ceiling:
    input:
        stimuli="results/stimuli/{dataset}.parquet",
        responses="results/responses/{dataset}.parquet",
        downloads=ceiling_downloads,
    output:
        "results/ceiling/{protocol}/{dataset}.parquet",
    log:
        "logs/compute_ceiling/{protocol}/{dataset}.log",
    benchmark:
        "benchmarks/compute_ceiling/{protocol}/{dataset}.tsv"
    priority: UNLOCKS_MANY
    conda:
        "../envs/encoding.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(16000),
        runtime=ceiling_runtime,
        gpu=fit_gpus,
    params:
        options=ceiling_options,
    script:
        "../workflow/scripts/compute_ceiling.py"


# The controls-only model does not depend on the layer: one fit per dataset serves them all.
rule fit_controls:
    input:
        stimuli="results/stimuli/{dataset}.parquet",
        responses="results/responses/{dataset}.parquet",
    output:
        "results/encoding/robust/{dataset}/controls.parquet",
    log:
        "logs/fit_controls/{dataset}.log",
    benchmark:
        "benchmarks/fit_controls/{dataset}.tsv"
    priority: UNLOCKS_MANY
    conda:
        "../envs/encoding.yaml"
    threads: 1
    resources:
        gpu=fit_gpus,
        mem_mb=memory_mb(8000),
        runtime=runtime_min(60),
    params:
        options=controls_options,
    script:
        "../workflow/scripts/fit_controls.py"


rule fit_encoding:
    input:
        activations=protocol_activations,
        stimuli="results/stimuli/{dataset}.parquet",
        responses="results/responses/{dataset}.parquet",
        model="resources/models/{model}/manifest.json",
        controls=controls_fit,
    output:
        "results/encoding/{protocol}/{dataset}/{model}/layer-{layer}.parquet",
    log:
        "logs/fit_encoding/{protocol}/{dataset}/{model}/layer-{layer}.log",
    benchmark:
        "benchmarks/fit_encoding/{protocol}/{dataset}/{model}/layer-{layer}.tsv"
    conda:
        "../envs/encoding.yaml"
    threads: 1
    resources:
        gpu=fit_gpus,
        mem_mb=memory_mb(8000),
        runtime=runtime_min(60),
    params:
        options=encoding_options,
        layer="{layer}",
        block=model_runtime_block,
        extraction=protocol_extraction,
    script:
        "../workflow/scripts/fit_encoding.py"
