"""Wehbe2014 under the paper's protocol: the pipeline of Toneva & Wehbe (2019).

As in ``awwkl/brain_language_summarization`` (built on ``mtoneva/brain_language_nlp``),
for each of 4 outer folds:

1. PCA to 10 components, fit on the training words' features (the original's full SVD; here
   the same axes from the smaller Gram matrix, :func:`principal_axes`);
2. word components averaged within each TR (TRs without words are NaN);
3. the TR features delayed by 1..4 TRs and concatenated (40 features), over the whole
   concatenated timeline (zeros before its start);
4. per run: the first 20 and last 15 TRs dropped, each column z-scored (NaN propagates,
   then set to 0, as ``np.nan_to_num(scipy.stats.zscore(...))`` does);
5. folds: 4 contiguous, equally sized blocks of the kept TRs (``CV_ind``; the last block
   takes the remainder), or one per run; 5 TRs dropped at each train/test boundary, by the
   original's rule: the first fold drops the first training TRs, the last fold the last
   training TRs, and the middle folds drop both ends of the test block;
6. features and responses z-scored separately on the training and on the test block;
7. ridge without intercept, one penalty per voxel chosen from 1e-6..1e9 by unshuffled
   10-fold inner CV minimising the summed ``1 - R^2``; refit on the training block;
8. Pearson r per voxel on the test block; r averaged over folds, then over each subject's
   voxels, then over subjects.

One deliberate simplification: the original assigns a word to the training set through
the TR *preceding* its TR (an index offset in ``TR_to_word_CV_ind``); here a word trains
the PCA when its own TR is a kept training TR. Words in dropped TRs are only transformed.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy.linalg import eigh
from scipy.sparse.linalg import ArpackNoConvergence, eigsh
from scipy.stats import zscore
from sklearn.model_selection import KFold

from brainalign.encoding.result import EncodingResult
from brainalign.errors import ConfigError, DataError
from brainalign.options import resolve_options
from brainalign.stats import median_absolute_deviation, pearson_columns

logger = logging.getLogger(__name__)

SECTION = "protocols.aw2024.toneva"
"""The config section of the pipeline's options (their defaults and descriptions)."""


def resolve_toneva_options(options: dict | None) -> dict[str, Any]:
    """Return the ``toneva`` section of the aw2024 options over its defaults; refuse unknown keys."""
    resolved = resolve_options(SECTION, (options or {}).get("toneva"))
    if resolved["fold_scheme"] not in ("contiguous", "run"):
        raise ConfigError("protocols.aw2024.toneva.fold_scheme must be 'contiguous' (as the original code) or 'run'.")
    return resolved


def kept_tr_mask(runs: np.ndarray, trim_start: int, trim_end: int) -> np.ndarray:
    """True for TRs kept after dropping ``trim_start``/``trim_end`` TRs at each run's edges."""
    kept = np.zeros(len(runs), bool)
    for run in pd.unique(runs):
        index = np.flatnonzero(runs == run)
        kept[index[trim_start : len(index) - trim_end]] = True
    return kept


