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
from typing import Any

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
    relative to the band's largest), are centred but not scaled: they carry no information
    the model could use, and scaling them would blow their held-out values up past float32.
    Returns float32 arrays.
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
    solver: str = "eigh",
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
    solver : {"eigh", "himalaya"}
        Dual solver (when features outnumber training rows): :func:`solve_banded_dual`, or
        himalaya's own random search (the slower reference it reproduces).

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
    deltas, band_predictions, cv_scores = _solve(
        train_bands, test_bands, responses, n_features, settings, neuroid_batch, solver
    )
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


def _solve(train_bands, test_bands, responses, n_features, settings, neuroid_batch, solver):
    """Dual (kernel) random search when features outnumber rows, primal otherwise; the
    test predictions come per band, shape (n_bands, n_test, n_targets)."""
    backend = get_backend()
    if n_features > responses.shape[0]:
        kernels = backend.stack([band @ band.T for band in train_bands])
        test_kernels = backend.stack([test @ band.T for test, band in zip(test_bands, train_bands, strict=True)])
        if solver == "eigh":
            return solve_banded_dual(
                kernels, test_kernels, responses, settings["n_iter"], settings["alphas"], settings["cv"], neuroid_batch
            )
        deltas, weights, cv_scores = solve_multiple_kernel_ridge_random_search(
            kernels, responses, return_weights="dual", **settings
        )
        predictions = predict_weighted_kernel_ridge(
            test_kernels, backend.asarray(weights), deltas, split=True, n_targets_batch=neuroid_batch
        )
    else:
        deltas, weights, cv_scores = solve_group_ridge_random_search(
            train_bands, responses, return_weights=True, warn=False, **settings
        )
        weights = backend.asarray(weights)
        bounds = np.cumsum([0] + [band.shape[1] for band in test_bands])
        predictions = backend.stack(
            [band @ weights[start:stop] for band, start, stop in zip(test_bands, bounds[:-1], bounds[1:], strict=True)]
        )
    return deltas, predictions, cv_scores


# --------------------------------------------------------------------------- dual solver
@dataclass
class DualSearch:
    """Per-target state of the random search over band weights and penalties.

    Attributes
    ----------
    best_scores : array of shape (n_targets,)
        Best inner-CV score so far (float32, as himalaya keeps it).
    best_candidate : array of int, shape (n_targets,)
        Index of the band-weight candidate that holds ``best_scores``.
    best_alphas : array of shape (n_targets,)
        Penalty chosen with that candidate.
    cv_scores : array of shape (n_candidates, n_targets)
        Each candidate's inner-CV score at its best penalty.
    """

    best_scores: Any
    best_candidate: Any
    best_alphas: Any
    cv_scores: Any


def solve_banded_dual(
    kernels, test_kernels, responses, gammas, alphas, inner_cv: list[Split], neuroid_batch: int | None
) -> tuple[Any, Any, Any]:
    """Banded kernel ridge: himalaya's random search, with one refit per chosen candidate.

    The search is that of ``himalaya.kernel_ridge.solve_multiple_kernel_ridge_random_search``
    with ``local_alpha=True`` and ``r2_score``: for every candidate, each inner fold's kernel is
    diagonalised once and reused for every penalty and target; the R^2 per (fold, penalty,
    target), averaged over folds in float64, picks the penalty (ties to the larger, penalties
    too small for negative eigenvalues excluded); a target moves to a later candidate only
    if that beats its best score by more than float32 resolution. himalaya refits every
    target whose best candidate changed, at every candidate; here each target is refitted
    once, with its final choice, which gives the same model for a fraction of the work.

    Parameters
    ----------
    kernels : array of shape (n_bands, n_train, n_train)
        Training kernel of each band.
    test_kernels : array of shape (n_bands, n_test, n_train)
    responses : array of shape (n_train, n_targets)
        Centred training responses (float32).
    gammas : array of shape (n_candidates, n_bands)
        Band-weight candidates (rows sum to 1).
    alphas : array of shape (n_alphas,)
        Penalty grid, increasing.
    inner_cv : list of (train, validation) index arrays
    neuroid_batch : int or None
        Targets scored at once (bounds memory).

    Returns
    -------
    deltas : array of shape (n_bands, n_targets)
        ``log(band weight / penalty)`` of the chosen fit, as himalaya returns them.
    band_predictions : array of shape (n_bands, n_test, n_targets)
    cv_scores : array of shape (n_candidates, n_targets)
    """
    backend = get_backend()
    n_targets = responses.shape[1]
    batch = n_targets if neuroid_batch is None else neuroid_batch
    search = DualSearch(
        best_scores=backend.full_like(gammas, fill_value=-np.inf, shape=(n_targets,)),
        best_candidate=np.zeros(n_targets, dtype=int),
        best_alphas=backend.ones_like(gammas, shape=(n_targets,)),
        cv_scores=np.zeros((len(gammas), n_targets), dtype=np.float32),
    )
    folds = [(backend.asarray(train), backend.asarray(validation)) for train, validation in inner_cv]
    slope = backend.log(alphas)[:, None] * 1e-10  # ties go to the larger penalty (himalaya's rule)
    for candidate, gamma in enumerate(gammas):
        kernel = (gamma[:, None, None] * kernels).sum(0)
        scores = backend.zeros_like(gammas, shape=(len(folds), len(alphas), n_targets))
        for fold, (train, validation) in enumerate(folds):
            scaled, vectors = _validation_basis(kernel, train, validation, alphas)
            # The resolvent costs n_alphas x n_val x n_train^2 once; predicting through the
            # eigenbasis costs n_train^2 per target instead: the resolvent pays off only
            # when targets outnumber n_alphas x n_val.
            resolvent = backend.matmul(scaled, vectors.T) if n_targets > len(alphas) * len(validation) else None
            excluded = backend.isnan(scaled[:, 0, 0])
            for start in range(0, n_targets, batch):
                targets = slice(start, start + batch)
                predictions = _penalty_predictions(scaled, vectors, resolvent, responses[train, targets])
                scores[fold, :, targets] = _r2_over_penalties(predictions, responses[validation, targets], excluded)
        _update_search(search, candidate, backend.mean_float64(scores, axis=0) + slope, alphas)
    band_predictions = _refit(kernels, test_kernels, responses, gammas, search, neuroid_batch)
    chosen_gammas = backend.stack(
        [gammas[:, band][backend.asarray(search.best_candidate)] for band in range(gammas.shape[1])]
    )
    deltas = backend.log(chosen_gammas / search.best_alphas[None, :])
    return deltas, band_predictions, search.cv_scores


