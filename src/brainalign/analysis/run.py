"""The analyze stage: score tables + model metadata -> the study's statistics as TSV tables.

Outputs in ``out_dir``:

- ``instruction_pairs.tsv``: one row per (alignment, protocol, dataset, pair).
- ``instruction_effect.tsv``: the effect over bases (pairs nested in their bases) with
  cluster bootstrap CIs and sign-flip p-values over bases, over all pairs (family ``all``)
  and per family; ``dataset = average`` is the per-model mean over datasets (added when a
  protocol has at least two datasets).
- ``correlations.tsv``: Pearson/Spearman correlations of alignment with model properties,
  bootstrap CIs over models.
- ``partial_correlations.tsv``: the same controlling for log10 parameters.
- ``family_correlations.tsv``: the same within families, adjusted for family (and log10
  parameters), and with each family left out.
- ``comparison_with_published.tsv``: ours minus the paper's numbers (protocol aw2024).

Every table with a ``p_value`` carries ``p_min`` (the smallest p-value its test can give:
0 for the analytic t-tests of correlations, 2 / 2**n for exact sign flips over n units),
``can_reach_alpha`` (whether ``p_min`` < :data:`brainalign.stats.ALPHA`) and ``p_fdr``.
The FDR family is every p-value the analysis reports under one protocol: the instruction
effects (all datasets, families and alignment kinds), the correlations, partial and family
correlations (all datasets, properties, model sets and methods), and the per-pair tests against the
base when given; Benjamini-Hochberg over that family, so a reader of one protocol's
results has every test counted once. Protocols are separate families because they are
separate analyses of the same question (the paper's and the leakage-free one). Spearman
p-values are a robustness check of the Pearson test, not further tests, and stay out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from brainalign.analysis.correlations import (
    family_correlations,
    model_properties,
    partial_correlations,
    property_correlations,
)
from brainalign.analysis.instruction import instruction_effect, instruction_pairs, pair_changes
from brainalign.analysis.published import PUBLISHED_DIR, compare_with_published, published_scores
from brainalign.analysis.tables import validate_scores, with_dataset_average
from brainalign.io import write_tsv
from brainalign.stats import N_RESAMPLES, reach_columns, with_fdr

log = logging.getLogger(__name__)


def _stack(parts: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack per-alignment tables with an ``alignment`` column, ordered protocol, alignment, dataset, ..."""
    table = pd.concat([part.assign(alignment=alignment) for alignment, part in parts.items()], ignore_index=True)
    leading = ["protocol", "alignment", "dataset"]
    return table[leading + [c for c in table.columns if c not in leading]]


def compute_study_statistics(
    brain: pd.DataFrame,
    behavior: pd.DataFrame,
    models: Mapping[str, Mapping],
    out_dir: str | Path,
    published_dir: str | Path | None = PUBLISHED_DIR,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    pair_tests: pd.DataFrame | None = None,
    bits: pd.Series | None = None,
) -> pd.DataFrame | None:
    """Compute every statistic of the study and write the tables listed in the module docstring.

    Parameters
    ----------
    brain, behavior : DataFrame
        Score tables (``results/scores/brain.tsv``, ``behavior.tsv``); validated against
        ``models`` (unknown models, duplicated keys and missing columns are refused). Error
        messages name ``frame.attrs["source"]`` when set (the CLI sets the file path).
    models : mapping
        Model name -> config block (family, parameters, instruction_tuned, base, metadata).
    out_dir : path
        Output folder (created).
    published_dir : path or None
        Folder with the published score tables; None skips the comparison (empty table).
    n_resamples, seed : int
        Bootstrap and permutation settings.
    pair_tests : DataFrame or None
        Per-pair paired tests (``results/scores/brain_pairs.tsv``), part of the FDR family.
    bits : Series or None
        Model -> bits per word on Natural Stories (:func:`correlations.bits_per_word`), a
        property beside the metadata; None leaves it out.

    Returns
    -------
    DataFrame or None
        ``pair_tests`` with ``p_fdr`` added (None when not given).
    """
    out_dir = Path(out_dir)
    validated = {
        alignment: validate_scores(frame, frame.attrs.get("source", f"the {alignment} score table"), models)
        for alignment, frame in (("brain", brain), ("behavior", behavior))
    }
    tables = {alignment: with_dataset_average(scores) for alignment, scores in validated.items()}
    pairs = instruction_pairs(models)
    properties = model_properties(models, bits)
    log.info("analysis over %d models, %d instruction-tuned/base pairs", len(models), len(pairs))

    pair_tables = {alignment: pair_changes(scores, pairs) for alignment, scores in tables.items()}
    effects = {alignment: instruction_effect(table, n_resamples, seed) for alignment, table in pair_tables.items()}
    correlations = {a: property_correlations(scores, properties, n_resamples, seed) for a, scores in tables.items()}
    partial = {alignment: partial_correlations(scores, properties) for alignment, scores in tables.items()}
    by_family = {alignment: family_correlations(scores, properties) for alignment, scores in tables.items()}

    tested = {
        "instruction_effect": _stack(effects),
        "correlations": with_analytic_p_min(_stack(correlations)),
        "partial_correlations": with_analytic_p_min(_stack(partial)),
        "family_correlations": with_analytic_p_min(_stack(by_family)),
    }
    if pair_tests is not None:
        tested["pair_tests"] = pair_tests
    tested = with_fdr(tested, ["protocol"])
    write_tsv(out_dir / "instruction_pairs.tsv", _stack(pair_tables))
    for name in ("instruction_effect", "correlations", "partial_correlations", "family_correlations"):
        write_tsv(out_dir / f"{name}.tsv", tested[name])
    write_tsv(out_dir / "comparison_with_published.tsv", _published_comparison(validated, published_dir))
    return tested.get("pair_tests")


def with_analytic_p_min(table: pd.DataFrame) -> pd.DataFrame:
    """Insert ``p_min`` and ``can_reach_alpha`` after ``p_value`` for an analytic test (any p > 0
    is reachable)."""
    reach = pd.DataFrame(
        [reach_columns(p, 0.0) for p in table["p_value"]], index=table.index, columns=["p_min", "can_reach_alpha"]
    )
    at = table.columns.get_loc("p_value") + 1
    return pd.concat([table.iloc[:, :at], reach, table.iloc[:, at:]], axis=1)


def _published_comparison(validated: Mapping[str, pd.DataFrame], published_dir: str | Path | None) -> pd.DataFrame:
    """Ours minus published for each alignment kind with a published table."""
    parts = []
    for alignment, ours in validated.items():
        published = published_scores(alignment, published_dir) if published_dir is not None else None
        if published is not None:
            parts.append(compare_with_published(ours, published, alignment))
    columns = ["alignment", "model", "dataset", "ours", "published", "difference"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
