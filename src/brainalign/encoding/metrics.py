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
