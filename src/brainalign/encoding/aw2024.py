"""The paper's encoding protocol (``aw2024``): Brain-Score's ``linear_pearsonr`` metric.

What brainscore-language does for Pereira2018 and Blank2014, and what this module
reproduces on the same arrays:

- ``ShuffleSplit(n_splits=10, train_size=0.9, random_state=1)`` over the presentations
  in the order the response assembly stores them (no stratification, no grouping). Our
  readers sort rows into reading order and keep the stored position in ``assembly_row``;
  the splits are drawn over that order and mapped back (stimuli tables without the
  column, such as the demo's, are taken to be stored in their given order);
- per split, ordinary least squares with an intercept (scikit-learn ``LinearRegression``:
  the minimum-norm solution when features outnumber training samples) from all features
  to all neuroids, on the training rows in ``stimulus_id`` order (Brain-Score's
  regression sorts them so), and Pearson r per neuroid on the test presentations;
- per split, the median over all neuroids, pooled over subjects (NaN r skipped, as
  xarray's ``median`` does), then the mean over splits;
- Pereira2018's two experiments are separate benchmarks (neuroids with missing values in
  an experiment are dropped there); the dataset score is their mean.

The paper's activations are float32 and scikit-learn fits in the features' dtype (it casts
the responses to it), so ``fit_precision: float32`` (the default) runs scikit-learn's
``LinearRegression`` itself on float32 features: with more features than training rows
its float32 minimum-norm fit differs from the exact one in the third or fourth digit, and
only the same computation reproduces it. ``fit_precision: float64`` fits in float64 with
the ``solver`` option: ``svd`` never forms regression weights (one SVD of the centred
training features per split gives the linear map from centred training responses to
test predictions, applied to all neuroids at once, in batches); ``sklearn`` runs
``LinearRegression`` on float64 features.
Time series reading paradigms (Wehbe2014) are scored by :mod:`brainalign.encoding.toneva`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import ShuffleSplit

from brainalign.encoding.result import EncodingResult
from brainalign.errors import ConfigError, DataError
from brainalign.options import resolve_options
from brainalign.stats import median_absolute_deviation, pearson_columns

SECTION = "protocols.aw2024"
"""The config section of this protocol's options (their defaults and descriptions)."""
DATASET_FACTS = ("datasets.*.time_series", "datasets.*.ceiling_pools")
"""The dataset's keys that the workflow passes with the protocol's options."""
NOT_FIT_SETTINGS = ("toneva", "ceiling", "readout", "published_ceilings")
"""Options of other jobs (the time-series pipeline, the ceiling, the activation file's readout)."""
FIT_PRECISIONS = ("float32", "float64")
LAYER_RULES = ("max_per_dataset", "max_per_partition", "committed")


def resolve_aw2024_options(options: dict | None) -> dict[str, Any]:
    """Return the ``protocols.aw2024`` options over their defaults; refuse unknown keys and values.

    Parameters
    ----------
    options : dict or None
        The protocol section of the config merged with the dataset facts (:data:`DATASET_FACTS`).
    """
    resolved = resolve_options(SECTION, options, DATASET_FACTS)
    for key, allowed in (("fit_precision", FIT_PRECISIONS), ("layer_rule", LAYER_RULES)):
        if resolved[key] not in allowed:
            raise ConfigError(
                f"protocols.aw2024.{key} is {resolved[key]!r}; use one of {list(allowed)} in config.yaml."
            )
    return resolved


