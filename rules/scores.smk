# Stage 4: layer choice per model, then one tidy table per alignment.


rule score_model:
    input:
        layers=layer_fits,
        ceiling="results/ceiling/{protocol}/{dataset}.parquet",
    output:
        model="results/scores/{protocol}/{dataset}/{model}.tsv",
        layers="results/scores/{protocol}/{dataset}/{model}.layers.tsv",
        neuroids="results/scores/{protocol}/{dataset}/{model}.neuroids.parquet",
    log:
        "logs/score_model/{protocol}/{dataset}/{model}.log",
    benchmark:
        "benchmarks/score_model/{protocol}/{dataset}/{model}.tsv"
    conda:
        "../envs/encoding.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_min(10),
    params:
        n_layers=lookup(dpath="models/{model}/n_layers", within=config),
        layer_choice=layer_choice,
    script:
        "../workflow/scripts/score_model.py"


# Seconds of work per pair: runs where Snakemake runs, not as a cluster job.
rule compare_with_base:
    input:
        model="results/scores/{protocol}/{dataset}/{model}.neuroids.parquet",
        base=base_neuroid_scores,
    output:
        "results/pairs/{protocol}/{dataset}/{model}.tsv",
    log:
        "logs/compare_with_base/{protocol}/{dataset}/{model}.log",
    benchmark:
        "benchmarks/compare_with_base/{protocol}/{dataset}/{model}.tsv"
    localrule: True
    conda:
        "../envs/encoding.yaml"
    params:
        base=lookup(dpath="models/{model}/base", within=config),
        options=lookup(dpath="pair_tests", within=config),
    script:
        "../workflow/scripts/compare_with_base.py"


rule aggregate_scores:
    input:
        brain=model_scores(),
        brain_layers=model_layer_scores(),
        behavior=behavior_scores(),
        pairs=pair_tests(),
    output:
        brain=report(
            "results/scores/brain.tsv",
            caption="../workflow/report/brain_scores.rst",
            category="Scores",
        ),
        brain_layers="results/scores/brain_layers.tsv",
        pairs=report(
            "results/scores/brain_pairs.tsv",
            caption="../workflow/report/brain_pairs.rst",
            category="Scores",
        ),
        behavior=report(
            "results/scores/behavior.tsv",
            caption="../workflow/report/behavior_scores.rst",
            category="Scores",
        ),
    log:
        "logs/aggregate_scores/aggregate_scores.log",
    benchmark:
        "benchmarks/aggregate_scores/aggregate_scores.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_min(10),
    params:
        demo=DEMO,
    script:
        "../workflow/scripts/aggregate_scores.py"
