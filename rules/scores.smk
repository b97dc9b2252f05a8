# Stage 4: layer choice per model, then one tidy table per alignment.


rule score_model:
    input:
        layers=layer_fits,
        ceiling="results/ceiling/{dataset}.parquet",
    output:
        model="results/scores/{protocol}/{dataset}/{model}.tsv",
        layers="results/scores/{protocol}/{dataset}/{model}.layers.tsv",
    log:
        "logs/score_model/{protocol}/{dataset}/{model}.log",
    conda:
        "../envs/encoding.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_min(10),
    params:
        n_layers=lookup(dpath="models/{model}/n_layers", within=config),
    script:
        "../workflow/scripts/score_model.py"


rule aggregate_scores:
    input:
        brain=model_scores(),
        brain_layers=model_layer_scores(),
        behavior=behavior_scores(),
    output:
        brain=report(
            "results/scores/brain.tsv",
            caption="../workflow/report/brain_scores.rst",
            category="Scores",
        ),
        brain_layers="results/scores/brain_layers.tsv",
        behavior=report(
            "results/scores/behavior.tsv",
            caption="../workflow/report/behavior_scores.rst",
            category="Scores",
        ),
    log:
        "logs/aggregate_scores/aggregate_scores.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_min(10),
    params:
        demo=DEMO,
    script:
        "../workflow/scripts/aggregate_scores.py"
