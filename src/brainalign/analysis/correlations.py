"""Correlations of alignment with model properties (size, MMLU, BBH, next-word-prediction loss).

The paper correlates over the instruction-tuned models (MMLU and BBH were measured only
for them); we report that set and, where it differs, every model that has the property.
Their p-values enter the study's FDR family (:func:`brainalign.analysis.run.analyze`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from brainalign.stats import N_RESAMPLES, bootstrap_pearson_ci, correlation, partial_correlation

SIZE = "log10_parameters"
MMLU_CATEGORIES = ("stem", "humanities", "social_sciences", "others")
BBH_CATEGORIES = ("algorithmic", "language_understanding", "world_knowledge", "multilingual", "others")
PROPERTIES = (
    SIZE,
    "mmlu",
    *(f"mmlu_{c}" for c in MMLU_CATEGORIES),
    "bbh",
    *(f"bbh_{c}" for c in BBH_CATEGORIES),
    "nwp_loss",
)
MIN_MODELS = 3
"""Fewest models with a property for a correlation to be reported (sparser sets get no row)."""


def model_properties(models: Mapping[str, Mapping]) -> pd.DataFrame:
    """Return one row per model: family, instruction_tuned and every property in :data:`PROPERTIES`.

    Missing or null metadata become NaN.
    """
    rows = []
    for name, block in models.items():
        metadata = block.get("metadata") or {}
        parameters = block.get("parameters")
        row = {
            "model": name,
            "family": block.get("family"),
            "instruction_tuned": bool(block.get("instruction_tuned")),
            SIZE: np.log10(float(parameters)) if parameters else np.nan,
            "mmlu": metadata.get("mmlu"),
            "bbh": metadata.get("bbh"),
            "nwp_loss": metadata.get("nwp_loss"),
        }
        for benchmark, categories in (("mmlu", MMLU_CATEGORIES), ("bbh", BBH_CATEGORIES)):
            found = metadata.get(f"{benchmark}_categories") or {}
            row.update({f"{benchmark}_{c}": found.get(c) for c in categories})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["model", "family", "instruction_tuned", *PROPERTIES])
    frame[list(PROPERTIES)] = frame[list(PROPERTIES)].apply(pd.to_numeric, errors="coerce")
    return frame.set_index("model")


def _model_subsets(table: pd.DataFrame, column: str) -> list[tuple[str, pd.DataFrame]]:
    """Rows with the property over instruction-tuned models, and over all models if that differs."""
    present = table.dropna(subset=[column, "score"])
    tuned = present[present["instruction_tuned"]]
    subsets = [("instruction_tuned", tuned)]
    if len(present) != len(tuned):
        subsets.append(("all", present))
    return [(name, subset) for name, subset in subsets if len(subset) >= MIN_MODELS]


def property_correlations(
    scores: pd.DataFrame, properties: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> pd.DataFrame:
    """Correlate scores with every property, per protocol and dataset.

    Parameters
    ----------
    scores : DataFrame
        Columns model, dataset, protocol, score (dataset averages included).
    properties : DataFrame
        From :func:`model_properties`.

    Returns
    -------
    DataFrame
        Columns protocol, dataset, property, models, n, pearson_r, p_value,
        spearman_r, spearman_p, ci_low, ci_high (bootstrap CI of Pearson r over models).
    """
    joined = scores.join(properties, on="model")
    rows = []
    for (protocol, dataset), group in joined.groupby(["protocol", "dataset"], sort=True):
        for prop in PROPERTIES:
            for model_set, subset in _model_subsets(group, prop):
                x, y = subset[prop].to_numpy(), subset["score"].to_numpy()
                low, high = bootstrap_pearson_ci(x, y, n_resamples, seed)
                rows.append({"protocol": protocol, "dataset": dataset, "property": prop, "models": model_set,
                             "n": len(subset), **correlation(x, y), "ci_low": low, "ci_high": high})
    columns = ["protocol", "dataset", "property", "models", "n", "pearson_r", "p_value", "spearman_r",
               "spearman_p", "ci_low", "ci_high"]
    return pd.DataFrame(rows, columns=columns)


def partial_correlations(scores: pd.DataFrame, properties: pd.DataFrame, covariate: str = SIZE) -> pd.DataFrame:
    """Correlate scores with each property controlling for a covariate (log size by default).

    Computed over instruction-tuned models that have both the property and the covariate.

    Returns
    -------
    DataFrame
        Columns protocol, dataset, property, covariate, models, n, pearson_r (zero-order),
        partial_r, p_value.
    """
    joined = scores.join(properties, on="model")
    joined = joined[joined["instruction_tuned"]]
    rows = []
    for (protocol, dataset), group in joined.groupby(["protocol", "dataset"], sort=True):
        for prop in PROPERTIES:
            if prop == covariate:
                continue
            subset = group.dropna(subset=[prop, covariate, "score"])
            if len(subset) < MIN_MODELS + 1:
                continue
            x, y, z = subset[prop].to_numpy(), subset["score"].to_numpy(), subset[covariate].to_numpy()
            r, p = partial_correlation(y, x, z)
            rows.append({"protocol": protocol, "dataset": dataset, "property": prop, "covariate": covariate,
                         "models": "instruction_tuned", "n": len(subset),
                         "pearson_r": correlation(x, y)["pearson_r"], "partial_r": r, "p_value": p})
    columns = ["protocol", "dataset", "property", "covariate", "models", "n", "pearson_r", "partial_r", "p_value"]
    return pd.DataFrame(rows, columns=columns)

