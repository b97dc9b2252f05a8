# Stage 3b: surprisal against reading times, per dataset x model.


rule fit_reading_times:
    input:
        unpack(behavior_surprisal),
        stimuli="results/stimuli/{dataset}.parquet",
        responses="results/responses/{dataset}.parquet",
    output:
        "results/behavior/{dataset}/{model}.tsv",
    log:
        "logs/fit_reading_times/{dataset}/{model}.log",
    benchmark:
        "benchmarks/fit_reading_times/{dataset}/{model}.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(8000),
        runtime=runtime_min(60),
    params:
        options=lookup(dpath="behavior", within=config),
    script:
        "../workflow/scripts/fit_reading_times.py"
