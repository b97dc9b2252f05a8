"""``brainalign encode``: score features against responses from plain ``.npy`` arrays."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from brainalign.encoding.controls import index_within_group
from brainalign.errors import DataError
from brainalign.io import write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``encode`` subcommand."""
    parser = subparsers.add_parser(
        "encode",
        help="fit an encoding model from features to responses (rows aligned) and write the scores",
        description="Fit an encoding model (stimuli x features -> stimuli x neuroids) under a protocol.",
    )
    parser.add_argument("--features", required=True, type=Path, help="stimuli x features .npy")
    parser.add_argument(
        "--responses", required=True, type=Path, help="stimuli x neuroids .npy (rows aligned with --features)"
    )
    parser.add_argument("--protocol", choices=("aw2024", "robust"), default="aw2024")
    parser.add_argument("--groups", type=Path, help="per-stimulus CV group .npy (passage, story, run)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where the fits run (cuda: himalaya's torch_cuda backend; auto: cuda when PyTorch sees a GPU)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output JSON")
    parser.set_defaults(func=run_encode)


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{path} ({what}) does not exist. Check the path.")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise DataError(f"{path} ({what}) is not a plain numeric .npy file ({error}). Save it with np.save.") from error


def minimal_tables(
    n_stimuli: int, n_neuroids: int, groups: np.ndarray | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stimuli, response-row and neuroid tables for bare arrays (one partition, one subject)."""
    ids = [f"s{index:06d}" for index in range(n_stimuli)]
    cv_group = np.asarray(groups).astype(str) if groups is not None else np.array(ids)
    stimuli = pd.DataFrame(
        {
            "stimulus_id": ids,
            "context_group": cv_group,
            "position": index_within_group(cv_group),
            "text": ids,
            "cv_group": cv_group,
            "partition": "all",
        }
    )
    neuroids = pd.DataFrame(
        {"neuroid_id": [f"n{i:06d}" for i in range(n_neuroids)], "subject": "subject", "roi": "all"}
    )
    return stimuli, pd.DataFrame({"stimulus_id": ids}), neuroids


def run_encode(args: argparse.Namespace) -> None:
    """Handler of ``brainalign encode``."""
    features = _load_array(args.features, "features")
    responses = _load_array(args.responses, "responses")
    groups = _load_array(args.groups, "groups") if args.groups else None
    if features.ndim != 2 or responses.ndim != 2 or len(features) != len(responses):
        raise DataError(
            f"--features {features.shape} and --responses {responses.shape} must be 2-D with the same number of rows."
        )
    if groups is not None and groups.shape != (len(features),):
        raise DataError(f"--groups has shape {groups.shape}; it needs one value per stimulus ({len(features)}).")
    stimuli, rows, neuroids = minimal_tables(len(features), responses.shape[1], groups)
    if args.protocol == "robust":
        from brainalign.encoding.robust import fit_robust as fit

        options = {"device": args.device}
    else:
        from brainalign.encoding.aw2024 import fit_aw2024 as fit
        from brainalign.encoding.robust import fit_backend

        # The paper protocol's large products run on the himalaya backend of the device.
        options = {"backend": fit_backend(args.device, "numpy")}
    result = fit(features, responses, stimuli, rows, neuroids, options)
    # Dropped (NaN) neuroids come back as NaN so the list matches the response columns.
    neuroid_r = result.neuroids.groupby("neuroid_id")["r"].mean().reindex(neuroids["neuroid_id"])
    write_json(
        args.out,
        {
            "protocol": args.protocol,
            "score": result.score,
            "ci_low": result.ci_low,
            "ci_high": result.ci_high,
            "p_value": result.p_value,
            "neuroid_r": neuroid_r.to_numpy(),
            "folds": result.folds.to_dict(orient="list"),
            "details": result.details,
        },
    )