def contiguous_folds(n_samples: int, n_folds: int) -> np.ndarray:
    """Fold label per sample: equal contiguous blocks, the last one taking the remainder."""
    size = n_samples // n_folds
    return np.minimum(np.arange(n_samples) // max(size, 1), n_folds - 1)


def delay_features(features: np.ndarray, delays: list[int]) -> np.ndarray:
    """Concatenate copies of ``features`` shifted down by each delay (zeros shifted in)."""
    blocks = []
    for delay in delays:
        shifted = np.zeros_like(features)
        shifted[delay:] = features[: len(features) - delay]
        blocks.append(shifted)
    return np.concatenate(blocks, axis=1)


def tr_average(word_features: np.ndarray, word_tr: np.ndarray, n_trs: int) -> np.ndarray:
    """Mean of the word rows within each TR (NaN for TRs without words)."""
    sums = np.zeros((n_trs, word_features.shape[1]))
    np.add.at(sums, word_tr, word_features)
    counts = np.bincount(word_tr, minlength=n_trs)[:, None]
    with np.errstate(invalid="ignore"):
        return sums / counts


def zscore_filled(values: np.ndarray) -> np.ndarray:
    """Column z-score (population SD); NaN results (constant or NaN columns) become 0."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nan_to_num(zscore(values, axis=0))


def principal_axes(samples: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Column means and leading principal axes of ``samples``, as scikit-learn's
    ``PCA(n_components, svd_solver="full")`` fits them (``mean_``, ``components_``).

    The full SVD of a 3,900-word x 4,096-feature training set takes about 30 s per fold; the
    axes need only the leading eigenvectors of the smaller Gram matrix of the centred data
    (words x words, or features x features), found by Lanczos iteration converged to machine
    precision (ARPACK, ``tol=0``; a dense eigendecomposition where it does not converge).
    Equal to the full SVD's axes to float64 round-off; signs by scikit-learn's rule (each
    axis's largest-magnitude entry positive). Axes beyond the rank of the data (zero variance
    to round-off, arbitrary in any decomposition) are returned as zeros.

    Parameters
    ----------
    samples : array of shape (n_samples, n_features)
    n_components : int

    Returns
    -------
    mean : array of shape (n_features,)
    axes : array of shape (n_components, n_features)
    """
    centred = np.asarray(samples, dtype=np.float64)
    mean = centred.mean(axis=0)
    centred = centred - mean
    by_sample = centred.shape[0] <= centred.shape[1]
    gram = centred @ centred.T if by_sample else centred.T @ centred
    variances, vectors = _leading_eigenpairs(gram, n_components)
    # Directions of zero variance (to round-off) are arbitrary in any decomposition.
    determined = variances > variances[0] * len(gram) * np.finfo(np.float64).eps
    if by_sample:  # right singular vectors from left ones: v = X'u / sigma
        vectors = (centred.T @ vectors) / np.sqrt(np.where(determined, variances, 1.0))
    vectors = np.where(determined, vectors, 0.0)
    largest = vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])]
    return mean, (vectors * np.where(largest < 0, -1.0, 1.0)).T


