"""The paper's published numbers (resources/published) and our difference from them.

``brain.tsv`` and ``behavior.tsv`` follow the score-table schema with protocol ``aw2024``
and ``score`` = the published raw Pearson r (Tables 5 and 9 of Aw et al. 2024);
``models.yaml`` holds the model metadata of Table 7 and the model sets of the paper.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import yaml

from brainalign.analysis.tables import with_dataset_average
from brainalign.errors import ConfigError
from brainalign.io import read_tsv

log = logging.getLogger(__name__)

PUBLISHED_DIR = Path(__file__).resolve().parents[1] / "published"
"""Package data (``resources/published`` in a checkout links to it)."""
PUBLISHED_PROTOCOL = "aw2024"


def load_models_file(path: str | Path, suite: str | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
    """Read a models file (``models:`` name -> block, optional ``suites:`` name -> model list).

    Returns
    -------
    selected, registry : dict
        The suite's models (all models when ``suite`` is None) and every model defined.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{path} does not exist. Point --models at a models file such as resources/published/models.yaml."
        )
    document = yaml.safe_load(path.read_text()) or {}
    registry = document.get("models")
    if not isinstance(registry, dict) or not registry:
        raise ConfigError(f"{path}: needs a non-empty 'models:' mapping of model name -> config block.")
    if suite is None:
        return dict(registry), dict(registry)
    suites = document.get("suites") or {}
    if suite not in suites:
        raise ConfigError(
            f"{path}: no suite {suite!r}; it defines {sorted(suites)}. Pick one of those or omit --suite."
        )
    undefined = sorted(set(suites[suite]) - set(registry))
    if undefined:
        raise ConfigError(
            f"{path}: suite {suite!r} lists undefined models {undefined}. Add their blocks under 'models:'."
        )
    return {name: registry[name] for name in suites[suite]}, dict(registry)


def published_scores(alignment: str, published_dir: str | Path = PUBLISHED_DIR) -> pd.DataFrame | None:
    """Return the published score table for ``brain`` or ``behavior``, or None if not available."""
    path = Path(published_dir) / f"{alignment}.tsv"
    if not path.exists():
        log.info("no published %s scores at %s: comparison skipped", alignment, path)
        return None
    return read_tsv(path)[["model", "dataset", "protocol", "score"]]


def compare_with_published(ours: pd.DataFrame, published: pd.DataFrame, alignment: str) -> pd.DataFrame:
    """Ours minus published per model and dataset (and dataset average) under protocol aw2024.

    Both averages are computed the same way (:func:`with_dataset_average`), over the
    (model, dataset) scores both sides have, so they average the same datasets.

    Returns
    -------
    DataFrame
        Columns alignment, model, dataset, ours, published, difference.
    """
    ours = ours[ours["protocol"] == PUBLISHED_PROTOCOL]
    published = published[published["protocol"] == PUBLISHED_PROTOCOL]
    shared = ours[["model", "dataset"]].merge(published[["model", "dataset"]])
    ours, published = (with_dataset_average(frame.merge(shared)) for frame in (ours, published))
    merged = ours.merge(published, on=["model", "dataset", "protocol"], suffixes=("_ours", "_published"))
    table = pd.DataFrame(
        {
            "alignment": alignment,
            "model": merged["model"],
            "dataset": merged["dataset"],
            "ours": merged["score_ours"],
            "published": merged["score_published"],
            "difference": merged["score_ours"] - merged["score_published"],
        }
    )
    return table.sort_values(["dataset", "model"]).reset_index(drop=True)
