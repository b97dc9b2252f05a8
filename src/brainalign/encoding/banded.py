"""(Banded) ridge regression for one outer fold, with himalaya.

One function, :func:`fit_predict_banded`, fits a ridge model whose features come in
bands (the LLM layer, control bands), chooses a penalty per neuroid and a relative
weight per band by cross-validation on the training rows only, and predicts the test
rows. With one band it is plain ridge with a per-neuroid penalty.

Preprocessing (fit on the training rows only): every feature is centred and scaled
to unit variance, then every band is divided by the square root of its number of
features, so that each band's kernel has a mean diagonal of 1. Penalties therefore
mean the same thing for layers of any width (768 to 8192 units) and for bands of one
feature; the alpha grid refers to these normalised bands.

Solver: himalaya's random search over band weights (``solve_multiple_kernel_ridge_
random_search`` on linear kernels, the dual form) when features outnumber training
rows, and its primal counterpart (``solve_group_ridge_random_search``) otherwise. Band
weights are drawn once from a Dirichlet distribution with a fixed seed, so every
layer of a dataset searches the same candidates. The score that chooses penalties
and band weights is the signed R^2 (``himalaya.scoring.r2_score``), the scale of the
protocol's headline, so the inner-CV score of the chosen fit is an R^2 on training rows
only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from himalaya.backend import get_backend
from himalaya.kernel_ridge import (
    generate_dirichlet_samples,
    predict_weighted_kernel_ridge,
    solve_multiple_kernel_ridge_random_search,
)
from himalaya.ridge import solve_group_ridge_random_search
from himalaya.scoring import r2_score

Split = tuple[np.ndarray, np.ndarray]


@dataclass
class BandedFit:
    """Held-out predictions and cross-validated choices of one banded ridge fit.

    Attributes
    ----------
    predictions : array of shape (n_test, n_targets)
        Predictions of the test rows (centred on the training mean).
    band_predictions : array of shape (n_bands, n_test, n_targets)
        Each band's part of ``predictions`` (they sum to it).
    alphas : array of shape (n_targets,)
        Chosen penalty of each target.
    inner_scores : array of shape (n_targets,)
        Inner-CV R^2 of each target at the chosen penalty and band weights.
    band_weights : array of shape (n_bands, n_targets)
        Chosen relative weight of each band (sums to 1 per target).
    """

    predictions: np.ndarray
    band_predictions: np.ndarray
    alphas: np.ndarray
    inner_scores: np.ndarray
    band_weights: np.ndarray


def standardize_bands(
    train_bands: list[np.ndarray], test_bands: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Centre, scale and normalise each band with statistics of the training rows only.

    Training columns that are constant, or nearly so (a spread below float32 resolution
    relative to the band's largest, e.g. the far tails of an OASM column whose own row
    was trimmed), are centred but not scaled: they carry no information the model could
    use, and scaling them would blow their held-out values up past float32. Returns
    float32 arrays.
    """
    scaled_train, scaled_test = [], []
    for train, test in zip(train_bands, test_bands, strict=True):
        mean = train.mean(axis=0)
        std = train.std(axis=0)
        std[std <= np.finfo(np.float32).eps * std.max(initial=0.0)] = 1.0
        scale = std * np.sqrt(train.shape[1])
        scaled_train.append(((train - mean) / scale).astype(np.float32))
        scaled_test.append(((test - mean) / scale).astype(np.float32))
    return scaled_train, scaled_test


def band_weight_candidates(n_bands: int, n_iter: int, random_state: int) -> np.ndarray:
    """Candidate band weights on the simplex: (1, 1) for one band, else Dirichlet draws.

    The corners of the simplex, equal weights and equal weights on all bands but one are
    always candidates, so that "one band only", "all bands alike" and "all but this band"
    are never missed; the last lets a joint model fall back to its other bands when one
    band (the LLM's) adds nothing, so its held-out gain over them is not biased downwards.
    """
    if n_bands == 1:
        return np.ones((1, 1))
    # Bands left out keep a 1e-6 weight: himalaya's primal solver divides by sqrt(weight).
    corners = np.eye(n_bands) + 1e-6
    all_but_one = 1.0 - np.eye(n_bands) + 1e-6 if n_bands > 2 else np.empty((0, n_bands))
    fixed = np.vstack([corners, np.ones((1, n_bands)), all_but_one])
    fixed = fixed / fixed.sum(axis=1, keepdims=True)
    n_random = max(n_iter - len(fixed), 0)
    if n_random == 0:
        return fixed
    drawn = generate_dirichlet_samples(n_random, n_bands, concentration=[0.1, 1.0], random_state=random_state)
    return np.vstack([fixed, get_backend().to_numpy(drawn)])


