# Stage 5: instruction-tuning effects, correlations with model properties, figures, summary.


rule analyze:
    input:
        brain="results/scores/brain.tsv",
        behavior="results/scores/behavior.tsv",
        pairs="results/scores/brain_pairs.tsv",
        published=multiext(f"{PUBLISHED}/", "brain.tsv", "behavior.tsv"),
        surprisal=next_word_surprisal(),
    output:
        effect=report(
            "results/analysis/instruction_effect.tsv",
            caption="../workflow/report/instruction_effect.rst",
            category="Analysis",
        ),
        pairs="results/analysis/instruction_pairs.tsv",
        pair_tests="results/analysis/instruction_pair_tests.tsv",
        correlations=report(
            "results/analysis/correlations.tsv",
            caption="../workflow/report/correlations.rst",
            category="Analysis",
        ),
        partial="results/analysis/partial_correlations.tsv",
        family="results/analysis/family_correlations.tsv",
        published="results/analysis/comparison_with_published.tsv",
        summary=report(
            "results/summary.md",
            caption="../workflow/report/summary.rst",
            category="Summary",
        ),
    log:
        "logs/analyze/analyze.log",
    benchmark:
        "benchmarks/analyze/analyze.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=memory_mb(4000),
        runtime=runtime_min(30),
    params:
        models=suite_model_blocks(),
        demo=DEMO,
    script:
        "../workflow/scripts/analyze.py"


rule analyze_published:
    input:
        brain=f"{PUBLISHED}/brain.tsv",
        behavior=f"{PUBLISHED}/behavior.tsv",
        models=f"{PUBLISHED}/models.yaml",
    output:
        effect=report(
            "results/analysis/published/instruction_effect.tsv",
            caption="../workflow/report/published.rst",
            category="Published numbers (Aw et al. 2024)",
        ),
        pairs="results/analysis/published/instruction_pairs.tsv",
        correlations="results/analysis/published/correlations.tsv",
        partial="results/analysis/published/partial_correlations.tsv",
        family="results/analysis/published/family_correlations.tsv",
        published="results/analysis/published/comparison_with_published.tsv",
    log:
        "logs/analyze_published/analyze_published.log",
    benchmark:
        "benchmarks/analyze_published/analyze_published.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_min(10),
    script:
        "../workflow/scripts/analyze_published.py"


rule plot_figures:
    input:
        brain="results/scores/brain.tsv",
        brain_layers="results/scores/brain_layers.tsv",
        behavior="results/scores/behavior.tsv",
        effect="results/analysis/instruction_effect.tsv",
        pairs="results/analysis/instruction_pairs.tsv",
        correlations="results/analysis/correlations.tsv",
    output:
        figures=report(
            expand("results/figures/{figure}.png", figure=FIGURES),
            caption="../workflow/report/figures.rst",
            category="Figures",
        ),
        pdfs=expand("results/figures/{figure}.pdf", figure=FIGURES),
    log:
        "logs/plot_figures/plot_figures.log",
    benchmark:
        "benchmarks/plot_figures/plot_figures.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=memory_mb(4000),
        runtime=runtime_min(30),
    params:
        models=suite_model_blocks(),
        demo=DEMO,
    script:
        "../workflow/scripts/plot_figures.py"


# Brain-Score's pinned integration scores, where the suite has their models and datasets.
rule check_brainscore:
    input:
        brainscore_check_files,
    output:
        "results/brainscore_check.tsv",
    log:
        "logs/check_brainscore/check_brainscore.log",
    benchmark:
        "benchmarks/check_brainscore/check_brainscore.tsv"
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        checks=BRAINSCORE_CHECKS,
    script:
        "../workflow/scripts/check_brainscore.py"
