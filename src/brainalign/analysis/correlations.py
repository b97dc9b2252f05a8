"""Correlations of alignment with model properties (size, MMLU, BBH, next-word-prediction loss).

The paper correlates over the instruction-tuned models (MMLU and BBH were measured only
for them); we report that set and, where it differs, every model that has the property.
Their p-values enter the study's FDR family (:func:`brainalign.analysis.run.compute_study_statistics`).

Models of one family (T5, LLaMA) share size, training data and benchmark level, so a
correlation over models can be a difference between families. :func:`family_correlations`
checks each correlation within families, adjusted for family (and log size), and with
each family left out.

Next-word loss comes in two forms: the paper's per-token ``nwp_loss`` metadata (WikiText-2,
each model's own tokens, so not comparable across tokenizers) and, where the suite has the
Natural Stories text, ``bits_per_word`` computed by the workflow (:func:`bits_per_word`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from brainalign import io
from brainalign.errors import DataError
from brainalign.stats import (
    N_RESAMPLES,
    bootstrap_pearson_ci,
    correlation,
    partial_correlation,
    pearson_columns,
)

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
BITS_PER_WORD = "bits_per_word"
"""Mean surprisal per word (bits) on the Natural Stories text; a property only where the suite has it."""
FAMILY_CHECKED = (SIZE, "mmlu", "bbh", "nwp_loss", BITS_PER_WORD)
"""Properties whose correlations :func:`family_correlations` checks against the family confound."""
MIN_MODELS = 3
"""Fewest models with a property for a correlation to be reported (sparser sets get no row)."""


def model_properties(models: Mapping[str, Mapping], bits: pd.Series | None = None) -> pd.DataFrame:
    """Return one row per model: family, instruction_tuned and every property in :data:`PROPERTIES`.

    Missing or null metadata become NaN. ``bits`` (model -> :func:`bits_per_word`), when
    given, adds the ``bits_per_word`` column (NaN for models without it).
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
    frame = frame.set_index("model")
    if bits is not None:
        frame[BITS_PER_WORD] = pd.to_numeric(bits.reindex(frame.index), errors="coerce")
    return frame


def present_properties(properties: pd.DataFrame, names: Sequence[str] = (*PROPERTIES, BITS_PER_WORD)) -> list[str]:
    """The properties among ``names`` that the property table has a column for, in that order."""
    return [name for name in names if name in properties.columns]


def bits_per_word(surprisal_paths: Sequence[str | Path]) -> pd.Series:
    """Each model's mean surprisal per word, in bits, on one text (e.g. Natural Stories).

    Unlike a per-token loss, a per-word one does not depend on the tokenizer: every model
    predicts the same words. Words without context (NaN surprisal: the first word of a
    stream) are left out; every model must score the same words, or the means would not
    compare.

    Parameters
    ----------
    surprisal_paths : sequence of paths
        One surprisal file (``stimulus_id``, ``surprisal_bits``, ``n_tokens``; the model's
        name in its metadata) per model, all of the same stimuli.

    Returns
    -------
    Series
        Model -> bits per word, named ``bits_per_word``.
    """
    values, scored_words = {}, {}
    for path in surprisal_paths:
        model = io.read_metadata(path).get("model")
        if model is None or model in values:
            raise DataError(
                f"{path}: its metadata names model {model!r}, missing or already read; rerun compute_surprisal."
            )
        table = io.read_table(path)
        scored = table["surprisal_bits"].notna()
        if not scored.any():
            raise DataError(f"{path}: no word has a surprisal; rerun compute_surprisal for model {model!r}.")
        values[model] = float(table.loc[scored, "surprisal_bits"].mean())
        scored_words[model] = frozenset(table.loc[scored, "stimulus_id"].astype(str))
    if len(set(scored_words.values())) > 1:
        counts = {model: len(words) for model, words in scored_words.items()}
        raise DataError(
            f"the surprisal files score different words (words per model: {counts}); bits per word compare "
            "only on the same words: rerun compute_surprisal on the current stimuli for every model."
        )
    return pd.Series(values, name=BITS_PER_WORD, dtype=float)


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
        for prop in present_properties(properties):
            for model_set, subset in _model_subsets(group, prop):
                x, y = subset[prop].to_numpy(), subset["score"].to_numpy()
                low, high = bootstrap_pearson_ci(x, y, n_resamples, seed)
                rows.append(
                    {
                        "protocol": protocol,
                        "dataset": dataset,
                        "property": prop,
                        "models": model_set,
                        "n": len(subset),
                        **correlation(x, y),
                        "ci_low": low,
                        "ci_high": high,
                    }
                )
    columns = [
        "protocol",
        "dataset",
        "property",
        "models",
        "n",
        "pearson_r",
        "p_value",
        "spearman_r",
        "spearman_p",
        "ci_low",
        "ci_high",
    ]
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
        for prop in present_properties(properties):
            if prop == covariate:
                continue
            subset = group.dropna(subset=[prop, covariate, "score"])
            if len(subset) < MIN_MODELS + 1:
                continue
            x, y, z = subset[prop].to_numpy(), subset["score"].to_numpy(), subset[covariate].to_numpy()
            r, p = partial_correlation(y, x, z)
            rows.append(
                {
                    "protocol": protocol,
                    "dataset": dataset,
                    "property": prop,
                    "covariate": covariate,
                    "models": "instruction_tuned",
                    "n": len(subset),
                    "pearson_r": correlation(x, y)["pearson_r"],
                    "partial_r": r,
                    "p_value": p,
                }
            )
    columns = ["protocol", "dataset", "property", "covariate", "models", "n", "pearson_r", "partial_r", "p_value"]
    return pd.DataFrame(rows, columns=columns)


