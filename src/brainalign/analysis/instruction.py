"""The instruction-tuning effect: each instruction-tuned model against its vanilla base.

A pair is (instruction-tuned model, its ``base``). Several instruction-tuned models may
share a base (the paper's 17 pairs over 8 bases, 6 of them on t5-xl), so pairs are not
independent: they share the base's score. The inference therefore treats the base as the
unit: per base, the mean score of its instruction-tuned models and the base's score; the
effect is the mean over bases of their difference (``mean_change``) and the ratio of the
mean tuned score to the mean base score (``pct_change``, in percent), both with cluster
bootstrap CIs that resample whole bases, and a sign-flip test over bases. A base with six
tuned models counts once, so adding a seventh that scores like the six does not narrow
any CI or p-value.

``pct_change_paper`` is the paper's computation, the mean over pairs of per-pair percent
changes, kept for comparison with the published number; it carries no CI or p-value.

A percent change needs a base score clearly above zero (robust scores can be at or below
zero): it is refused, with the reason in ``pct_note``, when any base score is <= 0 or when
the mean base score is within its own 95% t-interval of zero (Fieller: the CI of a ratio
whose denominator may be zero is unbounded). ``mean_change`` is reported either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from brainalign.stats import (
    CONFIDENCE,
    N_RESAMPLES,
    multinomial_counts,
    percentile_interval,
    reach_columns,
    sign_flip_p_min,
    sign_flip_test,
)

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
        Columns protocol, dataset, model, base, family, score_base, ci_low_base (the lower
        CI bound of the base's score where the score table has one), score_tuned, change,
        pct_change. A pair is left out of a (protocol, dataset) where either partner has
        no score; the number left out is logged.
    """
    keyed = scores.assign(ci_low=scores["ci_low"] if "ci_low" in scores else np.nan)
    keyed = keyed[["protocol", "dataset", "model", "score", "ci_low"]]
    tuned = pairs.merge(keyed.drop(columns="ci_low"), on="model")
    merged = tuned.merge(
        keyed.rename(columns={"model": "base", "score": "score_base", "ci_low": "ci_low_base"}),
        on=["base", "protocol", "dataset"],
        how="left",
    ).rename(columns={"score": "score_tuned"})
    missing = merged["score_base"].isna()
    n_cells = len(pairs) * keyed[["protocol", "dataset"]].drop_duplicates().shape[0]
    n_missing = n_cells - int((~missing).sum())
    if n_missing:
        log.info("%d (pair, protocol, dataset) combination(s) skipped: a partner has no score", n_missing)
    merged = merged[~missing].copy()
    merged["change"] = merged["score_tuned"] - merged["score_base"]
    merged["pct_change"] = 100 * merged["change"] / merged["score_base"]
    columns = [
        "protocol",
        "dataset",
        "model",
        "base",
        "family",
        "score_base",
        "ci_low_base",
        "score_tuned",
        "change",
        "pct_change",
    ]
    return merged[columns].sort_values(["protocol", "dataset", "family", "model"]).reset_index(drop=True)


