"""Per-neuroid correlation metrics shared by every protocol."""

from __future__ import annotations

import numpy as np


def pearson_columns(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of two (samples x targets) arrays.

    Computed in float64. A column that is constant in either array has no defined
    correlation and gets NaN (never 0), so callers can exclude and count it.

    Parameters
    ----------
    predicted, observed : array of shape (n_samples, n_targets)

    Returns
    -------
    r : array of shape (n_targets,)
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    if predicted.shape != observed.shape:
        raise ValueError(f"shape mismatch: {predicted.shape} vs {observed.shape}")
    predicted = predicted - predicted.mean(axis=0)
    observed = observed - observed.mean(axis=0)
    numerator = (predicted * observed).sum(axis=0)
    denominator = np.sqrt((predicted**2).sum(axis=0) * (observed**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = numerator / denominator
    scale = np.sqrt((observed**2).sum(axis=0) / len(observed))
    pscale = np.sqrt((predicted**2).sum(axis=0) / len(predicted))
    # Numerically constant columns (relative to their magnitude) have no correlation.
    r[(denominator == 0) | (scale <= 1e-12) | (pscale <= 1e-12)] = np.nan
    return r


def r2_columns(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Signed coefficient of determination ``1 - SSE / SST`` of matching columns.

    SST is taken around the observed columns' own mean, so a prediction worse than that
    mean is negative (not clipped): the held-out R^2 of encoding models (de Heer et al.
    2017; LeBel et al. 2021). A constant observed column has no defined R^2 and gets NaN.

    Parameters
    ----------
    predicted, observed : array of shape (n_samples, n_targets)

    Returns
    -------
    r2 : array of shape (n_targets,)
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    if predicted.shape != observed.shape:
        raise ValueError(f"shape mismatch: {predicted.shape} vs {observed.shape}")
    centred = observed - observed.mean(axis=0)
    total = (centred**2).sum(axis=0)
    residual = ((observed - predicted) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1.0 - residual / total
    scale = np.sqrt(total / len(observed))
    r2[scale <= 1e-12 * (1 + np.abs(observed).max(axis=0, initial=0.0))] = np.nan
    return r2