def shuffle_splits(
    n_samples: int, n_splits: int, train_size: float, random_state: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Brain-Score's splits: scikit-learn ``ShuffleSplit`` over rows in their given order.

    Returns
    -------
    splits : list of (train indices, test indices)
    """
    splitter = ShuffleSplit(n_splits=n_splits, train_size=train_size, test_size=None, random_state=random_state)
    return list(splitter.split(np.zeros(n_samples)))


def stored_positions(stimuli: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Our positions within ``rows`` listed in the order the response assembly stores them.

    Parameters
    ----------
    stimuli : DataFrame
        The stimuli table; its optional ``assembly_row`` column holds each row's position
        in the stored assembly (within its partition, as Brain-Score selects it).
    rows : index array
        One partition's rows of ``stimuli``.

    Returns
    -------
    positions : index array into ``rows``; ``arange`` where the table has no ``assembly_row``.
    """
    if "assembly_row" not in stimuli:
        return np.arange(len(rows))
    stored = stimuli["assembly_row"].to_numpy()[rows]
    if len(np.unique(stored)) != len(stored):
        raise DataError(
            "aw2024 splits: the stimuli table repeats assembly_row values within a partition; "
            "regenerate the stimuli file with the dataset's prepare_stimuli rule."
        )
    return np.argsort(stored, kind="stable")


def split_order(stimuli: pd.DataFrame) -> str:
    """``stored`` when the splits follow the assembly's stored order, ``given`` otherwise."""
    return "stored" if "assembly_row" in stimuli else "given"


def partition_splits(
    stimuli: pd.DataFrame, rows: np.ndarray, options: dict[str, Any]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Brain-Score's splits of one partition, as positions within ``rows`` (our row order).

    ``ShuffleSplit`` is drawn over the rows in stored order (:func:`stored_positions`) and
    mapped back; within a split, rows are in ``stimulus_id`` order, the order in which
    Brain-Score's regression sees them (it matters to float32 rounding only).

    Parameters
    ----------
    stimuli : DataFrame
        The stimuli table (``stimulus_id``, optional ``assembly_row``), aligned with the rows.
    rows : index array
        The partition's rows of ``stimuli``.
    options : dict
        Resolved aw2024 options (``n_splits``, ``train_size``, ``random_state``).

    Returns
    -------
    splits : list of (train positions, test positions) into ``rows``
    """
    stored = stored_positions(stimuli, rows)
    ids = stimuli["stimulus_id"].to_numpy().astype(str)[rows]
    splits = []
    for train, test in shuffle_splits(len(rows), options["n_splits"], options["train_size"], options["random_state"]):
        train, test = stored[train], stored[test]
        splits.append((train[np.argsort(ids[train], kind="stable")], test[np.argsort(ids[test], kind="stable")]))
    return splits


def ols_prediction_operator(features_train: np.ndarray, features_test: np.ndarray) -> np.ndarray:
    """Linear map from centred training responses to OLS test predictions.

    ``operator @ (Y_train - Y_train.mean(0)) + Y_train.mean(0)`` equals the predictions of
    scikit-learn ``LinearRegression().fit(features_train, Y_train).predict(features_test)``:
    the intercept is handled by centring and the least-squares solution is the minimum-norm
    one. Singular values below ``max(n_train, n_features) * eps * largest`` count as zero
    (NumPy's ``pinv`` convention). SciPy's ``lstsq``, which scikit-learn calls, cuts at
    ``eps * largest`` instead: when features outnumber training samples, the direction that
    centring removes keeps a rounding-error singular value of a few ``eps * largest`` and
    is then inverted, adding a rounding-dependent component to the predictions. The result
    here is the exact minimum-norm solution, which scikit-learn matches whenever that
    spurious singular value falls under its cutoff (always when samples outnumber features).

    Parameters
    ----------
    features_train : array of shape (n_train, n_features)
    features_test : array of shape (n_test, n_features)

    Returns
    -------
    operator : array of shape (n_test, n_train)
    """
    features_train = np.asarray(features_train, dtype=np.float64)
    mean = features_train.mean(axis=0)
    centred = features_train - mean
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    tolerance = max(centred.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
    keep = s > tolerance
    projected = (np.asarray(features_test, dtype=np.float64) - mean) @ vt[keep].T
    return (projected / s[keep]) @ u[:, keep].T


def kernel_prediction_operator(gram: np.ndarray, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, float, int]:
    """The operator of :func:`ols_prediction_operator` from the Gram matrix ``X @ X.T``.

    Centring is applied to the Gram blocks; eigenvalues under ``100 * n_train * eps *
    largest`` (the accuracy of ``eigh``) count as zero, which removes the centring direction.

    Parameters
    ----------
    gram : array of shape (n_samples, n_samples)
        ``X @ X.T`` of the uncentred features.
    train, test : index arrays

    Returns
    -------
    operator : array of shape (n_test, n_train)
    smallest_ratio : float
        Smallest kept eigenvalue over the largest (squared inverse condition number);
        the operator's relative error is about ``n_train * eps / smallest_ratio``.
    n_kept : int
        Number of kept eigenvalues (``n_train - 1`` at full rank).
    """
    block = gram[np.ix_(train, train)]
    cross = gram[np.ix_(test, train)]
    column_mean = block.mean(axis=0)
    total_mean = column_mean.mean()
    centred = block - column_mean[:, None] - column_mean[None, :] + total_mean
    cross_centred = cross - cross.mean(axis=1, keepdims=True) - column_mean[None, :] + total_mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred)
    largest = max(eigenvalues[-1], 0.0)
    keep = eigenvalues > 100 * len(train) * np.finfo(np.float64).eps * largest
    if not keep.any():
        return np.zeros((len(test), len(train))), 0.0, 0
    basis = eigenvectors[:, keep]
    operator = ((cross_centred @ basis) / eigenvalues[keep]) @ basis.T
    return operator, float(eigenvalues[keep][0] / largest), int(keep.sum())


def split_operator(features: np.ndarray, gram: np.ndarray | None, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """OLS prediction operator of one split, by the cheapest accurate route.

    With at least as many features as training samples, the Gram route (one ``eigh`` of
    n_train x n_train, the Gram matrix shared by all splits) is used when the centred
    training features have full row rank and are well conditioned (smallest kept
    eigenvalue above 1e-6 of the largest, so the operator is accurate to ~1e-7); the SVD
    of the features is used otherwise.
    """
    if gram is not None:
        operator, smallest_ratio, n_kept = kernel_prediction_operator(gram, train, test)
        if n_kept == len(train) - 1 and smallest_ratio > 1e-6:
            return operator
    return ols_prediction_operator(features[train], features[test])


def predict_with_operator(operator: np.ndarray, responses_train: np.ndarray, backend: str = "numpy") -> np.ndarray:
    """Apply a prediction operator to (batches of) training responses.

    Parameters
    ----------
    operator : array of shape (n_test, n_train)
    responses_train : array of shape (n_train, n_neuroids)
    backend : str
        ``numpy``, or a himalaya backend name (``torch``, ``torch_cuda``, ``cupy``) for the
        matrix product; the result comes back as a NumPy array.

    Returns
    -------
    predictions : array of shape (n_test, n_neuroids), float64
    """
    responses_train = np.asarray(responses_train, dtype=np.float64)
    mean = responses_train.mean(axis=0)
    centred = responses_train - mean
    if backend == "numpy":
        return operator @ centred + mean
    from himalaya.backend import set_backend

    module = set_backend(backend, on_error="raise")
    product = module.matmul(module.asarray(operator, dtype="float64"), module.asarray(centred, dtype="float64"))
    return module.to_numpy(product) + mean


def sklearn_predictions(
    features_train: np.ndarray, responses_train: np.ndarray, features_test: np.ndarray
) -> np.ndarray:
    """Predictions of scikit-learn ``LinearRegression`` itself, as Brain-Score computes them.

    One LAPACK ``gelsd`` with every neuroid as a right-hand side, in the features' dtype
    (scikit-learn casts the responses to it); reproduces Brain-Score's numbers exactly
    where features outnumber samples (see :func:`ols_prediction_operator`).
    """
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(features_train, responses_train)
    return model.predict(features_test).astype(np.float64)


def split_correlations(
    features: np.ndarray,
    responses: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    backend: str = "numpy",
    neuroid_batch: int = 10000,
    solver: str = "svd",
    fit_precision: str = "float64",
) -> np.ndarray:
    """Pearson r per (split, neuroid) of OLS predictions on each split's test rows.

    Parameters
    ----------
    features : array of shape (n_samples, n_features)
    responses : array of shape (n_samples, n_neuroids)
    splits : list of (train indices, test indices)
    backend : str
        Array backend of the large matrix product (see :func:`predict_with_operator`).
    neuroid_batch : int
        Neuroids predicted at once (bounds memory).
    solver : {"svd", "sklearn"}
        ``svd``: one factorisation per split shared by all neuroids (fast, exact minimum
        norm; see :func:`split_operator`);
        ``sklearn``: scikit-learn ``LinearRegression`` per split and batch.
    fit_precision : {"float64", "float32"}
        ``float32``: scikit-learn ``LinearRegression`` on float32 features whatever
        ``solver`` says (the paper's arithmetic; see the module docstring).

    Returns
    -------
    r : array of shape (n_splits, n_neuroids); NaN where a test column is constant
    """
    n_neuroids = responses.shape[1]
    r = np.full((len(splits), n_neuroids), np.nan)
    if solver not in ("svd", "sklearn"):
        raise ConfigError(f"protocols.aw2024.solver is {solver!r}; use 'svd' (fast) or 'sklearn' (reference).")
    if fit_precision == "float32":
        solver = "sklearn"
    features = np.asarray(features, dtype=np.float32 if fit_precision == "float32" else np.float64)
    wide = solver == "svd" and splits and features.shape[1] >= len(splits[0][0])
    gram = features @ features.T if wide else None
    for index, (train, test) in enumerate(splits):
        if solver == "svd":
            operator = split_operator(features, gram, train, test)
        for start in range(0, n_neuroids, neuroid_batch):
            batch = slice(start, start + neuroid_batch)
            if solver == "svd":
                predicted = predict_with_operator(operator, responses[train, batch], backend)
            else:
                predicted = sklearn_predictions(features[train], responses[train, batch], features[test])
            r[index, batch] = pearson_columns(predicted, responses[test, batch])
    return r


def _check_inputs(features: np.ndarray, responses: np.ndarray, stimuli: pd.DataFrame, neuroids: pd.DataFrame) -> None:
    if features.ndim != 2 or responses.ndim != 2:
        raise DataError(f"aw2024 fit: features and responses must be 2-D, got {features.shape} and {responses.shape}.")
    if len(features) != len(stimuli) or len(responses) != len(stimuli):
        raise DataError(
            f"aw2024 fit: {len(features)} feature rows and {len(responses)} response rows for "
            f"{len(stimuli)} stimuli; rows must be aligned 1:1 in stimuli order (use brainalign.io.align_rows)."
        )
    if responses.shape[1] != len(neuroids):
        raise DataError(f"aw2024 fit: {responses.shape[1]} response columns for {len(neuroids)} neuroids.")
    if not np.all(np.isfinite(features)):
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise DataError(
            f"aw2024 fit: the activations have non-finite values in {len(bad)} stimuli "
            f"(first: {stimuli['stimulus_id'].iloc[bad[0]]!r}). Re-extract the layer in float32."
        )


def fit_aw2024(
    features: np.ndarray,
    responses: np.ndarray,
    stimuli: pd.DataFrame,
    response_rows: pd.DataFrame,
    neuroids: pd.DataFrame,
    options: dict | None = None,
) -> EncodingResult:
    """Score one layer under the paper's protocol (Brain-Score ``linear_pearsonr``).

    Parameters
    ----------
    features : array of shape (n_units, n_features)
        One row per stimulus, in stimuli-table order.
    responses : array of shape (n_rows, n_neuroids)
        For non-time-series datasets, rows aligned 1:1 with ``stimuli``.
    stimuli : DataFrame
        The stimuli table (``stimulus_id``, ``partition``, ...).
    response_rows : DataFrame
        Per-row columns of ``responses`` (used by the time-series pipeline).
    neuroids : DataFrame
        ``neuroid_id``, ``subject`` (and ``roi``) per response column.
    options : dict
        The ``protocols.aw2024`` options of the config schema (sentence data only: time series are scored by
        :func:`brainalign.encoding.toneva.fit_toneva`).

    Returns
    -------
    EncodingResult
        ``neuroids``: one row per (partition, scored neuroid) with ``r`` (mean over splits),
        ``r_fold_<k>`` and ``alpha`` (NaN). ``folds``: ``test_score`` per (partition, fold).
        ``score``: mean over partitions of (mean over splits of the median over neuroids).
        ``details``: counts of dropped and constant neuroids, per-subject scores and their
        median absolute deviation (the paper's error bars).
    """
    if (options or {}).get("time_series"):
        raise ConfigError(
            "fit_aw2024 scores sentence data; the paper's time-series pipeline is "
            "brainalign.encoding.toneva.fit_toneva (brainalign.encoding.registry picks it)."
        )
    options = resolve_aw2024_options(options)
    features = np.asarray(features)
    responses = np.asarray(responses)
    _check_inputs(features, responses, stimuli, neuroids)
    partitions = stimuli["partition"].to_numpy() if "partition" in stimuli else np.full(len(stimuli), "all")
    neuroid_rows, fold_rows, details = [], [], {"partitions": {}}
    for partition in pd.unique(partitions):
        rows = np.flatnonzero(partitions == partition)
        part_responses = responses[rows]
        complete = np.isfinite(part_responses).all(axis=0)
        splits = partition_splits(stimuli, rows, options)
        r = split_correlations(
            features[rows],
            part_responses[:, complete],
            splits,
            options["backend"],
            options["neuroid_batch"],
            options["solver"],
            options["fit_precision"],
        )
        with warnings.catch_warnings():  # all-NaN slices are counted, not warned about
            warnings.simplefilter("ignore", RuntimeWarning)
            fold_scores = np.nanmedian(r, axis=1) if r.size else np.full(len(splits), np.nan)
            neuroid_r = np.nanmean(r, axis=0)
        for fold, score in enumerate(fold_scores):
            fold_rows.append({"partition": partition, "fold": fold, "test_score": float(score), "inner_score": np.nan})
        table = neuroids.loc[complete, ["neuroid_id", "subject"]].reset_index(drop=True)
        table.insert(0, "partition", partition)
        table["r"] = neuroid_r
        table["alpha"] = np.nan
        for fold in range(len(splits)):
            table[f"r_fold_{fold}"] = r[fold]
        neuroid_rows.append(table)
        details["partitions"][str(partition)] = {
            "n_stimuli": int(len(rows)),
            "n_neuroids_scored": int(complete.sum()),
            "n_neuroids_dropped_nan": int((~complete).sum()),
            "n_neuroid_splits_constant": int(np.isnan(r).sum()),
            "score": float(np.mean(fold_scores)),
            "split_sem": float(np.std(fold_scores, ddof=1) / np.sqrt(len(fold_scores)))
            if len(fold_scores) > 1
            else np.nan,
        }
    folds = pd.DataFrame(fold_rows)
    neuroid_table = pd.concat(neuroid_rows, ignore_index=True)
    score = float(np.mean([p["score"] for p in details["partitions"].values()]))
    subject_scores = _subject_scores(neuroid_table)
    details.update(
        n_neuroids_dropped_nan=sum(p["n_neuroids_dropped_nan"] for p in details["partitions"].values()),
        n_neuroid_splits_constant=sum(p["n_neuroid_splits_constant"] for p in details["partitions"].values()),
        subject_scores=subject_scores,
        subject_mad=median_absolute_deviation(list(subject_scores.values())),
        aggregation="median over neuroids pooled across subjects per split; mean over splits; mean over partitions",
        split_order=split_order(stimuli),
        fit_precision=options["fit_precision"],
        options={k: v for k, v in options.items() if k not in NOT_FIT_SETTINGS},
    )
    return EncodingResult(neuroids=neuroid_table, folds=folds, score=score, details=details)


def _subject_scores(neuroid_table: pd.DataFrame) -> dict[str, float]:
    """Per subject: the protocol's score restricted to that subject's neuroids.

    Median over the subject's neuroids per split, mean over splits, mean over the
    partitions the subject took part in.
    """
    fold_columns = [c for c in neuroid_table.columns if c.startswith("r_fold_")]
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for subject, table in neuroid_table.groupby("subject", sort=True):
            per_partition = [
                np.nanmean(np.nanmedian(part[fold_columns].to_numpy(), axis=0))
                for _, part in table.groupby("partition", sort=False)
            ]
            scores[str(subject)] = float(np.mean(per_partition))
    return scores