def per_base(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per base: its score, the mean score of its instruction-tuned models, the pairs.

    Parameters
    ----------
    pairs : DataFrame
        Rows of :func:`pair_changes` of one protocol and dataset.
    """
    return pairs.groupby("base", sort=True).agg(
        score_base=("score_base", "first"),
        ci_low_base=("ci_low_base", "first"),
        score_tuned=("score_tuned", "mean"),
        n_pairs=("model", "size"),
    )


def percent_refusal(base_scores: np.ndarray, base_ci_low: np.ndarray, confidence: float = CONFIDENCE) -> str:
    """Why a percent change of these base scores would mislead, or "" when it would not.

    Refused when a base score is at or below zero, when a base score's own CI (``base_ci_low``,
    NaN where the score table has none) reaches zero, or when the mean base score is within
    its t-interval over bases of zero: the ratio is then unbounded.
    """
    if (base_scores <= 0).any():
        return (
            f"not computed: base score {base_scores.min():.4g} <= 0, so a percent change has no meaning; "
            "read mean_change"
        )
    reaching = np.isfinite(base_ci_low) & (base_ci_low <= 0)
    if reaching.any():
        return (
            f"not computed: the CI of base score {base_scores[reaching].min():.4g} reaches zero "
            f"(ci_low {base_ci_low[reaching].min():.4g}), so the ratio is unbounded; read mean_change"
        )
    if len(base_scores) >= 2:
        half_width = stats.t.ppf(0.5 + confidence / 2, len(base_scores) - 1) * stats.sem(base_scores)
        if base_scores.mean() - half_width <= 0:
            return (
                f"not computed: the mean base score {base_scores.mean():.4g} is within its {confidence:.0%} "
                "t-interval of zero, so the ratio's CI is unbounded; read mean_change"
            )
    return ""


def summarize_changes(pairs: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict:
    """The effect over bases with cluster bootstrap CIs, the sign-flip test and the improvement count.

    Parameters
    ----------
    pairs : DataFrame
        Rows of :func:`pair_changes` (``base``, ``score_base``, ``score_tuned``, ``change``,
        ``pct_change``) of one protocol and dataset.
    n_resamples, seed : int
        Bootstrap resamples and sign-flip permutations (exact when 2**n_bases <= n_resamples).

    Returns
    -------
    dict
        ``n_pairs``, ``n_bases``, ``mean_change`` (mean over bases of the tuned-minus-base
        difference) with ``change_ci_low``/``change_ci_high``, ``pct_change`` (ratio of means,
        percent) with ``ci_low``/``ci_high``, ``pct_note``, ``pct_change_paper``,
        ``p_value`` (sign flips of the base differences), ``p_min``, ``can_reach_alpha``,
        ``n_improved`` (pairs with a positive change). CIs need two bases, the test two.
    """
    bases = per_base(pairs)
    tuned, base = bases["score_tuned"].to_numpy(np.float64), bases["score_base"].to_numpy(np.float64)
    differences = tuned - base
    note = percent_refusal(base, bases["ci_low_base"].to_numpy(np.float64)) if len(bases) else ""
    change_ci = pct_ci = (np.nan, np.nan)
    if len(bases) >= 2:
        counts = multinomial_counts(len(bases), n_resamples, np.random.default_rng(seed))
        change_ci = percentile_interval(counts @ differences / len(bases))
        if not note:
            pct_ci = percentile_interval(100 * ((counts @ tuned) / (counts @ base) - 1))
    p_value = sign_flip_test(differences, n_resamples, seed)
    refused = bool(note) or not len(bases)
    return {
        "n_pairs": len(pairs),
        "n_bases": len(bases),
        "mean_change": float(differences.mean()) if len(bases) else np.nan,
        "change_ci_low": change_ci[0],
        "change_ci_high": change_ci[1],
        "pct_change": np.nan if refused else float(100 * (tuned.mean() / base.mean() - 1)),
        "ci_low": pct_ci[0],
        "ci_high": pct_ci[1],
        "pct_note": note,
        "pct_change_paper": np.nan if refused else float(pairs["pct_change"].mean()),
        "p_value": p_value,
        **reach_columns(p_value, sign_flip_p_min(len(bases), n_resamples)),
        "n_improved": int((pairs["change"] > 0).sum()),
    }


EFFECT_COLUMNS = [
    "protocol", "dataset", "family", "n_pairs", "n_bases", "mean_change", "change_ci_low", "change_ci_high",
    "pct_change", "ci_low", "ci_high", "pct_note", "pct_change_paper", "p_value", "p_min", "can_reach_alpha",
    "n_improved",
]  # fmt: skip


def instruction_effect(pair_table: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Summarize :func:`pair_changes` per protocol and dataset, over all pairs and per family.

    Returns
    -------
    DataFrame
        Columns :data:`EFFECT_COLUMNS`: protocol, dataset, family (``all`` or a family name),
        and the fields of :func:`summarize_changes`.
    """
    rows = []
    for (protocol, dataset), group in pair_table.groupby(["protocol", "dataset"], sort=True):
        subsets = [(ALL_FAMILIES, group), *group.groupby("family", sort=True)]
        for family, subset in subsets:
            summary = summarize_changes(subset, n_resamples, seed)
            rows.append({"protocol": protocol, "dataset": dataset, "family": family, **summary})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)
