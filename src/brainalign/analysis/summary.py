"""``results/summary.md``: the study's findings in words, each with its number, CI and p-value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainalign.analysis.correlations import SIZE
from brainalign.analysis.instruction import ALL_FAMILIES
from brainalign.analysis.tables import AVERAGE
from brainalign.io import read_tsv, write_text
from brainalign.stats import ALPHA

DEMO_BANNER = (
    "> **DEMO DATA (simulated)**: these numbers come from the demo suite's simulated data and say nothing "
    "about real brains or models."
)


def _number(value: float, digits: int = 3) -> str:
    return "NA" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def _signed(value: float, digits: int = 2) -> str:
    return "NA" if not np.isfinite(value) else f"{value:+.{digits}f}"


def reach_clause(row: pd.Series, n_units: int, units: str) -> str:
    """``; 5 subject blocks: sign flips cannot give p < 0.0625`` where the row's test cannot reach
    alpha (``can_reach_alpha`` false), else ""."""
    if str(row.get("can_reach_alpha")).lower() != "false":
        return ""
    return f"; {n_units} {units}: sign flips cannot give p < {_number(row['p_min'])}"


def effect_sentence(row: pd.Series) -> str:
    """One dataset's instruction-tuning effect over bases, e.g. ``+6.07% (95% CI +2.88 to +9.64%; ...)``."""
    if isinstance(row.get("pct_note"), str) and row["pct_note"]:
        percent = f"percent change {row['pct_note']}"
    else:
        percent = (
            f"{_signed(row['pct_change'])}% (95% CI {_signed(row['ci_low'])} to {_signed(row['ci_high'])}%; "
            f"the paper's mean of per-pair percent changes: {_signed(row['pct_change_paper'])}%)"
        )
    return (
        f"{percent}; mean change over bases {_signed(row['mean_change'], 4)} "
        f"(95% CI {_signed(row['change_ci_low'], 4)} to {_signed(row['change_ci_high'], 4)}), "
        f"sign flips over {int(row['n_bases'])} bases p = {_number(row['p_value'])}, FDR p = {_number(row['p_fdr'])}"
        f"{reach_clause(row, int(row['n_bases']), 'bases')}; {int(row['n_improved'])}/{int(row['n_pairs'])} pairs "
        f"improve"
    )


def correlation_sentence(row: pd.Series) -> str:
    """One correlation, e.g. ``r = 0.81 (95% CI 0.56 to 0.94), p = 8.9e-05, FDR p = ...``."""
    return (
        f"r = {_number(row['pearson_r'])} (95% CI {_number(row['ci_low'])} to {_number(row['ci_high'])}), "
        f"p = {_number(row['p_value'])}, FDR p = {_number(row['p_fdr'])}, Spearman rho = {_number(row['spearman_r'])}, "
        f"n = {int(row['n'])} {row['models'].replace('_', '-')} models"
    )


def _effect_lines(effect: pd.DataFrame) -> list[str]:
    rows = effect[effect["family"] == ALL_FAMILIES]
    if rows.empty:
        return ["- no instruction-tuned/base pairs in this suite"]
    ordered = sorted(rows["dataset"], key=lambda d: (d != AVERAGE, d))
    rows = rows.set_index("dataset").loc[ordered]
    lines = [f"- {'mean over datasets' if d == AVERAGE else d}: {effect_sentence(r)}" for d, r in rows.iterrows()]
    families = effect[(effect["family"] != ALL_FAMILIES) & (effect["dataset"] == ordered[0])]
    lines += [f"  - {r['family']} family ({ordered[0]}): {effect_sentence(r)}" for _, r in families.iterrows()]
    return lines