def adjusted_correlation(x: np.ndarray, y: np.ndarray, covariates: np.ndarray) -> dict[str, float]:
    """Pearson correlation of x and y after regressing covariates (and an intercept) out of both.

    Parameters
    ----------
    x, y : array of shape (n_samples,)
    covariates : array of shape (n_samples, n_covariates)
        May be collinear (e.g. a family dummy and a size shared by that family): the
        degrees of freedom count the independent columns only.

    Returns
    -------
    dict
        ``pearson_r``, ``p_value`` (two-sided t-test of the partial correlation, equal to the
        OLS t-test of x's coefficient in ``y ~ x + covariates``) and ``dof`` (n minus the
        rank of [intercept, covariates] minus 1); NaN where ``dof < 1`` or a residual is constant.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    design = np.column_stack([np.ones_like(x), np.asarray(covariates, dtype=np.float64).reshape(len(x), -1)])
    dof = len(x) - np.linalg.matrix_rank(design) - 1
    if dof < 1:
        return {"pearson_r": np.nan, "p_value": np.nan, "dof": dof}
    both = np.column_stack([x, y])
    residuals = both - design @ np.linalg.lstsq(design, both, rcond=None)[0]
    r = float(pearson_columns(residuals[:, :1], residuals[:, 1:])[0])
    if not np.isfinite(r):
        return {"pearson_r": np.nan, "p_value": np.nan, "dof": dof}
    t = r * np.sqrt(dof / max(1 - r**2, np.finfo(float).tiny))
    return {"pearson_r": r, "p_value": float(2 * stats.t.sf(abs(t), dof)), "dof": dof}


def family_dummies(families: pd.Series) -> np.ndarray:
    """Indicator columns of every family but the first (the intercept stands for it)."""
    return pd.get_dummies(families.astype(str), drop_first=True, dtype=float).to_numpy()


def _family_rows(subset: pd.DataFrame, prop: str) -> list[dict]:
    """Within-family, leave-one-family-out and family-adjusted correlations of score with ``prop``."""
    families = subset["family"].fillna("unknown").astype(str)
    rows = []
    for family in sorted(families.unique()):
        inside, outside = subset[families == family], subset[families != family]
        if len(inside) >= MIN_MODELS:
            rows.append(_plain_row("within_family", family, inside, prop, n_families=1))
        if len(outside) >= MIN_MODELS:  # never with a single family: nothing is left outside it
            rows.append(_plain_row("leave_family_out", family, outside, prop, n_families=families.nunique() - 1))
    return [*rows, _adjusted_row(subset, families, prop)]


def _plain_row(method: str, family: str, models: pd.DataFrame, prop: str, n_families: int) -> dict:
    """Pearson r of score with ``prop`` over ``models``."""
    result = correlation(models[prop].to_numpy(), models["score"].to_numpy())
    return {
        "method": method,
        "family": family,
        "covariates": "",
        "n": len(models),
        "n_families": n_families,
        "pearson_r": result["pearson_r"],
        "p_value": result["p_value"],
    }


def _adjusted_row(subset: pd.DataFrame, families: pd.Series, prop: str) -> dict:
    """Partial r of score with ``prop`` given family dummies and, for any other property, log size."""
    models = subset if prop == SIZE else subset.dropna(subset=[SIZE])
    covariates = [family_dummies(families[models.index])] + ([] if prop == SIZE else [models[[SIZE]].to_numpy()])
    result = adjusted_correlation(models[prop].to_numpy(), models["score"].to_numpy(), np.hstack(covariates))
    return {
        "method": "family_adjusted",
        "family": "",
        "covariates": "family" if prop == SIZE else f"family + {SIZE}",
        "n": len(models),
        "n_families": families[models.index].nunique(),
        "pearson_r": result["pearson_r"],
        "p_value": result["p_value"],
    }


FAMILY_COLUMNS = [
    "protocol",
    "dataset",
    "property",
    "models",
    "method",
    "family",
    "covariates",
    "n",
    "n_families",
    "pearson_r",
    "p_value",
]


def family_correlations(scores: pd.DataFrame, properties: pd.DataFrame) -> pd.DataFrame:
    """Check each correlation of alignment with a property (:data:`FAMILY_CHECKED`) against family.

    Per protocol, dataset, property and model set (as :func:`property_correlations`):

    - ``within_family``: Pearson r over the models of one family (families with at least
      :data:`MIN_MODELS` models);
    - ``family_adjusted``: partial correlation controlling for family dummies and log10
      size (size itself: family only); the pooled within-family correlation;
    - ``leave_family_out``: Pearson r over the models of every other family.

    Returns
    -------
    DataFrame
        :data:`FAMILY_COLUMNS` (their p-values join the study's FDR family).
    """
    joined = scores.join(properties, on="model")
    rows = []
    for (protocol, dataset), group in joined.groupby(["protocol", "dataset"], sort=True):
        for prop in present_properties(properties, FAMILY_CHECKED):
            for model_set, subset in _model_subsets(group, prop):
                keys = {"protocol": protocol, "dataset": dataset, "property": prop, "models": model_set}
                rows += [{**keys, **row} for row in _family_rows(subset, prop)]
    return pd.DataFrame(rows, columns=FAMILY_COLUMNS)
