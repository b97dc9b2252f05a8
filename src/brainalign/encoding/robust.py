"""The ``robust`` encoding protocol: leakage-free CV, per-neuroid ridge, control bands, statistics.

For every partition (e.g. Pereira2018's two experiments) and every outer fold:

1. Folds hold out whole cv groups (sentence data) or contiguous blocks of runs with
   ``trim_trs`` TRs dropped from training on each side (time series); see :mod:`cv`.
2. The joint model is banded ridge (:mod:`banded`) with the LLM layer as one band and
   each control band (:mod:`controls`) as another; the penalty per neuroid and the band
   weights are chosen by an inner CV on the training rows, grouped like the outer one.
   All preprocessing is fitted on the training rows.
3. The controls-only model is the same fit without the LLM band. The LLM's unique
   contribution is reported on the correlation scale: ``r_unique = r - r_controls``
   per neuroid and fold (the gain in held-out r from adding the LLM band).

Time series (words -> TRs): unit features are averaged within each response row,
rows without units get zeros, and the LLM band and the word-rate band get FIR delays
(``delays``, in TRs, within runs).

``test_score`` of a fold is the median over neuroids of the joint model's held-out r,
``inner_score`` the same median of the inner-CV r at the chosen penalties (training
rows only), so that :func:`choose_layers` picks a layer without looking at test data.
The score of a layer is the mean over folds, then over partitions. Its bootstrap CI
and permutation p-value come from :mod:`stats`, on the held-out predictions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from himalaya.backend import get_backend, set_backend
from scipy import sparse

from brainalign.encoding.banded import fit_predict_banded
from brainalign.encoding.controls import control_bands, index_within_group, word_counts
from brainalign.encoding.cv import protocol_splits
from brainalign.encoding.metrics import pearson_columns
from brainalign.encoding.result import EncodingResult
from brainalign.encoding.stats import PERMUTATION_SCHEMES, HeldOut, bootstrap_score_ci, median_correlation, permutation_p_value
from brainalign.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "time_series": {"type": "boolean", "default": False, "description": "Rows are TRs of runs (contiguous folds, trimming, FIR delays); set from the dataset."},
        "permutation": {"enum": ["auto", *PERMUTATION_SCHEMES], "default": "auto", "description": "Permutation scheme of the p-value (auto: circular_shift for time series, group_swap otherwise); set from the dataset."},
        "n_outer_folds": {"type": "integer", "minimum": 2, "default": 5, "description": "Outer folds: grouped by cv_group, or contiguous blocks/runs for time series."},
        "n_inner_folds": {"type": "integer", "minimum": 2, "default": 5, "description": "Inner folds on each outer training set (grouped the same way) that choose penalties and band weights."},
        "alphas": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "min_exp": {"type": "number", "default": -2, "description": "log10 of the smallest penalty."},
                "max_exp": {"type": "number", "default": 8, "description": "log10 of the largest penalty."},
                "n": {"type": "integer", "minimum": 1, "default": 21, "description": "Penalties on the grid (log-spaced)."},
            },
            "default": {"min_exp": -2, "max_exp": 8, "n": 21},
            "description": "Penalty grid np.logspace(min_exp, max_exp, n), for bands standardised and divided by sqrt(n_features).",
        },
        "delays": {"type": "array", "items": {"type": "integer", "minimum": 0}, "default": [1, 2, 3, 4], "description": "FIR delays in TRs (time series only)."},
        "trim_trs": {"type": "integer", "minimum": 0, "default": 5, "description": "TRs dropped from training on each side of a test block (time series only)."},
        "controls": {"type": "array", "items": {"enum": ["length", "position", "oasm"]}, "default": ["length", "position", "oasm"], "description": "Control bands fitted with the LLM band; [] fits the LLM band alone."},
        "oasm_width": {"type": "number", "exclusiveMinimum": 0, "default": 1.0, "description": "Gaussian width of the OASM band in position units (sentences or TRs)."},
        "n_band_weights": {"type": "integer", "minimum": 1, "default": 20, "description": "Band-weight candidates of the banded-ridge random search (corners, equal weights, Dirichlet draws)."},
        "block_trs": {"type": "integer", "minimum": 1, "default": 20, "description": "Time series: resampling block (bootstrap), in TRs; every circular shift (permutation) is at least this many rows."},
        "n_bootstrap": {"type": "integer", "minimum": 0, "default": 1000, "description": "Bootstrap resamples of cv groups/blocks for the CI (0 skips)."},
        "confidence_level": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.95, "description": "Level of the bootstrap CI."},
        "n_permutations": {"type": "integer", "minimum": 0, "default": 1000, "description": "Block permutations for the p-value (0 skips)."},
        "random_state": {"type": "integer", "default": 0, "description": "Seed of band-weight candidates, bootstrap and permutations."},
        "backend": {"enum": ["numpy", "torch", "torch_cuda", "cupy"], "default": "numpy", "description": "himalaya backend."},
        "neuroid_batch": {"type": "integer", "minimum": 1, "default": 5000, "description": "Neuroids solved at once (bounds memory)."},
    },
}
"""JSON-schema fragment of the ``protocols.robust`` options (with defaults)."""


def resolve_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Fill defaults from ``OPTIONS_SCHEMA``; other keys (dataset flags) pass through."""
    resolved = {key: spec["default"] for key, spec in OPTIONS_SCHEMA["properties"].items()}
    resolved.update(options or {})
    resolved["alphas"] = {**OPTIONS_SCHEMA["properties"]["alphas"]["default"], **(resolved["alphas"] or {})}
    if resolved["alphas"]["min_exp"] > resolved["alphas"]["max_exp"]:
        raise ConfigError(f"protocols.robust.alphas: min_exp must not exceed max_exp, got {resolved['alphas']}")
    if resolved["permutation"] == "auto":
        resolved["permutation"] = "circular_shift" if resolved["time_series"] else "group_swap"
    if resolved["permutation"] not in PERMUTATION_SCHEMES:
        raise ConfigError(f"datasets.<name>.permutation is {resolved['permutation']!r}; use one of {['auto', *PERMUTATION_SCHEMES]}")
    return resolved


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
    """Bands, folds groups and resampling units of sentence data (rows = stimuli)."""
    lengths = stimuli["n_words"].to_numpy(float) if "n_words" in stimuli else word_counts(stimuli["text"].to_numpy())
    positions = stimuli["position"].to_numpy(float)
    controls = control_bands(options["controls"], lengths, positions, stimuli["context_group"].to_numpy(), options["oasm_width"])
    groups = stimuli["cv_group"].astype(str).to_numpy()
    return {
        "llm": features,
        "controls": controls,
        "cv_groups": groups,
        "partitions": stimuli["partition"].astype(str).to_numpy(),
        "units": groups,
        "streams": stimuli["context_group"].astype(str).to_numpy(),
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
        raise DataError("stimuli.response_id matches no response row stimulus_id: check that both come from the same dataset preparation")
    averaging = row_average(row_of_unit[has_row], len(runs))
    llm = fir_delays(np.asarray(averaging @ features[has_row]), runs, options["delays"])
    units_per_row = np.bincount(row_of_unit[has_row], minlength=len(runs)).astype(float)
    positions = index_within_group(runs)
    controls = control_bands(options["controls"], units_per_row, positions, runs, options["oasm_width"])
    if "length" in controls:
        # Word rate drives the BOLD response through the same haemodynamic lag as content.
        controls["length"] = fir_delays(controls["length"], runs, options["delays"])
    partitions = response_rows["partition"].astype(str).to_numpy() if "partition" in response_rows else np.full(len(runs), "all")
    blocks = np.array([f"{run}:{int(p) // options['block_trs']}" for run, p in zip(runs, positions, strict=True)])
    return {
        "llm": llm,
        "controls": controls,
        "cv_groups": runs,
        "partitions": partitions,
        "units": blocks,
        "streams": runs,
        "measured": ~response_rows["trimmed"].to_numpy(bool) if "trimmed" in response_rows else np.ones(len(runs), dtype=bool),
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


def _fold_splits(cv_groups: np.ndarray, options: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray, list]]:
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
    )