def _family_lines(family: pd.DataFrame, dataset: str) -> list[str]:
    """MMLU and size against alignment adjusted for family, and the range with one family left out."""
    rows = family[(family["dataset"] == dataset) & (family["models"] == "instruction_tuned")]
    lines = []
    for prop, label in (("mmlu", "MMLU"), (SIZE, "log10 parameters")):
        adjusted = rows[(rows["property"] == prop) & (rows["method"] == "family_adjusted")]
        if adjusted.empty:
            continue
        row = adjusted.iloc[0]
        left_out = rows[(rows["property"] == prop) & (rows["method"] == "leave_family_out")]["pearson_r"]
        spread = f"; r {_number(left_out.min())} to {_number(left_out.max())} with one family left out"
        spread = spread if len(left_out) else ""
        lines.append(
            f"- {label} adjusted for {row['covariates'].replace(SIZE, 'log10 parameters')}: partial r = "
            f"{_number(row['pearson_r'])}, p = {_number(row['p_value'])} (n = {int(row['n'])} models in "
            f"{int(row['n_families'])} families){spread}"
        )
    return lines


def _correlation_lines(correlations: pd.DataFrame, partial: pd.DataFrame, dataset: str) -> list[str]:
    rows = correlations[correlations["dataset"] == dataset]
    has_category = rows["property"].eq("bbh_world_knowledge").any()
    wanted = [
        ("mmlu", "instruction_tuned", "MMLU"),
        ("bbh_world_knowledge", "instruction_tuned", "BBH world knowledge")
        if has_category
        else ("bbh", "instruction_tuned", "BBH overall (world-knowledge category not available)"),
        (SIZE, "instruction_tuned", "log10 parameters"),
        (SIZE, "all", "log10 parameters"),
    ]
    lines = []
    for prop, models, label in wanted:
        match = rows[(rows["property"] == prop) & (rows["models"] == models)]
        if not match.empty:
            lines.append(f"- {label}: {correlation_sentence(match.iloc[0])}")
    controlled = partial[(partial["dataset"] == dataset) & (partial["property"] == "mmlu")]
    if not controlled.empty:
        row = controlled.iloc[0]
        lines.append(
            f"- MMLU controlling for log10 parameters: partial r = {_number(row['partial_r'])}, "
            f"p = {_number(row['p_value'])} (n = {int(row['n'])})"
        )
    return lines or ["- no model properties available for these models"]


def pair_test_sentence(row: pd.Series) -> str:
    """One paired test, e.g. ``flan-t5-xl vs t5-xl: mean score difference +0.0123, p = 0.002, FDR p = 0.01 ...``."""
    return (
        f"{row['model']} vs {row['base']}: mean score difference {_signed(row['mean_difference'], 4)} "
        f"(median score {_number(row['score_model'])} vs {_number(row['score_base'])}), p = {_number(row['p_value'])}, "
        f"FDR p = {_number(row['p_fdr'])}; {int(row['n_neuroids'])} neuroids in {int(row['n_groups'])} "
        f"{row['group_by']} blocks"
        f"{reach_clause(row, int(row['n_groups']), str(row['group_by']) + ' blocks')}"
    )


def _pair_test_lines(pair_tests: pd.DataFrame) -> list[str]:
    lines = [
        "Each instruction-tuned model against its base (per-neuroid score: r under aw2024, held-out R^2 gain "
        "over the controls under robust; paired; sign flips over blocks):",
        "",
    ]
    if pair_tests.empty:
        return [*lines, "- no instruction-tuned/base pairs in this suite", ""]
    significant = int((pair_tests["p_fdr"] < ALPHA).sum())
    unreachable = int((pair_tests["can_reach_alpha"].astype(str).str.lower() == "false").sum())
    lines.append(
        f"- {significant}/{len(pair_tests)} (pair, dataset) tests at FDR p < {ALPHA}; "
        f"{unreachable} of them cannot reach p < {ALPHA} with so few blocks, whatever the data"
    )
    for dataset, rows in pair_tests.groupby("dataset", sort=True):
        lines += [f"  - {dataset}: {pair_test_sentence(row)}" for _, row in rows.sort_values("model").iterrows()]
    return [*lines, ""]


HOW_MADE = {
    "activation_readout": "readout",
    "activation_hooked_modules": "hooked modules",
    "activation_context_policy": "context",
    "activation_truncation": "truncation",
    "activation_compute_dtype": "compute dtype",
    "activation_prompt_policy": "prompt policy",
    "layer_choice": "layer rule",
    "split_order": "split order",
    "fit_precision": "fit precision",
    "surprisal_readout": "surprisal readout",
    "surprisal_context_policy": "surprisal context",
}
"""Score-table columns that say how a protocol's scores were made, and their names in the summary."""


