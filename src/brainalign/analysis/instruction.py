"""The instruction-tuning effect: each instruction-tuned model against its vanilla base.

A pair is (instruction-tuned model, its ``base``). Several instruction-tuned models may
share a base; each forms its own pair (the paper's 17 pairs over 8 bases). Changes are
tuned minus base; percent changes are relative to the base score.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from brainalign.analysis.stats import N_RESAMPLES, bootstrap_mean_ci, sign_flip_test

log = logging.getLogger(__name__)

ALL_FAMILIES = "all"


def instruction_pairs(models: Mapping[str, Mapping]) -> pd.DataFrame:
    """Return the (model, base, family) pairs of instruction-tuned models and their bases.

    Instruction-tuned models without a ``base``, or whose base is not among ``models``,
    are skipped and counted in the log.
    """
    rows, skipped = [], []
    for name, block in models.items():
        if not block.get("instruction_tuned"):
            continue
        base = block.get("base")
        if base is None or base not in models:
            skipped.append(name)
            continue
        rows.append({"model": name, "base": base, "family": block.get("family") or "unknown"})
    if skipped:
        log.info("%d instruction-tuned model(s) have no base in this model set: %s", len(skipped), skipped)
    return pd.DataFrame(rows, columns=["model", "base", "family"])


def pair_changes(scores: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per pair, protocol and dataset: base and tuned scores, change and percent change.

    Parameters
    ----------
    scores : DataFrame
        Columns model, dataset, protocol, score (dataset averages included if wanted).
    pairs : DataFrame
        From :func:`instruction_pairs`.

    Returns
    -------
    DataFrame
        Columns protocol, dataset, model, base, family, score_base, score_tuned, change,
        pct_change. A pair is left out of a (protocol, dataset) where either partner has
        no score; the number left out is logged.
    """
    keyed = scores[["protocol", "dataset", "model", "score"]]
    tuned = pairs.merge(keyed, on="model")
    merged = tuned.merge(
        keyed.rename(columns={"model": "base", "score": "score_base"}), on=["base", "protocol", "dataset"], how="left"
    ).rename(columns={"score": "score_tuned"})
    missing = merged["score_base"].isna()
    n_cells = len(pairs) * keyed[["protocol", "dataset"]].drop_duplicates().shape[0]
    n_missing = n_cells - int((~missing).sum())
    if n_missing:
        log.info("%d (pair, protocol, dataset) combination(s) skipped: a partner has no score", n_missing)
    merged = merged[~missing].copy()
    merged["change"] = merged["score_tuned"] - merged["score_base"]
    merged["pct_change"] = 100 * merged["change"] / merged["score_base"]
    columns = ["protocol", "dataset", "model", "base", "family", "score_base", "score_tuned", "change", "pct_change"]
    return merged[columns].sort_values(["protocol", "dataset", "family", "model"]).reset_index(drop=True)


def summarize_changes(changes: np.ndarray, pct_changes: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """Mean change over pairs with bootstrap CIs, the sign-flip p-value and the improvement count.

    ``ci_low``/``ci_high`` bound the mean percent change (the headline number);
    ``change_ci_low``/``change_ci_high`` the mean absolute change. The p-value tests a zero
    mean absolute change.
    """
    changes = np.asarray(changes, dtype=np.float64)
    pct_changes = np.asarray(pct_changes, dtype=np.float64)
    change_ci = bootstrap_mean_ci(changes, n_resamples, seed)
    pct_ci = bootstrap_mean_ci(pct_changes, n_resamples, seed)
    return {
        "n_pairs": changes.size,
        "mean_change": float(changes.mean()) if changes.size else np.nan,
        "change_ci_low": change_ci[0],
        "change_ci_high": change_ci[1],
        "mean_pct_change": float(pct_changes.mean()) if changes.size else np.nan,
        "ci_low": pct_ci[0],
        "ci_high": pct_ci[1],
        "p_value": sign_flip_test(changes, n_resamples, seed),
        "n_improved": int((changes > 0).sum()),
    }


def instruction_effect(pair_table: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Summarize :func:`pair_changes` per protocol and dataset, over all pairs and per family.

    Returns
    -------
    DataFrame
        Columns protocol, dataset, family (``all`` or a family name), and the fields of
        :func:`summarize_changes`.
    """
    rows = []
    for (protocol, dataset), group in pair_table.groupby(["protocol", "dataset"], sort=True):
        subsets = [(ALL_FAMILIES, group), *group.groupby("family", sort=True)]
        for family, subset in subsets:
            summary = summarize_changes(subset["change"], subset["pct_change"], n_resamples, seed)
            rows.append({"protocol": protocol, "dataset": dataset, "family": family, **summary})
    columns = ["protocol", "dataset", "family", "n_pairs", "mean_change", "change_ci_low", "change_ci_high",
               "mean_pct_change", "ci_low", "ci_high", "p_value", "n_improved"]
    return pd.DataFrame(rows, columns=columns)

