"""The ``robust`` encoding protocol: leakage-free CV, per-neuroid ridge, control bands, statistics.

For every partition (e.g. Pereira2018's two experiments) and every outer fold:

1. Folds hold out whole cv groups at the unit of leakage (sentence data: the stimuli
   column ``cv_groups`` names, by default the reader's ``cv_group``: topics for
   Pereira2018, stories for Blank2014) or contiguous whole runs with ``trim_trs`` TRs
   dropped from training on each side (time series); see :mod:`cv`.
2. The joint model is banded ridge (:mod:`banded`) with the LLM layer as one band and
   each control band (:mod:`controls`) as another; the penalty per neuroid and the band
   weights are chosen by an inner CV on the training rows, grouped like the outer one.
   All preprocessing is fitted on the training rows.
3. The controls-only model is the same fit without the LLM band, the LLM-only model
   the same fit without the control bands.

The headline is the LLM's own contribution: per neuroid and fold, the held-out gain in
signed R^2 (``1 - SSE / SST`` on the test rows, negative when worse than the test mean)
of the joint model over the controls-only model (de Heer et al. 2017; LeBel et al.
2021); without control bands, the joint model's R^2. The joint, controls-only and
LLM-only R^2 (``score_joint``, ``score_controls``, ``score_llm``) and the correlation
scale (``r``, ``r_controls``, ``r_unique = r - r_controls``) are reported beside it.

Time series (words -> TRs): unit features are averaged within each response row,
rows without units get zeros, and the LLM band and the word-rate band get FIR delays
(``delays``, in TRs, within runs).

``test_score`` of a fold is the median over neuroids of the headline on the held-out
rows, ``inner_score`` the median of the same gain in inner-CV R^2 at the chosen penalties
(training rows only), so that :func:`choose_layers` picks a layer without looking at test
data. The score of a layer is the mean over folds, then over partitions. Every fold
keeps its crossed bootstrap scores (subjects x stimulus groups) and permutation scores
(:mod:`resampling`, on the held-out predictions of the joint and the controls-only
models), so that the CI and p-value of any layer choice, the nested one included, are
those of the score reported (:func:`fold_inference`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from himalaya.backend import get_backend, set_backend
from scipy import sparse

from brainalign.encoding.banded import BandedFit, fit_predict_banded
from brainalign.encoding.controls import ROW_INDEXED_CONTROLS, control_bands, index_within_group, word_counts
from brainalign.encoding.cv import protocol_splits
from brainalign.encoding.metrics import r2_columns
from brainalign.encoding.resampling import (
    HeldOut,
    fold_bootstrap_scores,
    fold_permutation_scores,
    headline_columns,
    median_over_neuroids,
    score_interval,
    score_p_value,
)
from brainalign.encoding.result import EncodingResult
from brainalign.errors import ConfigError, DataError
from brainalign.options import resolve_options
from brainalign.stats import PERMUTATION_SCHEMES, monte_carlo_p_min, pearson_columns

logger = logging.getLogger(__name__)

SECTION = "protocols.robust"
"""The config section of this protocol's options (their defaults and descriptions)."""
DATASET_FACTS = (
    "datasets.*.time_series",
    "datasets.*.permutation",
    "datasets.*.cv_groups",
    "datasets.*.ceiling_pools",
)
"""The dataset's keys that the workflow passes with the protocol's options."""


