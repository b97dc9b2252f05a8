"""The analyze stage: score tables + model metadata -> the study's statistics as TSV tables.

Outputs in ``out_dir``:

- ``instruction_pairs.tsv``: one row per (alignment, protocol, dataset, pair).
- ``instruction_effect.tsv``: mean change over pairs with bootstrap CIs and sign-flip p-values,
  over all pairs (family ``all``) and per family; ``dataset = average`` is the per-model mean
  over datasets (added when a protocol has at least two datasets).
- ``correlations.tsv``: Pearson/Spearman correlations of alignment with model properties,
  bootstrap CIs over models, FDR-corrected p-values.
- ``partial_correlations.tsv``: the same controlling for log10 parameters.
- ``family_correlations.tsv``: the same within families, adjusted for family (and log10
  parameters), and with each family left out.
- ``comparison_with_published.tsv``: ours minus the paper's numbers (protocol aw2024).
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
from brainalign.analysis.stats import N_RESAMPLES
from brainalign.analysis.tables import validate_scores, with_dataset_average
from brainalign.io import write_tsv

log = logging.getLogger(__name__)


def _stack(parts: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack per-alignment tables with an ``alignment`` column, ordered protocol, alignment, dataset, ..."""
    table = pd.concat([part.assign(alignment=alignment) for alignment, part in parts.items()], ignore_index=True)
    leading = ["protocol", "alignment", "dataset"]
    return table[leading + [c for c in table.columns if c not in leading]]


def analyze(
    brain: pd.DataFrame,
    behavior: pd.DataFrame,
    models: Mapping[str, Mapping],
    out_dir: str | Path,
    published_dir: str | Path | None = PUBLISHED_DIR,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    bits: pd.Series | None = None,
) -> None:
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
    bits : Series or None
        Model -> bits per word on Natural Stories (:func:`correlations.bits_per_word`), a
        property beside the metadata; None leaves it out.
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

    write_tsv(out_dir / "instruction_pairs.tsv", _stack(pair_tables))
    write_tsv(out_dir / "instruction_effect.tsv", _stack(effects))
    write_tsv(out_dir / "correlations.tsv", _stack(correlations))
    write_tsv(out_dir / "partial_correlations.tsv", _stack(partial))
    write_tsv(out_dir / "family_correlations.tsv", _stack(by_family))
    write_tsv(out_dir / "comparison_with_published.tsv", _published_comparison(validated, published_dir))


def _published_comparison(validated: Mapping[str, pd.DataFrame], published_dir: str | Path | None) -> pd.DataFrame:
    """Ours minus published for each alignment kind with a published table."""
    parts = []
    for alignment, ours in validated.items():
        published = published_scores(alignment, published_dir) if published_dir is not None else None
        if published is not None:
            parts.append(compare_with_published(ours, published, alignment))
    columns = ["alignment", "model", "dataset", "ours", "published", "difference"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
