"""Behavioral alignment: how well a model's per-word surprisal predicts human reading times.

Two protocols, one row each in the score table:

``aw2024``
    Brain-Score's ``Futrell2018-pearsonr`` (the paper's): the first word of each sentence is
    dropped, then Pearson r between surprisal (bits) and the reader-averaged reading time.
    ``score`` is |r| as Brain-Score reports it (``r`` keeps the sign). The ceiling is the
    median over 10 random split-halves of readers of the Spearman-Brown corrected correlation
    between the halves' mean times (``numpy.random.RandomState(0)``, as Brain-Score).
``regression``
    Reading time ~ surprisal + its spillover (previous 1 and 2 words) + word length + log word
    frequency + position, fit by ordinary least squares with cross-validation by ``cv_group``
    (leave one story out), against the same model without the surprisal terms. ``score`` is
    the held-out gain in Pearson r (delta r); ``delta_loglik`` the held-out gain in Gaussian
    log-likelihood per word (nats; the noise variance is estimated on the training folds).

Confidence intervals resample whole sentences (the words of a sentence are not independent).
``normalized_score`` is ``score / ceiling``, never clipped; the ceiling needs per-reader data
and is reported unavailable (NaN) when only per-word means exist. With per-reader data and
``mixed_effects: true``, a ``regression_mixed`` row adds a linear mixed model over single
readings with readers as random intercepts (statsmodels MixedLM, maximum likelihood):
likelihood-ratio test of the surprisal terms, ``delta_loglik`` per reading. It is off by
default because it fits on every reading (~750,000 on Natural Stories) and takes minutes.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from brainalign import io
from brainalign.errors import DataError
from brainalign.options import resolve_options
from brainalign.stats import (
    cluster_bootstrap_counts,
    clustered_mean_p_value,
    mean_from_counts,
    pearson_columns,
    pearson_from_counts,
    percentile_interval,
    reach_columns,
)

PROTOCOLS = ("aw2024", "regression")
SECTION = "behavior"
"""The config section of the options of :func:`score_reading_times` (defaults and descriptions);
the job adds ``alignment`` (``$defs.alignment``), the responses file's.