def resolve_robust_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Return the ``protocols.robust`` options and dataset facts over their defaults; refuse unknown keys.

    ``permutation: auto`` becomes the dataset's scheme (circular shifts for time series,
    group swaps otherwise).
    """
    resolved = resolve_options(SECTION, options, DATASET_FACTS)
    if resolved["alphas"]["min_exp"] > resolved["alphas"]["max_exp"]:
        raise ConfigError(f"protocols.robust.alphas: min_exp must not exceed max_exp, got {resolved['alphas']}")
    if resolved["permutation"] == "auto":
        resolved["permutation"] = "circular_shift" if resolved["time_series"] else "group_swap"
    if resolved["permutation"] not in PERMUTATION_SCHEMES:
        raise ConfigError(
            f"datasets.<name>.permutation is {resolved['permutation']!r}; use one of {['auto', *PERMUTATION_SCHEMES]}"
        )
    return resolved


def fit_backend(device: str, cpu_backend: str) -> str:
    """The himalaya backend of a robust fit on ``device`` (auto: CUDA when PyTorch sees a GPU)."""
    if device == "cpu":
        return cpu_backend
    import torch  # only GPU fits need it

    if torch.cuda.is_available():
        return "torch_cuda"
    if device == "auto":
        return cpu_backend
    raise ConfigError(
        "device cuda (protocols.robust.device, or --device of brainalign encode) needs a CUDA GPU, but PyTorch sees "
        "none "
        "here (torch.cuda.is_available() is False): run on a GPU node with a CUDA build of PyTorch, or use device "
        "auto or cpu"
    )


def alpha_grid(alphas: dict[str, Any]) -> np.ndarray:
    """The penalty grid ``np.logspace(min_exp, max_exp, n)``."""
    return np.logspace(alphas["min_exp"], alphas["max_exp"], int(alphas["n"]))


@contextlib.contextmanager
def himalaya_backend(name: str) -> Iterator[None]:
    """Use a himalaya backend inside the block and restore the previous one after."""
    previous = get_backend()
    set_backend(name, on_error="raise")
    try:
        yield
    finally:
        set_backend(previous)


# --------------------------------------------------------------------------- design
def fir_delays(matrix: np.ndarray, runs: np.ndarray, delays: list[int]) -> np.ndarray:
    """Stack copies of ``matrix`` shifted down by each delay within runs (zeros before a run starts)."""
    position = index_within_group(runs)
    shifted = []
    for delay in delays:
        copy = np.zeros_like(matrix)
        if delay < len(matrix):
            copy[delay:] = matrix[: len(matrix) - delay]
        copy[position < delay] = 0.0
        shifted.append(copy)
    return np.hstack(shifted)


def check_run_order(runs: np.ndarray, times: np.ndarray, source: str) -> None:
    """Require response rows in temporal order with each run contiguous."""
    change = np.flatnonzero(runs[1:] != runs[:-1]) + 1
    if len(np.unique(runs)) != len(change) + 1:
        raise DataError(f"{source}: runs are interleaved; sort response rows by run, then time")
    same_run = runs[1:] == runs[:-1]
    if np.any(np.diff(times)[same_run] <= 0):
        raise DataError(f"{source}: times do not increase within a run; sort response rows by run, then time")


def row_average(row_of_unit: np.ndarray, n_rows: int) -> sparse.csr_matrix:
    """Sparse (n_rows x n_units) matrix averaging the units of each row (empty rows stay 0)."""
    counts = np.bincount(row_of_unit, minlength=n_rows).astype(np.float64)
    weights = 1.0 / counts[row_of_unit]
    return sparse.csr_matrix((weights, (row_of_unit, np.arange(len(row_of_unit)))), shape=(n_rows, len(row_of_unit)))


def sentence_design(features: np.ndarray, stimuli: pd.DataFrame, options: dict[str, Any]) -> dict[str, Any]:
    """Bands, folds groups and resampling units of sentence data (rows = stimuli).

    The OASM band links rows of one context group that also share a cv group, so that no
    held-out row has a feature in common with a training row (a context group that spans
    cv groups, e.g. a topic under passage-grouped CV, would carry held-out information
    across the split).
    """
    column = options["cv_groups"]
    if column not in stimuli:
        raise ConfigError(
            f"datasets.<name>.cv_groups is {column!r}, but the stimuli table has no such column "
            f"(columns: {sorted(stimuli.columns)})"
        )
    lengths = stimuli["n_words"].to_numpy(float) if "n_words" in stimuli else word_counts(stimuli["text"].to_numpy())
    positions = stimuli["position"].to_numpy(float)
    groups = stimuli[column].astype(str).to_numpy()
    streams = stimuli["context_group"].astype(str).to_numpy()
    within_split = np.char.add(np.char.add(streams, "\x00"), groups)
    controls = control_bands(options["controls"], lengths, positions, within_split, options["oasm_width"])
    return {
        "llm": features,
        "controls": controls,
        "cv_groups": groups,
        "partitions": stimuli["partition"].astype(str).to_numpy(),
        "units": groups,
        "streams": streams,
        "row_ids": stimuli["stimulus_id"].astype(str).to_numpy(),
        "measured": np.ones(len(groups), dtype=bool),
        "n_units_without_row": 0,
    }


def time_series_design(
    features: np.ndarray, stimuli: pd.DataFrame, response_rows: pd.DataFrame, options: dict[str, Any]
) -> dict[str, Any]:
    """Bands, folds groups and resampling units of time series (rows = TRs).

    Rows flagged ``trimmed`` (run edges without a kept measurement) are neither trained nor
    tested on, but their words still feed the delayed features of the rows after them.
    """
    if "response_id" not in stimuli:
        raise DataError("stimuli table: time-series data needs a 'response_id' column mapping units to response rows")
    for column in ("stimulus_id", "run"):
        if column not in response_rows:
            raise DataError(f"response rows: time-series data needs a '{column}' column")
    runs = response_rows["run"].astype(str).to_numpy()
    times = response_rows["time"].to_numpy(float) if "time" in response_rows else np.arange(len(runs), dtype=float)
    check_run_order(runs, times, "response rows")
    row_of_unit = pd.Index(response_rows["stimulus_id"].astype(str)).get_indexer(stimuli["response_id"].astype(str))
    has_row = row_of_unit >= 0
    if not has_row.any():
        raise DataError(
            "stimuli.response_id matches no response row stimulus_id: check that both come from the same dataset "
            "preparation"
        )
    averaging = row_average(row_of_unit[has_row], len(runs))
    llm = fir_delays(np.asarray(averaging @ features[has_row]), runs, options["delays"])
    units_per_row = np.bincount(row_of_unit[has_row], minlength=len(runs)).astype(float)
    positions = index_within_group(runs)
    controls = control_bands(options["controls"], units_per_row, positions, runs, options["oasm_width"])
    if "length" in controls:
        # Word rate drives the BOLD response through the same haemodynamic lag as content.
        controls["length"] = fir_delays(controls["length"], runs, options["delays"])
    partitions = (
        response_rows["partition"].astype(str).to_numpy() if "partition" in response_rows else np.full(len(runs), "all")
    )
    blocks = np.array([f"{run}:{int(p) // options['block_trs']}" for run, p in zip(runs, positions, strict=True)])
    return {
        "llm": llm,
        "controls": controls,
        "cv_groups": runs,
        "partitions": partitions,
        "units": blocks,
        "streams": runs,
        "row_ids": response_rows["stimulus_id"].astype(str).to_numpy(),
        "measured": ~response_rows["trimmed"].to_numpy(bool)
        if "trimmed" in response_rows
        else np.ones(len(runs), dtype=bool),
        "n_units_without_row": int((~has_row).sum()),
    }


# --------------------------------------------------------------------------- fitting
def valid_neuroids(responses: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Neuroids that are finite and not constant on these rows; counts of the two exclusions."""
    finite = np.isfinite(responses).all(axis=0)
    spread = np.zeros(responses.shape[1])
    spread[finite] = responses[:, finite].std(axis=0) / (1 + np.abs(responses[:, finite]).max(axis=0))
    constant = finite & (spread <= 1e-12)
    return finite & ~constant, int((~finite).sum()), int(constant.sum())


