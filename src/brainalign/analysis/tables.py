"""Score tables as the analysis sees them: validation and the dataset average.

The aggregate stage writes one row per (model, dataset, protocol). The analysis uses the
``score`` column: the raw score (for ``aw2024`` the paper's raw Pearson r at the best
layer), because that is what the paper compares; ceiling-normalized scores stay in the
tables for the reader.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from brainalign.errors import DataError
from brainalign.io import read_tsv

logger = logging.getLogger(__name__)

AVERAGE = "average"
KEY_COLUMNS = ("model", "dataset", "protocol")
SCORE_COLUMNS = (*KEY_COLUMNS, "score")


def validate_scores(frame: pd.DataFrame, source: str, models: Mapping[str, Mapping]) -> pd.DataFrame:
    """Check a score table against the contract and the model registry; return its score columns.

    Parameters
    ----------
    frame : DataFrame
        A brain or behavior score table.
    source : str
        Its file name, used in error messages.
    models : mapping
        Model name -> config block; every model in the table must be there.

    Raises
    ------
    DataError
        For a missing column, a non-numeric score, an ``average`` row, a duplicated
        (model, dataset, protocol) row, or a model that the configuration does not define.
    """
    missing = [column for column in SCORE_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: the score table lacks column(s) {missing}; it needs {list(SCORE_COLUMNS)}. "
            "Regenerate it with the aggregate stage (`snakemake --forcerun aggregate_scores`)."
        )
    scores = frame[list(SCORE_COLUMNS)].copy()
    scores["score"] = pd.to_numeric(scores["score"], errors="coerce")
    bad_score = scores["score"].isna() & frame["score"].notna()
    if bad_score.any():
        raise DataError(
            f"{source}: non-numeric score {frame.loc[bad_score, 'score'].iloc[0]!r} "
            f"(model {frame.loc[bad_score, 'model'].iloc[0]!r}). Scores must be numbers or NA."
        )
    if (scores["dataset"] == AVERAGE).any():
        raise DataError(
            f"{source}: has rows with dataset '{AVERAGE}'; the analysis computes the dataset "
            "average itself. Remove those rows."
        )
    duplicated = scores.duplicated(list(KEY_COLUMNS), keep=False)
    if duplicated.any():
        first = scores.loc[duplicated, list(KEY_COLUMNS)].iloc[0].to_dict()
        raise DataError(
            f"{source}: {int(duplicated.sum())} rows share a (model, dataset, protocol) key "
            f"(first: {first}). Each combination must appear once: rerun the aggregate stage."
        )
    unknown = sorted(set(scores["model"]) - set(models))
    if unknown:
        raise DataError(
            f"{source}: model(s) {unknown[:5]} are not defined in the model configuration. "
            "Add their config blocks (family, parameters, instruction_tuned, base) or drop their rows."
        )
    return scores.dropna(subset=["score"]).reset_index(drop=True)


def with_dataset_average(scores: pd.DataFrame) -> pd.DataFrame:
    """Append per-model ``average`` rows: the mean score over the datasets the model has.

    The average is added for a protocol only when it has at least two datasets (a single
    dataset's average would repeat it). The paper's brain score is this mean over
    Pereira2018, Blank2014 and Wehbe2014; a model missing a dataset is averaged over the
    ones it has, and ``n_datasets`` records how many.
    """
    scores = scores.assign(n_datasets=1)
    datasets_per_protocol = scores.groupby("protocol")["dataset"].nunique()
    several = scores[scores["protocol"].map(datasets_per_protocol) >= 2]
    average = (
        several.groupby(["protocol", "model"], as_index=False)
        .agg(score=("score", "mean"), n_datasets=("dataset", "nunique"))
        .assign(dataset=AVERAGE)
    )
    return pd.concat([scores, average[scores.columns]], ignore_index=True)


def read_scores(path: Path, selected: dict, registry: dict) -> pd.DataFrame:
    """Read a score table, keeping the selected models; rows of other defined models are dropped."""
    frame = read_tsv(path)
    if "model" in frame.columns:
        outside = frame["model"].isin(registry) & ~frame["model"].isin(selected)
        if outside.any():
            logger.info("%s: %d rows of models outside the suite left out", path, int(outside.sum()))
        frame = frame[~outside].reset_index(drop=True)
    frame.attrs["source"] = str(path)
    return frame