def how_made_line(scores: pd.DataFrame) -> str:
    """One sentence listing the recorded settings of a protocol's scores (every distinct value)."""
    parts = []
    for column, label in HOW_MADE.items():
        if column in scores:
            values = sorted({str(value) for value in scores[column].dropna() if str(value) not in ("", "NA", "nan")})
            if values:
                parts.append(f"{label}: {' | '.join(values)}")
    return f"How these scores were made: {'; '.join(parts)}." if parts else "How these scores were made: not recorded."


def write_summary(
    analysis_dir: str | Path,
    brain: pd.DataFrame,
    behavior: pd.DataFrame,
    out_path: str | Path,
    demo: bool,
    pair_tests: pd.DataFrame | None = None,
) -> None:
    """Write the markdown summary of the analysis tables in ``analysis_dir``.

    Parameters
    ----------
    analysis_dir : path
        Folder written by :func:`brainalign.analysis.run.compute_study_statistics`.
    brain, behavior : DataFrame
        The score tables the analysis used (for the counts of models and datasets).
    out_path : path
        Markdown file to write (atomically).
    demo : bool
        Label the summary as simulated demo data.
    pair_tests : DataFrame, optional
        Per-pair paired tests with ``p_fdr`` (brain alignment); None leaves them out.
    """
    analysis_dir = Path(analysis_dir)
    effect = read_tsv(analysis_dir / "instruction_effect.tsv")
    correlations = read_tsv(analysis_dir / "correlations.tsv")
    partial = read_tsv(analysis_dir / "partial_correlations.tsv")
    family = read_tsv(analysis_dir / "family_correlations.tsv")
    lines = ["# Instruction tuning and alignment: summary", ""]
    if demo:
        lines += [DEMO_BANNER, ""]
    lines += [
        "Scores are raw (not ceiling-normalized); the dataset average is each model's mean over the datasets it "
        "has. Instruction-tuned models are nested in their bases: the effect counts each base once (its tuned "
        "models averaged), its CIs resample whole bases and its p-values flip the signs of whole bases; the "
        "percent change is the ratio of the mean tuned score to the mean base score. Correlation CIs resample "
        "models. FDR is Benjamini-Hochberg over every p-value of a protocol (effects, correlations, pair tests). "
        "A sign-flip test over n units cannot give p < 2/2^n: where that is above "
        f"{ALPHA}, the line says so, and a large p there is no evidence against an effect.",
        "",
    ]
    for alignment, table in (("brain", brain), ("behavior", behavior)):
        for protocol, scores in table.groupby("protocol", sort=True):
            datasets = sorted(scores["dataset"].unique())
            dataset = AVERAGE if len(datasets) > 1 else datasets[0]
            lines += [
                f"## {alignment.capitalize()} alignment, protocol {protocol}",
                "",
                f"{scores['model'].nunique()} models, datasets: {', '.join(datasets)}.",
                "",
                how_made_line(scores),
                "",
                "Instruction tuning (instruction-tuned minus vanilla base, percent of the base score):",
                "",
                *_effect_lines(effect[(effect["alignment"] == alignment) & (effect["protocol"] == protocol)]),
                "",
                *(
                    _pair_test_lines(pair_tests[pair_tests["protocol"] == protocol])
                    if alignment == "brain" and pair_tests is not None
                    else []
                ),
                f"Correlations with model properties ({'mean over datasets' if dataset == AVERAGE else dataset}):",
                "",
                *_correlation_lines(
                    correlations[(correlations["alignment"] == alignment) & (correlations["protocol"] == protocol)],
                    partial[(partial["alignment"] == alignment) & (partial["protocol"] == protocol)],
                    dataset,
                ),
                *_family_lines(family[(family["alignment"] == alignment) & (family["protocol"] == protocol)], dataset),
                "",
            ]
    write_text(out_path, "\n".join(lines))
