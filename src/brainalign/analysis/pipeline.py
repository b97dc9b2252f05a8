"""Aggregate stages on files: tidy score tables, the study's analysis, the summary and figures."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from brainalign import io
from brainalign.analysis.correlations import bits_per_word
from brainalign.analysis.published import load_models_file
from brainalign.analysis.run import compute_study_statistics
from brainalign.analysis.summary import write_summary
from brainalign.analysis.tables import KEY_COLUMNS, SCORE_COLUMNS, read_scores
from brainalign.encoding.columns import PAIR_TEST_COLUMNS

log = logging.getLogger(__name__)


def aggregate_scores(
    brain_paths: Sequence[str | Path],
    layer_paths: Sequence[str | Path],
    behavior_paths: Sequence[str | Path],
    pair_paths: Sequence[str | Path],
    demo: bool,
    brain_out: str | Path,
    layers_out: str | Path,
    behavior_out: str | Path,
    pairs_out: str | Path,
) -> None:
    """Concatenate per-model score files and pair tests into the tidy tables (each labelled
    demo or not). A table with no inputs (a suite without behavioral datasets, or without
    instruction-tuned/base pairs) is written with its key columns and no rows."""
    tables = (
        (brain_paths, brain_out, SCORE_COLUMNS),
        (layer_paths, layers_out, (*KEY_COLUMNS, "layer", "score")),
        (behavior_paths, behavior_out, SCORE_COLUMNS),
        (pair_paths, pairs_out, PAIR_TEST_COLUMNS),
    )
    for paths, out, empty_columns in tables:
        frames = [io.read_tsv(path) for path in paths]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(empty_columns))
        table["demo"] = demo
        io.write_tsv(out, table)


def analyze(
    brain_path: str | Path,
    behavior_path: str | Path,
    pairs_path: str | Path,
    published_dir: str | Path,
    models: Mapping[str, Any],
    demo: bool,
    effect_out: str | Path,
    pair_tests_out: str | Path,
    summary_out: str | Path,
    surprisal_paths: Sequence[str | Path] = (),
) -> None:
    """Run the study's analysis on the suite's scores, compare them with the published
    numbers in ``published_dir``, and write the summary.

    The per-pair tests join the study's FDR family (see :mod:`brainalign.analysis.run`).
    ``surprisal_paths`` (one file per model, on the Natural Stories text) give each model's
    bits per word, a property beside the metadata; none: the property is left out.
    """
    brain, behavior = io.read_tsv(brain_path), io.read_tsv(behavior_path)
    out_dir = Path(effect_out).parent
    if surprisal_paths:
        bits = bits_per_word(surprisal_paths)
    else:
        bits = None
        log.info("no Natural Stories (futrell2018 reader) dataset in the suite: bits_per_word is not a model property")
    pair_tests = compute_study_statistics(
        brain,
        behavior,
        dict(models),
        out_dir,
        published_dir=published_dir,
        pair_tests=io.read_tsv(pairs_path),
        bits=bits,
    )
    io.write_tsv(pair_tests_out, pair_tests)
    write_summary(out_dir, brain, behavior, summary_out, demo, pair_tests)


def analyze_published(
    brain_path: str | Path, behavior_path: str | Path, models_path: str | Path, effect_out: str | Path
) -> None:
    """Run the same analysis on the paper's published per-model scores (no comparison with
    themselves)."""
    selected, registry = load_models_file(models_path, suite="paper")
    brain = read_scores(Path(brain_path), selected, registry)
    behavior = read_scores(Path(behavior_path), selected, registry)
    compute_study_statistics(brain, behavior, selected, Path(effect_out).parent, published_dir=None)
