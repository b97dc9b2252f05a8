"""Control feature bands: what a brain response might track besides the model's content.

Each band is a (n_rows x n_features) matrix aligned with the response rows:

``length``
    Sentence data: the number of words of the sentence. Time series: the word rate,
    i.e. the number of units (words) presented in the response row (TR).
``position``
    Sentence data: the position of the sentence in its passage. Time series: the
    index of the TR within its run (position in the story).
``oasm``
    The "orthogonal autocorrelated sequences model" of Feghhi, Hadidi et al. (2024,
    "What are large language models mapping to in the human brain? A case study on
    Pereira et al. 2018"): a feature space that knows nothing
    about language, only which stream a row belongs to and where in it. Row ``i``
    has one feature per row ``j``, ``exp(-(p_i - p_j)^2 / (2 width^2))`` when ``i``
    and ``j`` are in the same context group (passage, run) and 0 otherwise: an
    identity matrix blurred along position within each group. Under shuffled splits
    it predicts any signal that is autocorrelated within a group (it interpolates
    between neighbours); under grouped splits its held-out prediction is zero, which
    is exactly what a leakage-free protocol should show.
"""

from __future__ import annotations

import numpy as np

from brainalign.errors import ConfigError

CONTROL_NAMES = ("length", "position", "oasm")
ROW_INDEXED_CONTROLS = ("oasm",)
"""Bands with one column per row: a fold keeps its training rows' columns only."""


def word_counts(texts: np.ndarray) -> np.ndarray:
    """Number of whitespace-separated words of each text."""
    return np.array([len(str(text).split()) for text in texts], dtype=np.float64)


def index_within_group(groups: np.ndarray) -> np.ndarray:
    """0-based index of each sample within its (contiguous or not) group, in order."""
    groups = np.asarray(groups)
    index = np.zeros(len(groups), dtype=np.float64)
    for label in np.unique(groups):
        members = np.flatnonzero(groups == label)
        index[members] = np.arange(len(members))
    return index


def oasm(groups: np.ndarray, positions: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Orthogonal autocorrelated sequences features (see the module docstring).

    Parameters
    ----------
    groups : array of shape (n_rows,)
        Context group of each row.
    positions : array of shape (n_rows,)
        Position of each row within its group.
    width : float
        Standard deviation of the Gaussian over positions, in position units.

    Returns
    -------
    features : array of shape (n_rows, n_rows)
    """
    if width <= 0:
        raise ConfigError(f"protocols.robust.oasm_width must be positive, got {width}")
    groups = np.asarray(groups)
    positions = np.asarray(positions, dtype=np.float64)
    same_group = groups[:, None] == groups[None, :]
    distance = positions[:, None] - positions[None, :]
    return np.where(same_group, np.exp(-(distance**2) / (2 * width**2)), 0.0)


def control_bands(
    names: list[str],
    lengths: np.ndarray,
    positions: np.ndarray,
    groups: np.ndarray,
    oasm_width: float = 1.0,
) -> dict[str, np.ndarray]:
    """Build the requested control bands from per-row lengths, positions and groups.

    Parameters
    ----------
    names : list of str
        Bands to build, a subset of ``CONTROL_NAMES``.
    lengths : array of shape (n_rows,)
        Words per sentence (sentence data) or units per TR (time series).
    positions : array of shape (n_rows,)
        Position within the context group (passage or run).
    groups : array of shape (n_rows,)
        Context group of each row (passage or run).
    oasm_width : float
        Gaussian width of the OASM band, in position units.

    Returns
    -------
    bands : dict of name -> array of shape (n_rows, n_band_features)
    """
    unknown = sorted(set(names) - set(CONTROL_NAMES))
    if unknown:
        raise ConfigError(f"protocols.robust.controls has unknown band(s) {unknown}: choose from {list(CONTROL_NAMES)}")
    builders = {
        "length": lambda: np.asarray(lengths, dtype=np.float64)[:, None],
        "position": lambda: np.asarray(positions, dtype=np.float64)[:, None],
        "oasm": lambda: oasm(groups, positions, oasm_width),
    }
    return {name: builders[name]() for name in names}