def _order_by_unit(units: np.ndarray) -> np.ndarray:
    """Stable order that makes each unit's rows contiguous (required by the permutations)."""
    return np.argsort(pd.factorize(units)[0], kind="stable")


def fold_splits(cv_groups: np.ndarray, options: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray, list]]:
    """Outer (train, test) splits of a partition, each with its inner splits of the training rows."""
    time_series = options["time_series"]
    splits = protocol_splits(cv_groups, options["n_outer_folds"], time_series, options["trim_trs"])
    return [
        (train, test, protocol_splits(cv_groups[train], options["n_inner_folds"], time_series, options["trim_trs"]))
        for train, test in splits
    ]


def _banded_settings(options: dict[str, Any]) -> dict[str, Any]:
    return dict(
        alphas=alpha_grid(options["alphas"]),
        n_iter=options["n_band_weights"],
        random_state=options["random_state"],
        neuroid_batch=options["neuroid_batch"],
        solver=options["solver"],
    )


FOLD_MEASURES = ("score", "score_joint", "score_controls", "score_llm", "r", "r_controls")
"""Per-neuroid measures of every outer fold: the headline (R^2 gain), each model's R^2, and
the joint and controls-only r. Neuroid tables hold ``<measure>_fold_<k>`` and their mean."""

SCORE_COLUMNS = {
    "score": "test_score",
    "score_joint": "test_score_joint",
    "score_controls": "test_score_controls",
    "score_llm": "test_score_llm",
    "r_joint": "test_r",
    "r_controls": "test_r_controls",
    "r_unique": "test_r_unique",
}
"""Score of a layer (or of a nested choice) -> the fold column it averages (``test_<measure>``
holds the median over neuroids of a fold measure)."""
RESAMPLING_COLUMNS = ("bootstrap_scores", "permutation_scores")
"""Fold-table columns holding each fold's crossed bootstrap and permutation scores (lists)."""


def fit_fold(
    bands: list[np.ndarray],
    responses: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    inner: list,
    options: dict[str, Any],
    row_indexed: Sequence[bool] | None = None,
) -> BandedFit:
    """Banded ridge of one outer fold; predictions on the responses' scale (training mean added).

    A band flagged in ``row_indexed`` (one flag per band; none by default) has one column per
    row (OASM, see :func:`partition_controls`); the fold keeps only its training rows'
    columns. Its other columns would link held-out rows to training rows through rows in
    neither set (the trimmed gap of a contiguous split), and standardising such a nearly
    empty column blows its held-out values up by orders of magnitude.
    """
    settings = _banded_settings(options)
    pairs = list(zip(bands, row_indexed or [False] * len(bands), strict=True))
    train_bands = [band[np.ix_(train, train)] if flag else band[train] for band, flag in pairs]
    test_bands = [band[np.ix_(test, train)] if flag else band[test] for band, flag in pairs]
    fit = fit_predict_banded(train_bands, test_bands, responses[train], inner_cv=inner, **settings)
    fit.predictions = fit.predictions + responses[train].mean(axis=0)
    return fit