def _leading_eigenpairs(gram: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues (descending, negatives from round-off set to 0) and
    eigenvectors of a symmetric positive semi-definite matrix."""
    size = len(gram)
    values = vectors = None
    if 2 * k < size:  # Lanczos needs k < size and pays off only well below it
        try:
            values, vectors = eigsh(gram, k=k, which="LA", tol=0, v0=np.ones(size))
        except ArpackNoConvergence:
            pass  # the dense decomposition below is exact, only slower
    if values is None:
        values, vectors = eigh(gram, subset_by_index=[size - k, size - 1])
    order = np.argsort(values)[::-1]
    return np.maximum(values[order], 0.0), vectors[:, order]


def ridge_cv_predict(
    features_train: np.ndarray,
    responses_train: np.ndarray,
    features_test: np.ndarray,
    alphas: list[float],
    inner_folds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge (no intercept) with a per-column penalty from unshuffled inner K-fold CV.

    The inner criterion is ``1 - R^2`` summed over folds (``R^2`` with NaN set to 0);
    the first penalty reaching the minimum wins. Solved through the SVD of the features,
    which equals ``inv(X'X + alpha I) X'Y`` exactly in arithmetic.

    Returns
    -------
    predictions : array of shape (n_test, n_columns)
    chosen_alphas : array of shape (n_columns,)
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    cost = np.zeros((len(alphas), responses_train.shape[1]))
    for train, validation in KFold(n_splits=inner_folds).split(features_train):
        u, s, vt = np.linalg.svd(features_train[train], full_matrices=False)
        projected = u.T @ responses_train[train]
        validation_basis = features_train[validation] @ vt.T
        observed = responses_train[validation]
        variance = observed.var(axis=0)
        for index, alpha in enumerate(alphas):
            predicted = validation_basis @ ((s / (s**2 + alpha))[:, None] * projected)
            with np.errstate(invalid="ignore", divide="ignore"):
                r2 = np.nan_to_num(1 - ((observed - predicted) ** 2).mean(axis=0) / variance)
            cost[index] += 1 - r2
    best = np.argmin(cost, axis=0)
    u, s, vt = np.linalg.svd(features_train, full_matrices=False)
    projected = u.T @ responses_train
    test_basis = features_test @ vt.T
    predictions = np.empty((len(features_test), responses_train.shape[1]))
    for index, alpha in enumerate(alphas):
        columns = best == index
        if columns.any():
            predictions[:, columns] = test_basis @ ((s / (s**2 + alpha))[:, None] * projected[:, columns])
    return predictions, alphas[best]


def wordless_delay_sources(word_tr: np.ndarray, runs: np.ndarray, kept: np.ndarray, delays: list[int]) -> int:
    """Count the kept TRs whose delayed features come from a TR without words (NaN features)."""
    wordless = np.bincount(word_tr, minlength=len(runs)) == 0
    reaches = np.zeros(len(runs), bool)
    for delay in delays:
        reaches[delay:] |= wordless[: len(runs) - delay]
    return int((reaches & kept).sum())


def fold_design(
    word_features: np.ndarray,
    word_tr: np.ndarray,
    runs: np.ndarray,
    kept: np.ndarray,
    training_tr: np.ndarray,
    settings: dict[str, Any],
) -> np.ndarray:
    """The 40-column TR design of one outer fold (kept TRs only, z-scored per run).

    Parameters
    ----------
    word_features : array of shape (n_words, n_features)
    word_tr : array of shape (n_words,)
        Index of each word's TR in the full timeline.
    runs : array of shape (n_trs,)
    kept : bool array of shape (n_trs,)
    training_tr : bool array of shape (n_trs,)
        Kept TRs in this fold's training block.
    """
    mean, axes = principal_axes(word_features[training_tr[word_tr]], settings["n_components"])
    per_tr = tr_average((word_features - mean) @ axes.T, word_tr, len(runs))
    delayed = delay_features(per_tr, settings["delays"])
    design = np.empty_like(delayed)
    for run in pd.unique(runs):
        rows = (runs == run) & kept
        design[rows] = zscore_filled(delayed[rows])
    return design[kept]


def outer_folds(runs_kept: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """Outer fold label per kept TR."""
    if settings["fold_scheme"] == "run":
        return pd.factorize(runs_kept)[0]
    return contiguous_folds(len(runs_kept), settings["n_folds"])


def boundary_trimmed(
    train: np.ndarray, test: np.ndarray, fold: int, n_folds: int, skip: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop ``skip`` TRs at the train/test boundaries by the original code's rule."""
    if fold == 0:
        return train[skip:], test
    if fold == n_folds - 1:
        return train[: len(train) - skip], test
    return train, test[skip : len(test) - skip]


def outer_splits(
    response_rows: pd.DataFrame, settings: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The kept TRs, their outer fold labels, and per fold the (train, test) positions
    among the kept TRs after boundary trimming.

    Kept TRs are those not marked ``trimmed`` by the reader, or else the run-edge trimming
    of ``settings``.
    """
    runs = response_rows["run"].to_numpy()
    if "trimmed" in response_rows:
        kept = ~response_rows["trimmed"].to_numpy(bool)
    else:
        kept = kept_tr_mask(runs, settings["trim_start"], settings["trim_end"])
    fold_of = outer_folds(runs[kept], settings)
    n_folds = int(fold_of.max()) + 1
    splits = [
        boundary_trimmed(
            np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k), k, n_folds, settings["boundary_trs"]
        )
        for k in range(n_folds)
    ]
    return kept, fold_of, splits


def _word_tr_index(stimuli: pd.DataFrame, response_rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if "response_id" not in stimuli:
        raise DataError(
            "Wehbe2014 stimuli lack the response_id column mapping each word to its TR; "
            "rebuild the stimuli table with the dataset reader."
        )
    tr_ids = pd.Index(response_rows["stimulus_id"].astype(str))
    mapped = stimuli["response_id"].notna().to_numpy()
    positions = tr_ids.get_indexer(stimuli.loc[mapped, "response_id"].astype(str))
    if (positions < 0).any():
        raise DataError(
            f"{int((positions < 0).sum())} words point to TR ids absent from the responses; "
            "the stimuli and responses were made from different files."
        )
    return np.flatnonzero(mapped), positions


def fit_toneva(
    features: np.ndarray,
    responses: np.ndarray,
    stimuli: pd.DataFrame,
    response_rows: pd.DataFrame,
    neuroids: pd.DataFrame,
    options: dict | None = None,
) -> EncodingResult:
    """Score one layer on a word-by-word time series (Wehbe2014) by the Toneva pipeline.

    Parameters
    ----------
    features : array of shape (n_words, n_features)
        One row per word, in stimuli order.
    responses : array of shape (n_trs, n_neuroids)
        Every TR of every run in time order (the edge TRs included: their features feed
        the delays; their responses are ignored and may be NaN).
    stimuli : DataFrame
        Words with ``response_id``: the id of the TR the word falls in (NaN: none).
    response_rows : DataFrame
        One row per TR: ``stimulus_id`` (the TR id) and ``run``; an optional boolean
        ``trimmed`` column overrides the ``trim_start``/``trim_end`` rule.
    neuroids : DataFrame
        ``neuroid_id`` and ``subject`` per response column.
    options : dict
        The aw2024 options; the ``toneva`` section (:data:`SECTION`) configures this.

    Returns
    -------
    EncodingResult
        ``neuroids``: r (mean over folds), ``r_fold_<k>``, ``alpha`` (median chosen
        penalty over folds). ``score``: mean over subjects of the subject's mean voxel r.
    """
    settings = resolve_toneva_options(options)
    features = np.asarray(features, dtype=np.float64)
    responses = np.asarray(responses, dtype=np.float64)
    if not np.all(np.isfinite(features)):
        raise DataError("Wehbe2014: the activations have non-finite values. Re-extract the layer in float32.")
    if len(responses) != len(response_rows) or responses.shape[1] != len(neuroids):
        raise DataError(
            f"Wehbe2014: responses {responses.shape} do not match {len(response_rows)} TRs x {len(neuroids)} neuroids."
        )
    runs = response_rows["run"].to_numpy()
    kept, fold_of, splits = outer_splits(response_rows, settings)
    word_rows, word_tr = _word_tr_index(stimuli, response_rows)
    word_features = features[word_rows]
    wordless = wordless_delay_sources(word_tr, runs, kept, settings["delays"])
    if wordless:
        logger.warning(
            "Wehbe2014: %d kept TRs take a delayed copy of a TR without words; as in the paper's "
            "code, each such run's design columns z-score to NaN and are set to 0, so the run "
            "carries no features. Check time_words_fmri.npy against time_fmri.npy.",
            wordless,
        )
    observed = responses[kept]
    complete = np.isfinite(observed).all(axis=0)
    observed = observed[:, complete]
    kept_index = np.flatnonzero(kept)
    n_folds = len(splits)
    r = np.full((n_folds, observed.shape[1]), np.nan)
    chosen = np.full((n_folds, observed.shape[1]), np.nan)
    for fold in range(n_folds):
        training_tr = np.zeros(len(runs), bool)
        training_tr[kept_index[fold_of != fold]] = True
        design = fold_design(word_features, word_tr, runs, kept, training_tr, settings)
        train, test = splits[fold]
        predictions, chosen[fold] = ridge_cv_predict(
            zscore_filled(design[train]),
            zscore_filled(observed[train]),
            zscore_filled(design[test]),
            settings["alphas"],
            settings["inner_folds"],
        )
        r[fold] = pearson_columns(predictions, zscore_filled(observed[test]))
    return _toneva_result(r, chosen, neuroids.loc[complete], int((~complete).sum()), wordless, settings)


def _toneva_result(
    r: np.ndarray, chosen: np.ndarray, neuroids: pd.DataFrame, n_dropped: int, n_wordless: int, settings: dict
) -> EncodingResult:
    table = neuroids[["neuroid_id", "subject"]].reset_index(drop=True)
    table.insert(0, "partition", "all")
    table["r"] = r.mean(axis=0)
    table["alpha"] = np.median(chosen, axis=0)
    for fold in range(len(r)):
        table[f"r_fold_{fold}"] = r[fold]
        table[f"alpha_fold_{fold}"] = chosen[fold]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        subject_scores = table.groupby("subject")["r"].mean()
        fold_scores = [table.groupby("subject")[f"r_fold_{k}"].mean().mean() for k in range(len(r))]
    folds = pd.DataFrame({"partition": "all", "fold": range(len(r)), "test_score": fold_scores, "inner_score": np.nan})
    details = {
        "n_neuroids_dropped_nan": n_dropped,
        "n_neuroids_constant": int(np.isnan(table["r"]).sum()),
        "n_kept_trs_wordless_delay": n_wordless,
        "subject_scores": {str(k): float(v) for k, v in subject_scores.items()},
        "subject_mad": median_absolute_deviation(subject_scores.to_numpy()),
        "aggregation": "Pearson r per voxel averaged over folds, then over voxels per subject, then over subjects",
        "toneva": settings,
    }
    return EncodingResult(neuroids=table, folds=folds, score=float(subject_scores.mean()), details=details)