``sentence_column`` names the stimuli column holding sentence ids (first-word rule and
bootstrap unit); ``drop_first_words`` drops a word whose sentence differs from the previous
word's in its stream (Brain-Score's ``word_within_sentence_id != 1``); ``spillover`` is the
number of previous words whose surprisal enters the regression."""

RESULT_COLUMNS = [
    "protocol", "alignment", "score", "r", "n_words", "ceiling", "ceiling_status", "normalized_score",
    "ci_low", "ci_high", "delta_loglik", "delta_loglik_ci_low", "delta_loglik_ci_high", "p_value",
    "p_min", "can_reach_alpha",
]  # fmt: skip


# --------------------------------------------------------------------------- inputs
def word_table(surprisal: pd.DataFrame, stimuli: pd.DataFrame, options: dict) -> pd.DataFrame:
    """Stimuli in reading order with the model's surprisal, its spillover and the first-word flag.

    Stimuli must be in the row order of the reading-time matrix; surprisal rows are matched by
    ``stimulus_id``. Spillover lags stay inside one stream and one ``cv_group`` (NaN at starts).
    """
    missing = [c for c in ("stimulus_id", "surprisal_bits") if c not in surprisal.columns]
    if missing:
        raise DataError(f"surprisal table lacks columns {missing}; it needs stimulus_id and surprisal_bits.")
    sentence_column = options["sentence_column"]
    needed = ["stimulus_id", "context_group", "position", "text", "cv_group", sentence_column]
    missing = [c for c in needed if c not in stimuli.columns]
    if missing:
        raise DataError(f"stimuli table lacks columns {missing} (sentence_column = {sentence_column!r}).")
    rows = io.align_rows(
        pd.Index(stimuli["stimulus_id"].astype(str)),
        pd.Index(surprisal["stimulus_id"].astype(str)),
        "surprisal table",
        "score_reading_times",
    )
    words = stimuli[needed].copy().reset_index(drop=True)
    words["surprisal"] = surprisal["surprisal_bits"].to_numpy(np.float64)[rows]
    order = np.lexsort((words["position"].to_numpy(), words["context_group"].astype(str).to_numpy()))
    ordered = words.iloc[order]
    stream = ordered.groupby(["context_group", "cv_group"], sort=False)
    sentence = ordered[sentence_column]
    first = (sentence != stream[sentence_column].shift(1)).to_numpy()
    words.loc[ordered.index, "first_in_sentence"] = first
    words.loc[ordered.index, "position_in_group"] = stream.cumcount().to_numpy()
    for lag in range(1, options["spillover"] + 1):
        words.loc[ordered.index, f"surprisal_lag{lag}"] = stream["surprisal"].shift(lag).to_numpy()
    words["first_in_sentence"] = words["first_in_sentence"].astype(bool)
    return words


def scored_words(inputs: np.ndarray, mean_rt: np.ndarray, words: pd.DataFrame, options: dict) -> np.ndarray:
    """Boolean mask of the words that enter a protocol: finite inputs, first words dropped if asked."""
    keep = np.isfinite(mean_rt) & np.all(
        np.isfinite(np.asarray(inputs, dtype=np.float64).reshape(len(mean_rt), -1)), axis=1
    )
    if options["drop_first_words"]:
        keep &= ~words["first_in_sentence"].to_numpy()
    return keep


def word_features(texts: pd.Series, language: str) -> pd.DataFrame:
    """Word length (letters and digits) and Zipf log frequency (``wordfreq``) of each word."""
    from wordfreq import zipf_frequency

    cleaned = texts.astype(str).map(lambda word: re.sub(r"[^\w'-]|^['-]+|['-]+$", "", word))
    frequency = {word: zipf_frequency(word, language) for word in cleaned.str.lower().unique()}
    return pd.DataFrame(
        {
            "length": cleaned.str.count(r"\w").to_numpy(np.float64),
            "log_frequency": cleaned.str.lower().map(frequency).to_numpy(np.float64),
        },
        index=texts.index,
    )


# --------------------------------------------------------------------------- statistics
def split_half_ceiling(reading_times: np.ndarray, n_splits: int = 10, seed: int = 0) -> tuple[float, np.ndarray]:
    """Brain-Score's split-half consistency of the reader-averaged reading time.

    Readers are split ``n_splits`` times into random halves (``RandomState(seed).choice``
    without replacement, as Brain-Score); each half is averaged over readers (NaN skipped),
    the halves are correlated over words (|Pearson r|; words missing in a half are skipped)
    and Spearman-Brown corrected, ``2 r / (1 + r)``.

    Returns
    -------
    ceiling : float, the median corrected consistency
    corrected : ndarray of shape (n_splits,)
    """
    n_readers = reading_times.shape[1]
    if n_readers < 2:
        raise DataError("the split-half ceiling needs at least two readers.")
    random_state = np.random.RandomState(seed)
    corrected = np.empty(n_splits)
    for split in range(n_splits):
        half = np.zeros(n_readers, dtype=bool)
        half[random_state.choice(n_readers, size=n_readers // 2, replace=False)] = True
        first, second = reader_mean(reading_times[:, half]), reader_mean(reading_times[:, ~half])
        both = np.isfinite(first) & np.isfinite(second)
        consistency = abs(pearson_columns(first[both, None], second[both, None])[0])
        corrected[split] = 2 * consistency / (1 + consistency)
    return float(np.median(corrected)), corrected


def reader_mean(reading_times: np.ndarray) -> np.ndarray:
    """Mean over readers, skipping missing readings (NaN where a word has none)."""
    counts = np.isfinite(reading_times).sum(axis=1)
    totals = np.nansum(reading_times, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def cross_validated_fit(features: np.ndarray, target: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-group-out OLS (with intercept).

    Returns
    -------
    predicted : held-out prediction of every sample
    loglik : held-out Gaussian log-likelihood of every sample (nats), the noise variance being
        the maximum-likelihood residual variance of the training fold
    """
    design = np.column_stack([np.ones(len(target)), features])
    predicted = np.empty(len(target))
    loglik = np.empty(len(target))
    for group in np.unique(groups):
        test = groups == group
        coef, *_ = np.linalg.lstsq(design[~test], target[~test], rcond=None)
        variance = np.mean((target[~test] - design[~test] @ coef) ** 2)
        predicted[test] = design[test] @ coef
        loglik[test] = -0.5 * (np.log(2 * np.pi * variance) + (target[test] - predicted[test]) ** 2 / variance)
    return predicted, loglik


