"""The result of fitting one layer's features to one dataset's responses under a protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class EncodingResult:
    """Per-neuroid and per-fold outcome of an encoding fit.

    Attributes
    ----------
    neuroids : DataFrame
        One row per scored neuroid: ``neuroid_id``, ``subject``, ``r`` (mean over folds),
        ``alpha`` (chosen penalty, NaN for OLS), plus protocol-specific columns
        (e.g. ``r_fold_0``..., ``r_controls``, ``r_unique``).
    folds : DataFrame
        One row per (``partition``, ``fold``): ``test_score`` (the protocol's aggregate over
        neuroids on the held-out data) and ``inner_score`` (the same aggregate estimated on
        the training data only, by inner CV; NaN where the protocol has none). Folds are
        identical across layers of one dataset, so the nested layer choice can compare them.
    score : float
        The protocol's aggregate score for this layer.
    ci_low, ci_high : float
        Bootstrap confidence bounds of ``score`` (NaN where not computed).
    p_value : float
        Permutation p-value of ``score`` against the null of no relation (NaN where not computed).
    details : dict
        Counts and diagnostics (dropped NaN neuroids, constant neuroids, alphas on the grid
        edge, control-band scores, ...), JSON-serialisable.
    """

    neuroids: pd.DataFrame
    folds: pd.DataFrame
    score: float
    ci_low: float = np.nan
    ci_high: float = np.nan
    p_value: float = np.nan
    details: dict[str, Any] = field(default_factory=dict)
