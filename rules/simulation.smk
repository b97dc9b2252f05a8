# Stage 2b: the demo datasets' responses, simulated from a source model's activations or
# surprisal (stage 2's outputs), so the answer the measurements must find is known.


rule simulate_responses:
    input:
        stimuli="results/stimuli/{dataset}.parquet",
        source=simulation_source,
    output:
        "results/responses/{dataset}.parquet",
    log:
        "logs/simulate_responses/{dataset}.log",
    benchmark:
        "benchmarks/simulate_responses/{dataset}.tsv"
    wildcard_constraints:
        dataset=_alternatives(SIMULATED_DATASETS),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=memory_mb(8000),
        runtime=runtime_min(60),
    params:
        block=dataset_block,
    script:
        "../workflow/scripts/simulate_responses.py"