def controls_partition(design: dict[str, Any], rows: np.ndarray, responses: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """Held-out r of the controls-only model in each outer fold of one partition.

    Returns
    -------
    array of shape (n_folds, n_neuroids)
    """
    controls = [band[rows] for band in design["controls"].values()]
    settings = _banded_settings(options)
    r = []
    for train, test, inner in _fold_splits(design["cv_groups"][rows], options):
        fit = fit_predict_banded(
            [band[train] for band in controls], [band[test] for band in controls], responses[train], inner_cv=inner, **settings
        )
        r.append(pearson_columns(fit.predictions, responses[test]))
    return np.vstack(r)


def fit_partition(
    design: dict[str, Any],
    rows: np.ndarray,
    responses: np.ndarray,
    options: dict[str, Any],
    control_r: np.ndarray | None = None,
) -> dict[str, Any]:
    """Outer CV of one partition: per-fold scores, per-neuroid r/alpha and held-out predictions.

    ``control_r`` (n_folds x n_neuroids) is the controls-only model's held-out r from
    :func:`controls_partition`, computed here when not given.
    """
    llm = design["llm"][rows]
    controls = [band[rows] for band in design["controls"].values()]
    units, streams = design["units"][rows], design["streams"][rows]
    folds = _fold_splits(design["cv_groups"][rows], options)
    settings = _banded_settings(options)
    if not controls:
        control_r = np.full((len(folds), responses.shape[1]), np.nan)
    elif control_r is None:
        control_r = controls_partition(design, rows, responses, options)
    elif control_r.shape != (len(folds), responses.shape[1]):
        raise DataError(
            f"the controls-only fit has shape {control_r.shape}, expected {(len(folds), responses.shape[1])} "
            "(folds x neuroids): rerun fit_controls with the current robust options"
        )
    fold_rows, r_joint, fold_alphas, held_out = [], [], [], []
    for fold, (train, test, inner) in enumerate(folds):
        joint = fit_predict_banded(
            [llm[train]] + [band[train] for band in controls], [llm[test]] + [band[test] for band in controls],
            responses[train], inner_cv=inner, **settings,
        )
        r, rc = pearson_columns(joint.predictions, responses[test]), control_r[fold]
        fold_rows.append({
            "fold": fold,
            "n_train": len(train),
            "n_test": len(test),
            "test_score": float(median_correlation(r)),
            "inner_score": float(median_correlation(joint.inner_scores)),
            "test_score_controls": float(median_correlation(rc)) if controls else np.nan,
            "test_score_unique": float(median_correlation(r - rc)) if controls else np.nan,
            "alphas_at_low_edge": int(np.isclose(joint.alphas, settings["alphas"][0], rtol=1e-3).sum()),
            "alphas_at_high_edge": int(np.isclose(joint.alphas, settings["alphas"][-1], rtol=1e-3).sum()),
            "llm_band_weight": float(np.median(joint.band_weights[0])),
        })
        r_joint.append(r)
        fold_alphas.append(joint.alphas)
        by_unit = _order_by_unit(units[test])
        held_out.append(HeldOut(
            joint.predictions[by_unit], responses[test][by_unit], pd.factorize(units[test][by_unit])[0], streams[test][by_unit]
        ))
    return {
        "folds": pd.DataFrame(fold_rows),
        "r": np.vstack(r_joint),
        "r_controls": control_r,
        "alphas": np.vstack(fold_alphas),
        "held_out": held_out,
    }


def neuroid_table(neuroids: pd.DataFrame, keep: np.ndarray, partition: str, fitted: dict[str, Any]) -> pd.DataFrame:
    """One row per scored neuroid of a partition: r (mean over folds), per-fold r, controls, alpha."""
    table = neuroids.iloc[np.flatnonzero(keep)].reset_index(drop=True).copy()
    table["partition"] = partition
    with np.errstate(invalid="ignore"):
        table["r"] = fitted["r"].mean(axis=0)
        table["r_controls"] = fitted["r_controls"].mean(axis=0)
        table["r_unique"] = (fitted["r"] - fitted["r_controls"]).mean(axis=0)
    # Geometric mean over folds: penalties live on a log grid.
    table["alpha"] = np.exp(np.log(fitted["alphas"]).mean(axis=0))
    for fold, r in enumerate(fitted["r"]):
        table[f"r_fold_{fold}"] = r
    return table


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
        ``protocols.robust`` options and dataset flags; see ``OPTIONS_SCHEMA``.
    controls : DataFrame or None
        The controls-only model's held-out r from :func:`fit_controls` on the same data and
        options (it does not depend on the layer, so the workflow fits it once per
        dataset); None fits it here.

    Returns
    -------
    EncodingResult
        ``neuroids``: one row per (partition, scored neuroid) with ``r``, ``r_fold_k``,
        ``r_controls``, ``r_unique``, ``alpha``. ``folds``: one row per (partition, fold).
        ``score``: mean over partitions of the mean over folds of ``test_score``.
    """
    options = resolve_options(options)
    features = np.asarray(features, dtype=np.float64)
    responses = np.asarray(responses, dtype=np.float64)
    design = _design(features, responses, stimuli, response_rows, neuroids, options)
    fold_tables, neuroid_tables, held_out, details_partitions = [], [], [], {}
    with himalaya_backend(options["backend"]):
        for partition, rows, keep, n_non_finite, n_constant in _partitions(design, responses):
            control_r = None if controls is None else _control_matrix(controls, partition, neuroids, keep)
            fitted = fit_partition(design, rows, responses[np.ix_(rows, np.flatnonzero(keep))], options, control_r)
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
    per_partition = folds.groupby("partition", sort=False)[["test_score", "test_score_controls", "test_score_unique", "inner_score"]].mean()
    score = float(per_partition["test_score"].mean())

    low, high = int(folds["alphas_at_low_edge"].sum()), int(folds["alphas_at_high_edge"].sum())
    folds_per_partition = folds.groupby("partition", sort=False).size()
    n_neuroid_fits = int(sum(details_partitions[str(p)]["n_neuroids"] * n for p, n in folds_per_partition.items()))
    if low or high:
        logger.warning(
            "robust fit: %d of %d chosen penalties at the lower grid edge and %d at the upper edge "
            "(grid 1e%s..1e%s); widen protocols.robust.alphas if this is more than a few percent",
            low, n_neuroid_fits, high, options["alphas"]["min_exp"], options["alphas"]["max_exp"],
        )
    ci_low, ci_high = bootstrap_score_ci(held_out, options["n_bootstrap"], options["confidence_level"], options["random_state"])
    p_value, _ = permutation_p_value(
        held_out, options["n_permutations"], options["permutation"], options["block_trs"], options["random_state"]
    )
    details = {
        "score_joint": score,
        "score_controls": float(per_partition["test_score_controls"].mean()),
        "score_unique": float(per_partition["test_score_unique"].mean()),
        "score_inner": float(per_partition["inner_score"].mean()),
        "unique_contribution": "r_unique = r(joint) - r(controls only), per neuroid and fold, on the correlation scale",
        "controls": list(options["controls"]),
        "alpha_grid": {k: options["alphas"][k] for k in ("min_exp", "max_exp", "n")},
        "n_neuroid_fits": n_neuroid_fits,
        "alphas_at_low_edge": low,
        "alphas_at_high_edge": high,
        "n_units_without_response_row": design["n_units_without_row"],
        "partitions": details_partitions,
    }
    return EncodingResult(
        neuroids=pd.concat(neuroid_tables, ignore_index=True),
        folds=folds,
        score=score,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        details=details,
    )


def _design(
    features: np.ndarray, responses: np.ndarray, stimuli: pd.DataFrame, response_rows: pd.DataFrame, neuroids: pd.DataFrame, options: dict[str, Any]
) -> dict[str, Any]:
    """Check the inputs against each other and build the bands of the design."""
    if responses.shape[1] != len(neuroids):
        raise DataError(f"responses have {responses.shape[1]} neuroid columns but the neuroid table has {len(neuroids)} rows")
    if len(features) != len(stimuli):
        raise DataError(f"features have {len(features)} rows but the stimuli table has {len(stimuli)}: extract activations for this stimuli table")
    if options["time_series"]:
        design = time_series_design(features, stimuli, response_rows, options)
    else:
        if len(responses) != len(stimuli):
            raise DataError(f"responses have {len(responses)} rows but the stimuli table has {len(stimuli)}: align responses to stimuli first")
        design = sentence_design(features, stimuli, options)
    if len(responses) != len(design["cv_groups"]):
        raise DataError(f"responses have {len(responses)} rows but there are {len(design['cv_groups'])} response rows")
    return design


def _partitions(design: dict[str, Any], responses: np.ndarray) -> Iterator[tuple[str, np.ndarray, np.ndarray, int, int]]:
    """Per partition: its measured rows, the neuroids scored there, and the counts of those left out."""
    for partition in pd.unique(design["partitions"]):
        rows = np.flatnonzero((design["partitions"] == partition) & design["measured"])
        keep, n_non_finite, n_constant = valid_neuroids(responses[rows])
        if not keep.any():
            raise DataError(
                f"partition {partition!r}: no neuroid has finite, non-constant responses on its {len(rows)} measured rows; "
                "flag response rows without a measurement (e.g. trimmed run edges) in a boolean 'trimmed' column"
            )
        yield partition, rows, keep, n_non_finite, n_constant


def fit_controls(
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
        ``r_controls_fold_<k>`` (held-out r of the controls-only model in outer fold k).
    """
    options = resolve_options(options)
    if not options["controls"]:
        raise ConfigError("fit_controls: protocols.robust.controls is empty, so there is no controls-only model to fit")
    responses = np.asarray(responses, dtype=np.float64)
    design = _design(np.zeros((len(stimuli), 0)), responses, stimuli, response_rows, neuroids, options)
    tables = []
    with himalaya_backend(options["backend"]):
        for partition, rows, keep, _, _ in _partitions(design, responses):
            control_r = controls_partition(design, rows, responses[np.ix_(rows, np.flatnonzero(keep))], options)
            table = pd.DataFrame({"partition": partition, "neuroid_id": neuroids["neuroid_id"].astype(str).to_numpy()[keep]})
            for fold, r in enumerate(control_r):
                table[f"r_controls_fold_{fold}"] = r
            tables.append(table)
    return pd.concat(tables, ignore_index=True)


def _control_matrix(controls: pd.DataFrame, partition: str, neuroids: pd.DataFrame, keep: np.ndarray) -> np.ndarray:
    """The (folds x scored neuroids) controls-only r of a partition from a :func:`fit_controls` table."""
    ids = neuroids["neuroid_id"].astype(str).to_numpy()[keep]
    table = controls[controls["partition"].astype(str) == str(partition)].set_index("neuroid_id")
    fold_columns = sorted((c for c in table.columns if c.startswith("r_controls_fold_")), key=lambda c: int(c.rsplit("_", 1)[1]))
    if not fold_columns or not pd.Index(ids).isin(table.index).all():
        raise DataError(
            f"the controls-only fit does not cover every neuroid scored in partition {partition!r}: "
            "it was fit on other responses; rerun fit_controls on the current responses"
        )
    return table.loc[ids, fold_columns].to_numpy(dtype=np.float64).T


def choose_layers(per_layer_folds: dict[int, pd.DataFrame]) -> tuple[float, pd.DataFrame]:
    """Nested layer choice: per fold, the layer with the best training-only inner score.

    Parameters
    ----------
    per_layer_folds : dict of layer -> ``EncodingResult.folds``
        Fold tables of one model and dataset, one per layer, with identical
        (``partition``, ``fold``) rows.

    Returns
    -------
    nested_score : float
        Mean over partitions of the mean over folds of the chosen layer's ``test_score``.
    choices : DataFrame
        One row per (partition, fold): ``layer``, ``inner_score``, ``test_score``.
        ``choices.attrs`` holds ``max_over_layers_score`` (the best layer's score chosen
        on test data, optimistic, for comparison) and ``max_over_layers_layer``.
    """
    if not per_layer_folds:
        raise ConfigError("choose_layers needs the fold tables of at least one layer")
    stacked = pd.concat(
        [table[["partition", "fold", "inner_score", "test_score"]].assign(layer=layer) for layer, table in per_layer_folds.items()],
        ignore_index=True,
    )
    counts = stacked.groupby(["partition", "fold"]).size()
    if (counts != len(per_layer_folds)).any():
        raise DataError("choose_layers: layers have different folds; fit every layer of a dataset with the same options")
    best = stacked.loc[stacked.groupby(["partition", "fold"], sort=False)["inner_score"].idxmax()]
    choices = best[["partition", "fold", "layer", "inner_score", "test_score"]].reset_index(drop=True)
    nested_score = float(choices.groupby("partition", sort=False)["test_score"].mean().mean())
    per_layer = stacked.groupby(["layer", "partition"])["test_score"].mean().groupby("layer").mean()
    choices.attrs["max_over_layers_score"] = float(per_layer.max())
    choices.attrs["max_over_layers_layer"] = int(per_layer.idxmax())
    return nested_score, choices