def partition_controls(design: dict[str, Any], rows: np.ndarray) -> tuple[list[np.ndarray], list[bool]]:
    """One partition's control bands, and which of them are row-indexed: those keep the
    partition's columns only (indexed like its rows), so that a fold can keep its training
    rows' columns (:func:`fit_fold`)."""
    bands, row_indexed = [], []
    for name, band in design["controls"].items():
        indexed = name in ROW_INDEXED_CONTROLS
        bands.append(band[np.ix_(rows, rows)] if indexed else band[rows])
        row_indexed.append(indexed)
    return bands, row_indexed


def controls_partition(
    design: dict[str, Any], rows: np.ndarray, responses: np.ndarray, options: dict[str, Any]
) -> dict[str, np.ndarray]:
    """The controls-only model in the outer folds of one partition.

    Returns
    -------
    dict
        ``predictions`` (n_rows x n_neuroids): each row's held-out prediction, from the
        fold that tests it; ``inner_scores`` (n_folds x n_neuroids): the inner-CV R^2 at the
        chosen penalties, on each fold's training rows.
    """
    controls, row_indexed = partition_controls(design, rows)
    predictions = np.full(responses.shape, np.nan)
    inner_scores = []
    for train, test, inner in fold_splits(design["cv_groups"][rows], options):
        fit = fit_fold(controls, responses, train, test, inner, options, row_indexed)
        predictions[test] = fit.predictions
        inner_scores.append(fit.inner_scores)
    return {"predictions": predictions, "inner_scores": np.vstack(inner_scores)}


