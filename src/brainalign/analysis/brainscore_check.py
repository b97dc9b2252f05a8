"""Does this installation reproduce Brain-Score? Our aw2024 scores against the values that
Brain-Score language pins in its integration tests.

The pinned values come from ``tests/test_integration.py`` of brain-score/language at the
commit the paper ran (91c88b1, the archive in ``../shared/reference/brainscore-aw2024``):
ceiling-normalised scores of models at their committed layer (``region_layer_mapping``),
asserted there to within 0.0005. Brain-Score normalises each benchmark by its own ceiling
and clips the result to [0, 1] (``brainscore_language.utils.ceiling.ceiling_normalize``):
Pereira2018 per experiment, by the precomputed ceiling; Futrell2018 by the split-half ceiling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainalign import io
from brainalign.errors import DataError

TOLERANCE = 0.0005
"""The absolute tolerance of Brain-Score's own integration test."""
SOURCE = "brain-score/language@91c88b1 tests/test_integration.py"


@dataclass(frozen=True)
class PinnedScore:
    """One value Brain-Score's integration tests assert.

    ``partition`` names the experiment of a neural benchmark (None for behavior).
    """

    model: str
    benchmark: str
    reader: str
    partition: str | None
    expected: float


PINNED = (
    PinnedScore("distilgpt2", "Pereira2018.243sentences-linear", "pereira2018", "243sentences", 0.82228507),
    PinnedScore("distilgpt2", "Futrell2018-pearsonr", "futrell2018", None, 0.36144805),
    PinnedScore("gpt2-xl", "Futrell2018-pearsonr", "futrell2018", None, 0.31825621),
)

CHECK_COLUMNS = [
    "model",
    "benchmark",
    "dataset",
    "layer",
    "raw",
    "ceiling",
    "score",
    "expected",
    "difference",
    "tolerance",
    "passed",
    "source",
]


def ceiling_normalize(raw: float, ceiling: float) -> float:
    """Brain-Score's normalisation: raw / ceiling, clipped to [0, 1]."""
    return float(np.clip(raw / ceiling, 0.0, 1.0))


def neural_score(fit_path: str | Path, ceiling_path: str | Path, partition: str) -> dict[str, float]:
    """Raw score of one partition in an aw2024 layer fit, its ceiling, and the normalised score."""
    fit = io.read_metadata(fit_path)
    partitions = (fit.get("details") or {}).get("partitions") or {}
    ceilings = (io.read_metadata(ceiling_path).get("summary") or {}).get("partitions") or {}
    for name, found, path in (("layer fit", partitions, fit_path), ("ceiling", ceilings, ceiling_path)):
        if partition not in found:
            raise DataError(f"{path}: the {name} has no partition {partition!r} (it has {sorted(found)}).")
    raw, ceiling = float(partitions[partition]["score"]), float(ceilings[partition]["ceiling"])
    return {"layer": int(fit["layer"]), "raw": raw, "ceiling": ceiling, "score": ceiling_normalize(raw, ceiling)}


def behavior_score(behavior_path: str | Path) -> dict[str, float]:
    """The aw2024 reading-time row of a model: |r|, the split-half ceiling, the normalised score."""
    table = io.read_tsv(behavior_path)
    rows = table[table["protocol"] == "aw2024"]
    if len(rows) != 1:
        raise DataError(f"{behavior_path}: expected one aw2024 row, found {len(rows)}.")
    row = rows.iloc[0]
    raw, ceiling = float(row["score"]), float(row["ceiling"])
    return {"layer": None, "raw": raw, "ceiling": ceiling, "score": ceiling_normalize(raw, ceiling)}


def check_row(pinned: PinnedScore, dataset: str, measured: Mapping[str, float], tolerance: float = TOLERANCE) -> dict:
    """A pass/fail row: ours against the pinned value."""
    difference = measured["score"] - pinned.expected
    return {
        "model": pinned.model,
        "benchmark": pinned.benchmark,
        "dataset": dataset,
        **measured,
        "expected": pinned.expected,
        "difference": difference,
        "tolerance": tolerance,
        "passed": bool(abs(difference) <= tolerance),
        "source": SOURCE,
    }


def planned_checks(models: Mapping[str, Mapping], datasets: Mapping[str, Mapping]) -> list[dict[str, str]]:
    """The pinned scores a suite can check, with the files each reads.

    Parameters
    ----------
    models, datasets : mapping
        The suite's model and dataset blocks (a model needs its ``committed_layer`` for a
        neural benchmark: Brain-Score scores the committed layer only).

    Returns
    -------
    list of dict
        ``model``, ``benchmark``, ``dataset`` and either ``partition``, ``fit`` (the aw2024
        layer fit of the committed layer) and ``ceiling``, or ``behavior`` (the model's
        reading-time scores).
    """
    checks = []
    for pinned in PINNED:
        for dataset, block in datasets.items():
            if pinned.model not in models or block["reader"] != pinned.reader:
                continue
            check = {"model": pinned.model, "benchmark": pinned.benchmark, "dataset": dataset}
            if pinned.partition is None:
                check["behavior"] = f"results/behavior/{dataset}/{pinned.model}.tsv"
            else:
                layer = models[pinned.model].get("committed_layer")
                if layer is None:
                    raise DataError(
                        f"models.{pinned.model} needs committed_layer (Brain-Score scores {pinned.benchmark} "
                        "at the committed layer only)."
                    )
                check.update(
                    partition=pinned.partition,
                    fit=f"results/encoding/aw2024/{dataset}/{pinned.model}/layer-{layer}.parquet",
                    ceiling=f"results/ceiling/aw2024/{dataset}.parquet",
                )
            checks.append(check)
    return checks


def check_brainscore(
    checks: Sequence[Mapping[str, str]], out_path: str | Path, tolerance: float = TOLERANCE
) -> pd.DataFrame:
    """Compare the suite's scores with Brain-Score's pinned values and write the pass/fail table.

    Parameters
    ----------
    checks : sequence of mapping
        From :func:`planned_checks`.
    out_path : path
        The TSV to write (:data:`CHECK_COLUMNS`).
    """
    pinned = {(p.model, p.benchmark): p for p in PINNED}
    rows = []
    for check in checks:
        if "behavior" in check:
            measured = behavior_score(check["behavior"])
        else:
            measured = neural_score(check["fit"], check["ceiling"], check["partition"])
        rows.append(check_row(pinned[(check["model"], check["benchmark"])], check["dataset"], measured, tolerance))
    table = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    io.write_tsv(out_path, table)
    return table
