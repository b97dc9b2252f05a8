"""Per-neuroid held-out R^2 of encoding models (Pearson r lives in :mod:`brainalign.stats`)."""

from __future__ import annotations

import numpy as np


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