def fold_measures(
    joint: np.ndarray, controls: np.ndarray | None, llm_only: np.ndarray, observed: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-neuroid ``FOLD_MEASURES`` of one fold's held-out predictions (controls None: no control bands)."""
    missing = np.full(observed.shape[1], np.nan)
    return {
        "score": headline_columns(joint, observed, controls),
        "score_joint": r2_columns(joint, observed),
        "score_controls": missing if controls is None else r2_columns(controls, observed),
        "score_llm": r2_columns(llm_only, observed),
        "r": pearson_columns(joint, observed),
        "r_controls": missing if controls is None else pearson_columns(controls, observed),
    }


def fit_partition(
    design: dict[str, Any],
    rows: np.ndarray,
    responses: np.ndarray,
    options: dict[str, Any],
    controls_fit: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Outer CV of one partition: per-fold scores, per-neuroid measures/alpha and held-out predictions.

    ``controls_fit`` is the controls-only model of :func:`controls_partition`, computed here
    when not given (and not at all without control bands).
    """
    llm = design["llm"][rows]
    controls, row_indexed = partition_controls(design, rows)
    units, streams = design["units"][rows], design["streams"][rows]
    folds = fold_splits(design["cv_groups"][rows], options)
    if controls and controls_fit is None:
        controls_fit = controls_partition(design, rows, responses, options)
    if controls:
        _check_controls_fit(controls_fit, len(folds), responses.shape)
    alpha_grid_edges = alpha_grid(options["alphas"])[[0, -1]]
    fold_rows, measures, fold_alphas, held_out = [], {name: [] for name in FOLD_MEASURES}, [], []
    for fold, (train, test, inner) in enumerate(folds):
        joint = fit_fold([llm, *controls], responses, train, test, inner, options, (False, *row_indexed))
        baseline = controls_fit["predictions"][test] if controls else None
        llm_only = (
            fit_fold([llm], responses, train, test, inner, options).predictions if controls else joint.predictions
        )
        fold_measure = fold_measures(joint.predictions, baseline, llm_only, responses[test])
        inner_gain = joint.inner_scores - (controls_fit["inner_scores"][fold] if controls else 0.0)
        fold_rows.append(
            {
                "fold": fold,
                "n_train": len(train),
                "n_test": len(test),
                **{f"test_{name}": float(median_over_neuroids(fold_measure[name])) for name in FOLD_MEASURES},
                "test_r_unique": float(median_over_neuroids(fold_measure["r"] - fold_measure["r_controls"])),
                "inner_score": float(median_over_neuroids(inner_gain)),
                "inner_score_joint": float(median_over_neuroids(joint.inner_scores)),
                "alphas_at_low_edge": int(np.isclose(joint.alphas, alpha_grid_edges[0], rtol=1e-3).sum()),
                "alphas_at_high_edge": int(np.isclose(joint.alphas, alpha_grid_edges[1], rtol=1e-3).sum()),
                "llm_band_weight": float(np.median(joint.band_weights[0])),
            }
        )
        for name in FOLD_MEASURES:
            measures[name].append(fold_measure[name])
        fold_alphas.append(joint.alphas)
        by_unit = _order_by_unit(units[test])
        held_out.append(
            HeldOut(
                joint.predictions[by_unit],
                responses[test][by_unit],
                pd.factorize(units[test][by_unit])[0],
                streams[test][by_unit],
                baseline=None if baseline is None else baseline[by_unit],
                # The permutation null moves the LLM band's part only: without control bands the
                # training mean stays put, with them the joint model's control part does too.
                tested=joint.band_predictions[0][by_unit],
            )
        )
    return {
        "folds": pd.DataFrame(fold_rows),
        "measures": {name: np.vstack(values) for name, values in measures.items()},
        "alphas": np.vstack(fold_alphas),
        "held_out": held_out,
    }


def _check_controls_fit(controls_fit: dict[str, np.ndarray], n_folds: int, shape: tuple[int, int]) -> None:
    """Refuse a controls-only fit made with other folds or on other rows."""
    if controls_fit["inner_scores"].shape != (n_folds, shape[1]) or controls_fit["predictions"].shape != shape:
        raise DataError(
            f"the controls-only fit has {controls_fit['inner_scores'].shape[0]} folds and predictions of shape "
            f"{controls_fit['predictions'].shape}, expected {n_folds} folds and {shape} (rows x neuroids): "
            "rerun fit_controls with the current robust options"
        )
    if np.isnan(controls_fit["predictions"]).any():
        raise DataError(
            "the controls-only fit lacks held-out predictions of some rows: rerun fit_controls on the current responses"
        )


def neuroid_table(neuroids: pd.DataFrame, keep: np.ndarray, partition: str, fitted: dict[str, Any]) -> pd.DataFrame:
    """One row per scored neuroid of a partition: each of ``FOLD_MEASURES`` (mean over folds and
    per fold), ``r_unique`` and the penalty."""
    table = neuroids.iloc[np.flatnonzero(keep)].reset_index(drop=True).copy()
    table["partition"] = partition
    measures = fitted["measures"]
    with warnings.catch_warnings():  # a measure undefined in every fold (no control bands) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        for name in FOLD_MEASURES:
            table[name] = np.nanmean(measures[name], axis=0)
        table["r_unique"] = np.nanmean(measures["r"] - measures["r_controls"], axis=0)
    # Geometric mean over folds: penalties live on a log grid.
    table["alpha"] = np.exp(np.log(fitted["alphas"]).mean(axis=0))
    for name in FOLD_MEASURES:
        for fold, values in enumerate(measures[name]):
            table[f"{name}_fold_{fold}"] = values
    return table


def layer_scores(folds: pd.DataFrame) -> dict[str, float]:
    """Every ``SCORE_COLUMNS`` score of a fold table: mean over folds, then over partitions."""
    per_partition = folds.groupby("partition", sort=False)[list(SCORE_COLUMNS.values())].mean()
    return {name: float(per_partition[column].mean()) for name, column in SCORE_COLUMNS.items()}


def fit_robust(
    features: np.ndarray,
    responses: np.ndarray,
    stimuli: pd.DataFrame,
    response_rows: pd.DataFrame,
    neuroids: pd.DataFrame,
    options: dict[str, Any] | None = None,
    controls: pd.DataFrame | None = None,
) -> EncodingResult:
    """Fit one layer's features to a dataset's responses under the robust protocol.

    Parameters
    ----------
    features : array of shape (n_units, n_features)
        Unit representations in stimuli-table order.
    responses : array of shape (n_response_rows, n_neuroids)
        Responses; NaN marks neuroids absent from a partition.
    stimuli : DataFrame
        The stimuli table (``stimulus_id, context_group, position, text, cv_group,
        partition``; time series also ``response_id``).
    response_rows : DataFrame
        One row per response row: ``stimulus_id`` and, for time series, ``run`` and
        ``time`` (sorted by run, then time).
    neuroids : DataFrame
        One row per neuroid (``neuroid_id``, ``subject``, ...).
    options : dict
        ``protocols.robust`` options and dataset facts; see :func:`resolve_robust_options`.
    controls : DataFrame or None
        The controls-only model from :func:`controls_only_fit` on the same data and options (it
        does not depend on the layer, so the workflow fits it once per dataset); None fits
        it here.

    Returns
    -------
    EncodingResult
        ``neuroids``: one row per (partition, scored neuroid) with each of
        ``FOLD_MEASURES`` (mean over folds and ``<measure>_fold_<k>``), ``r_unique`` and
        ``alpha``. ``folds``: one row per (partition, fold). ``score``: the headline, mean
        over partitions of the mean over folds of ``test_score``; its CI and p-value.
    """
    options = resolve_robust_options(options)
    features = np.asarray(features, dtype=np.float64)
    responses = np.asarray(responses, dtype=np.float64)
    design = build_design(features, responses, stimuli, response_rows, neuroids, options)
    subject_names, subject_of_neuroid = np.unique(neuroids["subject"].astype(str).to_numpy(), return_inverse=True)
    fold_tables, neuroid_tables, held_out, details_partitions = [], [], [], {}
    with himalaya_backend(fit_backend(options["device"], options["backend"])):
        for partition, rows, keep, n_non_finite, n_constant in scored_partitions(design, responses):
            controls_fit = (
                None
                if controls is None
                else _stored_controls(controls, partition, design["row_ids"][rows], neuroids, keep)
            )
            fitted = fit_partition(design, rows, responses[np.ix_(rows, np.flatnonzero(keep))], options, controls_fit)
            for fold in fitted["held_out"]:
                fold.subjects = subject_of_neuroid[keep]
            fold_tables.append(fitted["folds"].assign(partition=partition))
            neuroid_tables.append(neuroid_table(neuroids, keep, partition, fitted))
            held_out.append(fitted["held_out"])
            details_partitions[str(partition)] = {
                "n_rows": len(rows),
                "n_neuroids": int(keep.sum()),
                "n_neuroids_non_finite": n_non_finite,
                "n_neuroids_constant": n_constant,
            }
    folds = pd.concat(fold_tables, ignore_index=True)
    folds = folds[["partition", "fold"] + [c for c in folds.columns if c not in ("partition", "fold")]]
    bootstrap = fold_bootstrap_scores(held_out, len(subject_names), options["n_bootstrap"], options["random_state"])
    folds["bootstrap_scores"] = _per_fold(bootstrap)
    permutation = fold_permutation_scores(
        held_out, options["n_permutations"], options["permutation"], options["block_trs"], options["random_state"]
    )
    folds["permutation_scores"] = _per_fold(permutation) if permutation is not None else None
    scores = layer_scores(folds)

    low, high = int(folds["alphas_at_low_edge"].sum()), int(folds["alphas_at_high_edge"].sum())
    folds_per_partition = folds.groupby("partition", sort=False).size()
    n_neuroid_fits = int(sum(details_partitions[str(p)]["n_neuroids"] * n for p, n in folds_per_partition.items()))
    if low or high:
        logger.warning(
            "robust fit: %d of %d chosen penalties at the lower grid edge and %d at the upper edge "
            "(grid 1e%s..1e%s); widen protocols.robust.alphas if this is more than a few percent",
            low,
            n_neuroid_fits,
            high,
            options["alphas"]["min_exp"],
            options["alphas"]["max_exp"],
        )
    inference = fold_inference(folds, options["confidence_level"])
    details = {
        **{name: value for name, value in scores.items() if name != "score"},
        "score_inner": float(folds.groupby("partition", sort=False)["inner_score"].mean().mean()),
        "headline": HEADLINE if options["controls"] else HEADLINE_WITHOUT_CONTROLS,
        "controls": list(options["controls"]),
        "cv_groups": "runs (contiguous blocks)" if options["time_series"] else options["cv_groups"],
        "alpha_grid": {k: options["alphas"][k] for k in ("min_exp", "max_exp", "n")},
        "n_neuroid_fits": n_neuroid_fits,
        "alphas_at_low_edge": low,
        "alphas_at_high_edge": high,
        "n_units_without_response_row": design["n_units_without_row"],
        "partitions": details_partitions,
        "confidence_level": options["confidence_level"],
        "resampling": {
            "subjects": list(subject_names),
            "n_bootstrap": options["n_bootstrap"],
            "n_permutations": options["n_permutations"],
            "permutation": options["permutation"],
            "random_state": options["random_state"],
        },
        "p_min": inference["p_min"],
    }
    return EncodingResult(
        neuroids=pd.concat(neuroid_tables, ignore_index=True),
        folds=folds,
        score=scores["score"],
        ci_low=inference["ci_low"],
        ci_high=inference["ci_high"],
        p_value=inference["p_value"],
        details=details,
    )


def _per_fold(partitions: list[np.ndarray]) -> list[list[float]]:
    """One list of scores per fold row (partitions in order, folds in order), for the fold table."""
    return [row.tolist() for scores in partitions for row in scores]


def fold_inference(folds: pd.DataFrame, confidence_level: float) -> dict[str, float]:
    """CI, p-value and smallest attainable p of the score made of these folds (one row per
    (partition, fold), possibly each from another layer).

    Parameters
    ----------
    folds : DataFrame
        ``partition``, ``fold``, ``bootstrap_scores`` and ``permutation_scores`` (lists, or
        None without permutations) of the fold of the layer reported there.
    confidence_level : float

    Returns
    -------
    dict with ``ci_low``, ``ci_high``, ``p_value``, ``p_min``
    """
    missing = [column for column in RESAMPLING_COLUMNS if column not in folds]
    if missing:
        raise DataError(
            f"the robust layer fits lack the per-fold {missing}, which the CI and p-value of the reported score "
            "are made from: they were written by an earlier version; rerun fit_encoding for this model"
        )
    by_partition = [group for _, group in folds.groupby("partition", sort=False)]
    bootstrap = [
        np.array(part["bootstrap_scores"].tolist(), dtype=np.float64).reshape(len(part), -1) for part in by_partition
    ]
    permutation = None
    if not folds["permutation_scores"].isna().any():
        permutation = [np.array(part["permutation_scores"].tolist(), dtype=np.float64) for part in by_partition]
    ci_low, ci_high = score_interval(bootstrap, confidence_level)
    p_value = score_p_value(permutation)
    n_permutations = 0 if permutation is None else permutation[0].shape[1] - 1
    p_min = monte_carlo_p_min(n_permutations) if np.isfinite(p_value) else np.nan
    return {"ci_low": ci_low, "ci_high": ci_high, "p_value": p_value, "p_min": p_min}


HEADLINE = (
    "score = R^2(joint) - R^2(controls only), held out, per neuroid and fold; median over neuroids, "
    "mean over folds and partitions"
)
HEADLINE_WITHOUT_CONTROLS = (
    "score = R^2 of the LLM band alone (no control bands), held out, per neuroid and fold; median over "
    "neuroids, mean over folds and partitions"
)


def build_design(
    features: np.ndarray,
    responses: np.ndarray,
    stimuli: pd.DataFrame,
    response_rows: pd.DataFrame,
    neuroids: pd.DataFrame,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Check the inputs against each other and build the bands of the design."""
    if responses.shape[1] != len(neuroids):
        raise DataError(
            f"responses have {responses.shape[1]} neuroid columns but the neuroid table has {len(neuroids)} rows"
        )
    if len(features) != len(stimuli):
        raise DataError(
            f"features have {len(features)} rows but the stimuli table has {len(stimuli)}: extract activations for "
            f"this stimuli table"
        )
    if options["time_series"]:
        design = time_series_design(features, stimuli, response_rows, options)
    else:
        if len(responses) != len(stimuli):
            raise DataError(
                f"responses have {len(responses)} rows but the stimuli table has {len(stimuli)}: align responses to "
                f"stimuli first"
            )
        design = sentence_design(features, stimuli, options)
    if len(responses) != len(design["cv_groups"]):
        raise DataError(f"responses have {len(responses)} rows but there are {len(design['cv_groups'])} response rows")
    return design


def scored_partitions(
    design: dict[str, Any], responses: np.ndarray
) -> Iterator[tuple[str, np.ndarray, np.ndarray, int, int]]:
    """Per partition: its measured rows, the neuroids scored there, and the counts of those left out."""
    for partition in pd.unique(design["partitions"]):
        rows = np.flatnonzero((design["partitions"] == partition) & design["measured"])
        keep, n_non_finite, n_constant = valid_neuroids(responses[rows])
        if not keep.any():
            raise DataError(
                f"partition {partition!r}: no neuroid has finite, non-constant responses on its {len(rows)} measured "
                f"rows; "
                "flag response rows without a measurement (e.g. trimmed run edges) in a boolean 'trimmed' column"
            )
        yield partition, rows, keep, n_non_finite, n_constant


def controls_only_fit(
    stimuli: pd.DataFrame,
    responses: np.ndarray,
    response_rows: pd.DataFrame,
    neuroids: pd.DataFrame,
    options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Fit the controls-only model of the robust protocol, the part of every layer's fit that
    does not depend on the layer.

    Parameters are those of :func:`fit_robust` without the features.

    Returns
    -------
    DataFrame
        One row per (partition, scored neuroid): ``partition``, ``neuroid_id``,
        ``inner_score_fold_<k>`` (inner-CV R^2 on the training rows of outer fold k) and
        ``prediction:<row id>`` (held-out prediction of each response row of the partition,
        by its ``stimulus_id``; NaN for rows of other partitions).
    """
    options = resolve_robust_options(options)
    if not options["controls"]:
        raise ConfigError(
            "controls_only_fit: protocols.robust.controls is empty, so there is no controls-only model to fit"
        )
    responses = np.asarray(responses, dtype=np.float64)
    design = build_design(np.zeros((len(stimuli), 0)), responses, stimuli, response_rows, neuroids, options)
    tables = []
    with himalaya_backend(fit_backend(options["device"], options["backend"])):
        for partition, rows, keep, _, _ in scored_partitions(design, responses):
            fit = controls_partition(design, rows, responses[np.ix_(rows, np.flatnonzero(keep))], options)
            columns = {"partition": partition, "neuroid_id": neuroids["neuroid_id"].astype(str).to_numpy()[keep]}
            columns.update({f"inner_score_fold_{fold}": values for fold, values in enumerate(fit["inner_scores"])})
            columns.update(
                {
                    f"prediction:{row}": values
                    for row, values in zip(design["row_ids"][rows], fit["predictions"], strict=True)
                }
            )
            tables.append(pd.DataFrame(columns))
    return pd.concat(tables, ignore_index=True)


def _stored_controls(
    controls: pd.DataFrame, partition: str, row_ids: np.ndarray, neuroids: pd.DataFrame, keep: np.ndarray
) -> dict[str, np.ndarray]:
    """A partition's controls-only model (as :func:`controls_partition` returns it) from a
    :func:`controls_only_fit` table."""
    ids = neuroids["neuroid_id"].astype(str).to_numpy()[keep]
    table = controls[controls["partition"].astype(str) == str(partition)].set_index("neuroid_id")
    fold_columns = sorted(
        (c for c in table.columns if c.startswith("inner_score_fold_")), key=lambda c: int(c.rsplit("_", 1)[1])
    )
    prediction_columns = [f"prediction:{row}" for row in row_ids]
    if (
        not fold_columns
        or not pd.Index(ids).isin(table.index).all()
        or not pd.Index(prediction_columns).isin(table.columns).all()
    ):
        raise DataError(
            f"the controls-only fit does not cover every neuroid and row scored in partition {partition!r}: "
            "it was fit on other responses; rerun fit_controls on the current responses"
        )
    table = table.loc[ids]
    return {
        "predictions": table[prediction_columns].to_numpy(dtype=np.float64).T,
        "inner_scores": table[fold_columns].to_numpy(dtype=np.float64).T,
    }


def choose_layers(per_layer_folds: dict[int, pd.DataFrame]) -> tuple[dict[str, float], pd.DataFrame]:
    """Nested layer choice: per fold, the layer with the best training-only inner headline.

    Parameters
    ----------
    per_layer_folds : dict of layer -> ``EncodingResult.folds``
        Fold tables of one model and dataset, one per layer, with identical
        (``partition``, ``fold``) rows.

    Returns
    -------
    nested_scores : dict
        Each ``SCORE_COLUMNS`` score of the chosen layers' folds (mean over folds, then
        partitions); ``score`` is the nested headline.
    choices : DataFrame
        One row per (partition, fold): ``layer``, ``inner_score`` and the chosen layer's
        fold columns (the scores and, where the fits have them, ``RESAMPLING_COLUMNS``).
        ``choices.attrs`` holds ``max_over_layers_score`` (the best layer's
        headline chosen on test data, optimistic, for comparison) and
        ``max_over_layers_layer``.
    """
    if not per_layer_folds:
        raise ConfigError("choose_layers needs the fold tables of at least one layer")
    # The resampling scores travel with the chosen folds: the CI and p-value of the choice.
    resampled = [c for c in RESAMPLING_COLUMNS if all(c in table for table in per_layer_folds.values())]
    columns = ["partition", "fold", "inner_score", *SCORE_COLUMNS.values(), *resampled]
    stacked = pd.concat(
        [table.reindex(columns=columns).assign(layer=layer) for layer, table in per_layer_folds.items()],
        ignore_index=True,
    )
    counts = stacked.groupby(["partition", "fold"]).size()
    if (counts != len(per_layer_folds)).any():
        raise DataError(
            "choose_layers: layers have different folds; fit every layer of a dataset with the same options"
        )
    best = stacked.loc[stacked.groupby(["partition", "fold"], sort=False)["inner_score"].idxmax()]
    choices = best[["partition", "fold", "layer", *columns[2:]]].reset_index(drop=True)
    per_layer = stacked.groupby(["layer", "partition"])["test_score"].mean().groupby("layer").mean()
    choices.attrs["max_over_layers_score"] = float(per_layer.max())
    choices.attrs["max_over_layers_layer"] = int(per_layer.idxmax())
    return layer_scores(choices), choices