# --------------------------------------------------------------------------- protocols
def _has_readers(readers: pd.DataFrame) -> bool:
    """Whether the responses hold per-reader times (not only per-word means)."""
    return int((readers["roi"] == "reader").sum()) >= 2


def _ceiling(reading_times: np.ndarray, readers: pd.DataFrame, options: dict) -> tuple[float, str]:
    if not _has_readers(readers):
        return float("nan"), "unavailable: per-word means only"
    ceiling, _ = split_half_ceiling(reading_times, options["n_ceiling_splits"], options["seed"])
    return ceiling, "split-half Spearman-Brown median"


def score_aw2024(words: pd.DataFrame, mean_rt: np.ndarray, options: dict) -> dict[str, Any]:
    """Brain-Score's Futrell2018 score: Pearson r of surprisal with the mean reading time."""
    keep = scored_words(words["surprisal"].to_numpy(), mean_rt, words, options)
    x, y = words["surprisal"].to_numpy()[keep], mean_rt[keep]
    if keep.sum() < 3:
        raise DataError(f"only {int(keep.sum())} words have both surprisal and a reading time; nothing to score.")
    r, p_value = stats.pearsonr(x, y)
    counts, index = cluster_bootstrap_counts(
        words[options["sentence_column"]].to_numpy()[keep], options["n_bootstrap"], options["seed"]
    )
    low, high = percentile_interval(np.abs(pearson_from_counts(x, y, counts, index)), options["confidence"])
    return {
        "score": abs(float(r)),
        "r": float(r),
        "n_words": int(keep.sum()),
        "ci_low": low,
        "ci_high": high,
        "p_value": float(p_value),
    }


def regression_design(words: pd.DataFrame, options: dict) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Return the regression's feature table, the baseline columns and the surprisal columns."""
    surprisal_columns = ["surprisal"] + [f"surprisal_lag{lag}" for lag in range(1, options["spillover"] + 1)]
    baseline_columns = ["length", "log_frequency", "position_in_group"]
    table = pd.concat(
        [words[surprisal_columns + ["position_in_group"]], word_features(words["text"], options["frequency_language"])],
        axis=1,
    )
    return table, baseline_columns, surprisal_columns


def score_regression(words: pd.DataFrame, mean_rt: np.ndarray, options: dict) -> dict[str, Any]:
    """Held-out gain of the surprisal terms in a word-level regression, cross-validated by cv_group."""
    table, baseline_columns, surprisal_columns = regression_design(words, options)
    keep = scored_words(table[baseline_columns + surprisal_columns].to_numpy(), mean_rt, words, options)
    groups = words["cv_group"].astype(str).to_numpy()[keep]
    if len(np.unique(groups)) < 2:
        raise DataError("the regression protocol cross-validates by cv_group and needs at least two groups (stories).")
    y = mean_rt[keep]
    base_prediction, base_loglik = cross_validated_fit(table[baseline_columns].to_numpy()[keep], y, groups)
    full_prediction, full_loglik = cross_validated_fit(
        table[baseline_columns + surprisal_columns].to_numpy()[keep], y, groups
    )
    r_full = pearson_columns(full_prediction[:, None], y[:, None])[0]
    r_base = pearson_columns(base_prediction[:, None], y[:, None])[0]
    gain = full_loglik - base_loglik
    counts, index = cluster_bootstrap_counts(
        words[options["sentence_column"]].to_numpy()[keep], options["n_bootstrap"], options["seed"]
    )
    delta_r = pearson_from_counts(full_prediction, y, counts, index) - pearson_from_counts(
        base_prediction, y, counts, index
    )
    low, high = percentile_interval(delta_r, options["confidence"])
    ll_low, ll_high = percentile_interval(mean_from_counts(gain, counts, index), options["confidence"])
    return {
        "score": float(r_full - r_base), "r": float(r_full), "n_words": int(keep.sum()), "ci_low": low, "ci_high": high,
        "delta_loglik": float(gain.mean()), "delta_loglik_ci_low": ll_low, "delta_loglik_ci_high": ll_high,
        "p_value": clustered_mean_p_value(gain, index),
    }  # fmt: skip


