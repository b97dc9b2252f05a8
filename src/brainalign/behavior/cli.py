"""``brainalign score-reading-times``: score per-word predictions against Natural Stories reading times."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from brainalign import io
from brainalign.behavior.reading_times import score_reading_times
from brainalign.datasets import futrell2018
from brainalign.errors import DataError


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read a predictions table (``item``, ``zone``, ``value``) as a surprisal table."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist. Give a TSV with columns item, zone, value (one row per corpus word).")
    frame = pd.read_csv(path, sep="\t")
    missing = [c for c in ("item", "zone", "value") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing} (found {list(frame.columns)}); it needs item, zone, value.")
    ids = futrell2018.stimulus_ids(frame["item"], frame["zone"])
    return pd.DataFrame({"stimulus_id": ids, "surprisal_bits": frame["value"].astype(float)})


def reading_time_files(path: str | Path) -> dict:
    """Map a Natural Stories folder or a Brain-Score assembly file to the dataset's ``files``."""
    path = Path(path)
    if path.is_dir():
        return {"naturalstories": str(path), "assembly": None}
    if path.suffix == ".nc":
        return {"naturalstories": None, "assembly": str(path)}
    raise DataError(f"{path}: not a Natural Stories folder nor a Brain-Score assembly (.nc). Check --reading-times.")


def run(args: argparse.Namespace) -> None:
    """Score the predictions and write the chosen protocol's result as JSON."""
    files = reading_time_files(args.reading_times)
    options = {"alignment": args.alignment, "reading_times": "auto", "context": "corpus"}
    stimuli = futrell2018.load_stimuli(files, "corpus")
    times = futrell2018.load_reading_times(files, options)
    scores = score_reading_times(
        read_predictions(args.predictions),
        stimuli,
        times.matrix,
        times.readers,
        {"alignment": args.alignment, "n_bootstrap": args.n_bootstrap},
    )
    result = scores.set_index("protocol").loc[args.protocol].to_dict()
    io.write_json(args.out, {"protocol": args.protocol, **result, "reading_times": times.info})


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``score-reading-times`` subcommand."""
    parser = subparsers.add_parser(
        "score-reading-times",
        help="score per-word predictions against Natural Stories reading times",
        description="Score one value per Natural Stories word (e.g. surprisal) against reading times.",
    )
    parser.add_argument("--predictions", required=True, help="TSV with columns item, zone, value (corpus order)")
    parser.add_argument(
        "--reading-times", required=True, help="Natural Stories folder or Brain-Score assy_Futrell2018.nc"
    )
    parser.add_argument("--alignment", choices=futrell2018.ALIGNMENTS, default="brainscore2022")
    parser.add_argument("--protocol", choices=("aw2024", "regression"), default="aw2024")
    parser.add_argument("--n-bootstrap", type=int, default=1000, help="sentence-bootstrap samples for the CIs")
    parser.add_argument("--out", required=True, help="result JSON")
    parser.set_defaults(func=run)