def _eigh(kernel):
    """Eigendecomposition of a symmetric kernel, ascending; on numpy by LAPACK's divide and
    conquer (``syevd``, numpy's), about twice as fast here as scipy's default ``syevr``."""
    backend = get_backend()
    return np.linalg.eigh(kernel) if backend.name == "numpy" else backend.eigh(kernel)


def _validation_basis(kernel, train, validation, alphas):
    """``K_val,train (K_train,train + alpha I)^-1`` for every penalty, factored through the
    eigenvectors ``V`` of the training kernel: returns ``scaled`` of shape (n_alphas, n_val,
    n_train), ``K_val,train V`` divided by ``alpha + eigenvalue``, and ``V``; the operator is
    ``scaled @ V.T``.

    Penalties below twice the magnitude of a negative eigenvalue (float32 round-off of a
    nearly singular kernel) get NaN rows, which :func:`_r2_over_penalties` scores -1e5 so
    that they are never chosen (himalaya's ``negative_eigenvalues="nan"``).
    """
    backend = get_backend()
    eigenvalues, vectors = _eigh(kernel[train[:, None], train])
    weights = 1.0 / (alphas[:, None] + eigenvalues)
    if eigenvalues[0] < 0:
        weights[alphas < -2 * eigenvalues[0]] = np.nan
    projected = backend.matmul(kernel[validation[:, None], train], vectors)
    return projected[None] * weights[:, None, :], vectors


def _penalty_predictions(scaled, vectors, resolvent, responses_train):
    """Validation predictions of every penalty, shape (n_alphas, n_val, n_targets): through the
    formed ``resolvent`` (``scaled @ V.T``) where given, else through the eigenbasis."""
    backend = get_backend()
    if resolvent is None:
        operator, right = scaled, backend.matmul(vectors.T, responses_train)
    else:
        operator, right = resolvent, responses_train
    n_alphas, n_validation, n_train = operator.shape  # one matrix product over all penalties
    return backend.matmul(operator.reshape(n_alphas * n_validation, n_train), right).reshape(n_alphas, n_validation, -1)


def _r2_over_penalties(predictions, responses_validation, excluded):
    """Validation R^2 of every penalty, shape (n_alphas, n_targets) (himalaya's ``r2_score``;
    a target constant on the validation rows scores 0, an ``excluded`` penalty -1e5).

    ``predictions`` is overwritten with the squared errors: in place, the largest array of the
    search is not copied twice per fold and batch.
    """
    errors = predictions
    errors -= responses_validation[None]
    errors *= errors
    sse = errors.sum(1)
    variance = ((responses_validation - responses_validation.mean(0)) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):  # constant targets are set to 0 below
        r2 = 1.0 - sse / variance
    r2[:, variance == 0] = 0
    r2[excluded] = -1e5
    return r2


def _update_search(search: DualSearch, candidate: int, scores, alphas) -> None:
    """Record a candidate's best penalty per target and move the targets it improves
    (by more than float32 resolution, himalaya's rule) to it."""
    backend = get_backend()
    best_alpha = backend.argmax(scores, 0)
    scores = backend.apply_argmax(scores, best_alpha, 0)
    search.cv_scores[candidate] = backend.to_numpy(scores)
    improved = scores > search.best_scores + np.finfo(np.float32).eps
    search.best_scores[improved] = scores[improved]
    search.best_alphas[improved] = alphas[best_alpha[improved]]
    search.best_candidate[backend.to_numpy(improved)] = candidate


def _refit(kernels, test_kernels, responses, gammas, search: DualSearch, neuroid_batch: int | None):
    """Each band's test predictions of the chosen fits: one diagonalisation per chosen candidate
    (negative round-off eigenvalues set to 0, as in himalaya's refit)."""
    backend = get_backend()
    n_targets = responses.shape[1]
    batch = n_targets if neuroid_batch is None else neuroid_batch
    predictions = backend.zeros_like(responses, shape=(len(kernels), test_kernels.shape[1], n_targets))
    for candidate in np.unique(search.best_candidate):
        chosen = np.flatnonzero(search.best_candidate == candidate)
        gamma = gammas[candidate]
        eigenvalues, vectors = _eigh((gamma[:, None, None] * kernels).sum(0))
        eigenvalues = backend.clip(eigenvalues, 0, None)
        for start in range(0, len(chosen), batch):
            targets = backend.asarray(chosen[start : start + batch])
            projected = backend.matmul(vectors.T, responses[:, targets])
            dual = backend.matmul(vectors, projected / (search.best_alphas[targets][None, :] + eigenvalues[:, None]))
            for band in range(len(kernels)):
                predictions[band][:, targets] = gamma[band] * backend.matmul(test_kernels[band], dual)
    return predictions