def score_mixed_effects(
    words: pd.DataFrame, reading_times: np.ndarray, readers: pd.DataFrame, options: dict
) -> dict[str, Any]:
    """Likelihood-ratio test of the surprisal terms in a mixed model with reader intercepts.

    Fit by maximum likelihood (not REML, so the two fixed-effect structures are comparable)
    on every single reading of the scored words; features are z-scored.
    """
    import statsmodels.api as sm

    table, baseline_columns, surprisal_columns = regression_design(words, options)
    keep = scored_words(
        table[baseline_columns + surprisal_columns].to_numpy(), reader_mean(reading_times), words, options
    )
    features = table[baseline_columns + surprisal_columns].to_numpy()[keep]
    features = (features - features.mean(axis=0)) / features.std(axis=0)
    word_index, reader_index = np.nonzero(np.isfinite(reading_times[keep]))
    y = reading_times[keep][word_index, reader_index]
    design = sm.add_constant(features[word_index])
    reader_ids = readers["neuroid_id"].to_numpy()[reader_index]
    n_base = 1 + len(baseline_columns)
    full = sm.MixedLM(y, design, groups=reader_ids).fit(reml=False)
    base = sm.MixedLM(y, design[:, :n_base], groups=reader_ids).fit(reml=False)
    statistic = 2 * (full.llf - base.llf)
    return {
        "score": float((full.llf - base.llf) / len(y)), "r": float("nan"), "n_words": int(keep.sum()),
        "delta_loglik": float((full.llf - base.llf) / len(y)),
        "p_value": float(stats.chi2.sf(statistic, df=len(surprisal_columns))),
        "n_readings": int(len(y)),
    }  # fmt: skip


def score_reading_times(
    surprisal: pd.DataFrame,
    stimuli: pd.DataFrame,
    reading_times: np.ndarray,
    readers: pd.DataFrame,
    options: dict,
    paper_surprisal: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score a model's per-word surprisal against reading times under every protocol.

    Parameters
    ----------
    surprisal : DataFrame
        ``stimulus_id``, ``surprisal_bits`` (NaN where a word has no context); any order.
    stimuli : DataFrame
        The stimuli table (see :mod:`brainalign.io`), in the row order of ``reading_times``,
        with the sentence column named by ``options['sentence_column']``.
    reading_times : ndarray of shape (n_stimuli, n_readers)
        Milliseconds, NaN where missing; one column ``mean`` when only per-word means exist.
    readers : DataFrame
        ``neuroid_id``, ``subject``, ``roi`` (``reader`` or ``mean``) of each column.
    options : dict
        The ``behavior`` section (:data:`SECTION`) and ``alignment``, recorded in the output.
    paper_surprisal : DataFrame or None
        The surprisal the ``aw2024`` score correlates (the paper's readout), same columns
        as ``surprisal``; None: ``surprisal`` serves every protocol.

    Returns
    -------
    DataFrame with one row per protocol and the columns :data:`RESULT_COLUMNS`
    (``n_readings`` added for ``regression_mixed``).
    """
    options = resolve_options(SECTION, options, ("$defs.alignment",))
    reading_times = np.asarray(reading_times, dtype=np.float64)
    if reading_times.ndim != 2 or reading_times.shape != (len(stimuli), len(readers)):
        raise DataError(
            f"reading times have shape {reading_times.shape}; expected ({len(stimuli)} stimuli, {len(readers)} "
            f"readers). "
            "Align the response matrix to the stimuli by stimulus_id (brainalign.io.align_rows)."
        )
    words = word_table(surprisal, stimuli, options)
    paper_words = words if paper_surprisal is None else word_table(paper_surprisal, stimuli, options)
    mean_rt = reader_mean(reading_times)
    ceiling, ceiling_status = _ceiling(reading_times, readers, options)
    results = {
        "aw2024": score_aw2024(paper_words, mean_rt, options),
        "regression": score_regression(words, mean_rt, options),
    }
    if options["mixed_effects"] and _has_readers(readers):
        results["regression_mixed"] = score_mixed_effects(words, reading_times, readers, options)
    rows = []
    for protocol, result in results.items():
        row = {column: np.nan for column in RESULT_COLUMNS} | result
        row.update(protocol=protocol, alignment=options["alignment"], ceiling=ceiling, ceiling_status=ceiling_status)
        # Every protocol's p-value is analytic (t-test of r, cluster-robust z, likelihood ratio): any p > 0.
        row.update(reach_columns(row["p_value"], 0.0))
        # The ceiling bounds a correlation with the mean time; the regressions' gains have none.
        row["normalized_score"] = row["score"] / ceiling if protocol == "aw2024" else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame[RESULT_COLUMNS + [c for c in frame.columns if c not in RESULT_COLUMNS]]