def fit_predict_banded(
    train_bands: list[np.ndarray],
    test_bands: list[np.ndarray],
    responses_train: np.ndarray,
    alphas: np.ndarray,
    inner_cv: list[Split],
    n_iter: int = 20,
    random_state: int = 0,
    neuroid_batch: int | None = None,
) -> BandedFit:
    """Fit banded ridge on training rows (penalties chosen by inner CV) and predict test rows.

    Parameters
    ----------
    train_bands, test_bands : list of arrays of shape (n_train, p_k) and (n_test, p_k)
        The feature bands, raw (standardisation happens here, on the training rows).
    responses_train : array of shape (n_train, n_targets)
        Training responses (centred here on their training mean).
    alphas : array of shape (n_alphas,)
        Penalty grid.
    inner_cv : list of (train, validation) index arrays into the training rows
        The inner folds, grouped like the outer folds.
    n_iter : int
        Number of band-weight candidates (ignored for one band).
    random_state : int
        Seed of the band-weight candidates.
    neuroid_batch : int or None
        Targets processed at once (bounds memory).

    Returns
    -------
    BandedFit
    """
    backend = get_backend()
    train_bands, test_bands = standardize_bands(train_bands, test_bands)
    responses = responses_train - responses_train.mean(axis=0)
    responses = backend.asarray(responses.astype(np.float32))
    gammas = backend.asarray(band_weight_candidates(len(train_bands), n_iter, random_state).astype(np.float32))
    alphas = backend.asarray(np.asarray(alphas, dtype=np.float32))
    train_bands = [backend.asarray(band) for band in train_bands]
    test_bands = [backend.asarray(band) for band in test_bands]
    settings = dict(
        n_iter=gammas,
        alphas=alphas,
        score_func=r2_score,
        cv=inner_cv,
        fit_intercept=False,
        local_alpha=True,
        n_targets_batch=neuroid_batch,
        n_targets_batch_refit=neuroid_batch,
        progress_bar=False,
    )
    n_features = sum(band.shape[1] for band in train_bands)
    deltas, band_predictions, cv_scores = _solve(train_bands, test_bands, responses, n_features, settings, neuroid_batch)
    exp_deltas = backend.to_numpy(backend.exp(deltas)).astype(np.float64)
    chosen_alphas = 1.0 / exp_deltas.sum(axis=0)
    band_predictions = backend.to_numpy(band_predictions).astype(np.float64)
    return BandedFit(
        predictions=band_predictions.sum(axis=0),
        band_predictions=band_predictions,
        alphas=chosen_alphas,
        inner_scores=backend.to_numpy(cv_scores).max(axis=0).astype(np.float64),
        band_weights=exp_deltas * chosen_alphas,
    )


def _solve(train_bands, test_bands, responses, n_features, settings, neuroid_batch):
    """Dual (kernel) random search when features outnumber rows, primal otherwise; the
    test predictions come per band, shape (n_bands, n_test, n_targets)."""
    backend = get_backend()
    if n_features > responses.shape[0]:
        kernels = backend.stack([band @ band.T for band in train_bands])
        test_kernels = backend.stack([test @ band.T for test, band in zip(test_bands, train_bands, strict=True)])
        deltas, weights, cv_scores = solve_multiple_kernel_ridge_random_search(kernels, responses, return_weights="dual", **settings)
        predictions = predict_weighted_kernel_ridge(test_kernels, backend.asarray(weights), deltas, split=True, n_targets_batch=neuroid_batch)
    else:
        deltas, weights, cv_scores = solve_group_ridge_random_search(train_bands, responses, return_weights=True, warn=False, **settings)
        weights = backend.asarray(weights)
        bounds = np.cumsum([0] + [band.shape[1] for band in test_bands])
        predictions = backend.stack([band @ weights[start:stop] for band, start, stop in zip(test_bands, bounds[:-1], bounds[1:], strict=True)])
    return deltas, predictions, cv_scores
