"""Encoding stages on files: the noise ceiling, one fit per layer, and the model's layer choice."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from brainalign import io
from brainalign.encoding.aw2024 import fit_aw2024
from brainalign.encoding.ceiling import compute_ceiling as ceiling_of
from brainalign.encoding.robust import choose_layers, fit_robust
from brainalign.models.activations import expected_metadata

logger = logging.getLogger(__name__)
PROTOCOL_FITS = {"aw2024": fit_aw2024, "robust": fit_robust}


def load_encoding_inputs(
    stimuli_path: str | Path, responses_path: str | Path
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Read stimuli and responses; return responses with rows matched to the stimuli by id.

    Sentence-level data: one response row per stimulus, reordered to the stimuli order.
    Time series: the response rows stay as they are, and every stimulus' ``response_id``
    must name one of them.
    """
    stimuli = io.read_stimuli(stimuli_path)
    row_ids, responses, neuroids, rows = io.read_responses(responses_path)
    rows = rows.assign(stimulus_id=list(row_ids))
    source = f"{stimuli_path} / {responses_path}"
    if "response_id" in stimuli.columns:
        io.align_rows(pd.Index(stimuli["response_id"].unique()), row_ids, "response rows", source)
        return stimuli, responses, rows.reset_index(drop=True), neuroids
    order = io.align_rows(pd.Index(stimuli["stimulus_id"]), row_ids, "responses", source)
    return stimuli, responses[order], rows.iloc[order].reset_index(drop=True), neuroids


def compute_ceiling(
    stimuli_path: str | Path, responses_path: str | Path, options: Mapping[str, Any], out_path: str | Path
) -> None:
    """Compute a dataset's noise ceiling once; write per-neuroid values and the summary."""
    stimuli, responses, rows, neuroids = load_encoding_inputs(stimuli_path, responses_path)
    table, summary = ceiling_of(responses, stimuli, rows, neuroids, dict(options))
    io.write_table(out_path, table, io.provenance(summary=summary, stimuli_sha256=io.stimuli_checksum(stimuli_path)))


def ceiling_value(path: str | Path) -> float:
    """Return the dataset-level ceiling recorded in a ceiling file."""
    value = io.read_metadata(path)["summary"]["ceiling"]
    return np.nan if value is None else float(value)


def fit_encoding(
    protocol: str,
    model: str,
    activations_path: str | Path,
    layer: int,
    stimuli_path: str | Path,
    responses_path: str | Path,
    model_block: Mapping[str, Any],
    extraction_options: Mapping[str, Any],
    manifest_path: str | Path,
    options: Mapping[str, Any],
    out_path: str | Path,
) -> None:
    """Fit one layer's activations to the responses under a protocol; write per-neuroid results.

    The activation file is refused if its metadata does not match the model's current
    config, the extraction settings and the stimuli (no stale caches).
    """
    fit = PROTOCOL_FITS[protocol]
    stimuli, responses, rows, neuroids = load_encoding_inputs(stimuli_path, responses_path)
    expected = expected_metadata(
        model, dict(model_block), dict(extraction_options), stimuli_path, io.read_json(manifest_path)
    )
    feature_ids, features = io.read_activations(activations_path, layer, expected=expected)
    features = features[io.align_rows(pd.Index(stimuli["stimulus_id"]), feature_ids, "activations", str(activations_path))]
    result = fit(features, responses, stimuli, rows, neuroids, dict(options))
    logger.info("layer %d: %s score %.4f", layer, protocol, result.score)
    io.write_table(
        out_path,
        result.neuroids,
        io.provenance(
            protocol=protocol,
            layer=layer,
            score=result.score,
            ci_low=result.ci_low,
            ci_high=result.ci_high,
            p_value=result.p_value,
            folds=result.folds.to_dict(orient="records"),
            details=result.details,
            stimuli_sha256=io.stimuli_checksum(stimuli_path),
        ),
    )


def score_model(
    protocol: str,
    model: str,
    dataset: str,
    layer_paths: Sequence[str | Path],
    ceiling_path: str | Path,
    n_layers: int,
    model_out: str | Path,
    layers_out: str | Path,
) -> None:
    """Choose the model's layer and normalise by the ceiling (never clipped).

    ``aw2024``: the best layer (max over layers, as in the paper). ``robust``: the layer is
    chosen per outer fold on that fold's training data (inner CV), and the score is the
    mean held-out score of the chosen layers; the max over layers is kept alongside.
    """
    ceiling = ceiling_value(ceiling_path)
    metadata = [io.read_metadata(path) for path in layer_paths]
    fits = {int(meta["layer"]): meta for meta in metadata}
    path_of = {int(meta["layer"]): path for meta, path in zip(metadata, layer_paths)}
    layers = pd.DataFrame(
        {
            "model": model,
            "dataset": dataset,
            "protocol": protocol,
            "layer": sorted(fits),
            "relative_depth": [layer / n_layers for layer in sorted(fits)],
            "score": [fits[layer]["score"] for layer in sorted(fits)],
        }
    )
    layers["score"] = layers["score"].astype(float)
    layers["ceiling"] = ceiling
    layers["normalized_score"] = layers["score"] / ceiling
    best = int(layers.loc[layers["score"].idxmax(), "layer"])
    if protocol == "robust":
        per_layer_folds = {layer: pd.DataFrame(meta["folds"]) for layer, meta in fits.items()}
        score, choices = choose_layers(per_layer_folds)[:2]
        chosen = int(pd.Series(choices["layer"]).mode().iloc[0])
        layer_choice = "nested"
    else:
        chosen, score, layer_choice = best, float(layers["score"].max()), "max"
    meta = fits[chosen]
    row = {
        "model": model,
        "dataset": dataset,
        "protocol": protocol,
        "layer": chosen,
        "n_layers": n_layers,
        "relative_depth": chosen / n_layers,
        "layer_choice": layer_choice,
        "score": float(score),
        "score_max_layer": float(layers["score"].max()),
        "ceiling": ceiling,
        "normalized_score": float(score) / ceiling,
        "ci_low": _float(meta.get("ci_low")),
        "ci_high": _float(meta.get("ci_high")),
        "p_value": _float(meta.get("p_value")),
        "n_neuroids": scored_neuroids(path_of[chosen]),
    }
    io.write_tsv(layers_out, layers)
    io.write_tsv(model_out, pd.DataFrame([row]))


def scored_neuroids(path: str | Path) -> int:
    """Distinct neuroids with a defined r in a layer's fit (a neuroid scored in several
    partitions counts once)."""
    table = pq.read_table(path, columns=["neuroid_id", "r"]).to_pandas()
    return int(table.loc[table["r"].notna(), "neuroid_id"].nunique())


def _float(value: Any) -> float:
    return np.nan if value is None else float(value)
