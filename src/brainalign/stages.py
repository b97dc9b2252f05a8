"""File-level stage functions: each reads its input files, calls the library, writes outputs.

One function per workflow rule whose scientific core lives elsewhere in the package; the
workflow scripts only map Snakemake's input/output/params onto these. They are usable (and
tested) without Snakemake.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from brainalign import io
from brainalign.datasets import reader_module
from brainalign.errors import DataError

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- datasets
def materialize_dataset(name: str, block: Mapping[str, Any], manifest_path: str | Path) -> None:
    """Fetch a dataset's pinned downloads, check every input file exists, record checksums.

    Datasets without public URLs (Wehbe2014) are the user's files: a missing one stops
    with a message saying which files to get from where and where to put them.
    """
    from brainalign.datasets.download import fetch, missing_files_message

    for key, entry in block.get("download", {}).items():
        destination = Path(
            entry.get("dest") or block["files"].get(key) or Path(manifest_path).parent / Path(entry["url"]).name
        )
        if destination.exists():
            continue
        checksum = {algorithm: entry[algorithm] for algorithm in ("sha1", "sha256") if algorithm in entry}
        fetch(entry["url"], destination, checksum)
    recorded = {}
    for key, path in block["files"].items():
        if path is None:
            continue
        path = Path(path)
        if not path.exists():
            raise DataError(missing_files_message(name, block))
        recorded[key] = {"path": str(path), "sha256": io.sha256_file(path) if path.is_file() else None}
    io.write_json(manifest_path, io.provenance(dataset=name, reader=block["reader"], files=recorded))


def prepare_stimuli(block: Mapping[str, Any], out_path: str | Path) -> None:
    """Write the stimuli table of a dataset with its reader."""
    reader_module(block["reader"]).prepare_stimuli(dict(block), out_path)


def prepare_responses(
    block: Mapping[str, Any],
    stimuli_path: str | Path,
    out_path: str | Path,
    simulation_source: str | Path | None = None,
) -> None:
    """Write the response matrix of a dataset; demo readers simulate it from ``simulation_source``."""
    reader = reader_module(block["reader"])
    if simulation_source:
        reader.prepare_responses(dict(block), stimuli_path, out_path, simulation_source=simulation_source)
    else:
        reader.prepare_responses(dict(block), stimuli_path, out_path)


# ----------------------------------------------------------------------------- encoding
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
    from brainalign.encoding.ceiling import compute_ceiling as ceiling_of

    stimuli, responses, rows, neuroids = load_encoding_inputs(stimuli_path, responses_path)
    table, summary = ceiling_of(responses, stimuli, rows, neuroids, dict(options))
    io.write_table(out_path, table, io.provenance(summary=summary, stimuli_sha256=io.stimuli_checksum(stimuli_path)))


def ceiling_value(path: str | Path) -> float:
    """Return the dataset-level ceiling recorded in a ceiling file."""
    value = io.read_metadata(path)["summary"]["ceiling"]
    return np.nan if value is None else float(value)


def fit_encoding(
    protocol: str,
    activations_path: str | Path,
    layer: int,
    stimuli_path: str | Path,
    responses_path: str | Path,
    options: Mapping[str, Any],
    out_path: str | Path,
) -> None:
    """Fit one layer's activations to the responses under a protocol; write per-neuroid results."""
    from brainalign.encoding.aw2024 import fit_aw2024
    from brainalign.encoding.robust import fit_robust

    fit = {"aw2024": fit_aw2024, "robust": fit_robust}[protocol]
    stimuli, responses, rows, neuroids = load_encoding_inputs(stimuli_path, responses_path)
    feature_ids, features = io.read_activations(
        activations_path, layer, expected={"stimuli_sha256": io.stimuli_checksum(stimuli_path)}
    )
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


# ----------------------------------------------------------------------------- scores
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
    fits = {int(meta["layer"]): meta for meta in (io.read_metadata(p) for p in layer_paths)}
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
        from brainalign.encoding.robust import choose_layers

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
        "n_neuroids": int(pq_rows(layer_paths[0])),
    }
    io.write_tsv(layers_out, layers)
    io.write_tsv(model_out, pd.DataFrame([row]))


def pq_rows(path: str | Path) -> int:
    """Number of rows (scored neuroids) of a Parquet file."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def _float(value: Any) -> float:
    return np.nan if value is None else float(value)


def fit_reading_times(
    model: str,
    dataset: str,
    surprisal_path: str | Path,
    stimuli_path: str | Path,
    responses_path: str | Path,
    options: Mapping[str, Any],
    out_path: str | Path,
) -> None:
    """Score a model's surprisal against reading times under every behavioral protocol."""
    from brainalign.behavior.reading_times import score_reading_times

    stimuli = io.read_stimuli(stimuli_path)
    surprisal = io.read_table(surprisal_path)
    expected = io.stimuli_checksum(stimuli_path)
    found = io.read_metadata(surprisal_path).get("stimuli_sha256")
    if found != expected:
        raise DataError(
            f"{surprisal_path} was computed on other stimuli than {stimuli_path}. "
            "Delete it and rerun compute_surprisal."
        )
    row_ids, reading_times, readers, _ = io.read_responses(responses_path)
    order = io.align_rows(pd.Index(stimuli["stimulus_id"]), row_ids, "reading times", str(responses_path))
    scores = score_reading_times(surprisal, stimuli, reading_times[order], readers, dict(options))
    scores.insert(0, "dataset", dataset)
    scores.insert(0, "model", model)
    io.write_tsv(out_path, scores)


def aggregate_scores(
    brain_paths: Sequence[str | Path],
    layer_paths: Sequence[str | Path],
    behavior_paths: Sequence[str | Path],
    demo: bool,
    brain_out: str | Path,
    layers_out: str | Path,
    behavior_out: str | Path,
) -> None:
    """Concatenate per-model score files into the tidy tables (each labelled demo or not)."""
    for paths, out in ((brain_paths, brain_out), (layer_paths, layers_out), (behavior_paths, behavior_out)):
        frames = [io.read_tsv(path) for path in paths]
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        table["demo"] = demo
        io.write_tsv(out, table)


# ----------------------------------------------------------------------------- analysis
def analyze_scores(
    brain_path: str | Path,
    behavior_path: str | Path,
    models: Mapping[str, Any],
    demo: bool,
    effect_out: str | Path,
    summary_out: str | Path,
) -> None:
    """Run the study's analysis on the suite's scores and write the summary."""
    from brainalign.analysis.run import analyze
    from brainalign.analysis.summary import write_summary

    brain, behavior = io.read_tsv(brain_path), io.read_tsv(behavior_path)
    out_dir = Path(effect_out).parent
    analyze(brain, behavior, dict(models), out_dir)
    write_summary(out_dir, brain, behavior, summary_out, demo)


def analyze_published(
    brain_path: str | Path, behavior_path: str | Path, models_path: str | Path, effect_out: str | Path
) -> None:
    """Run the same analysis on the paper's published per-model scores."""
    from brainalign.analysis.run import analyze

    with open(models_path) as handle:
        models = yaml.safe_load(handle)
    analyze(io.read_tsv(brain_path), io.read_tsv(behavior_path), models, Path(effect_out).parent)


def plot_figures(
    brain_path: str | Path,
    layers_path: str | Path,
    behavior_path: str | Path,
    effect_path: str | Path,
    models: Mapping[str, Any],
    demo: bool,
    figure_paths: Sequence[str | Path],
) -> None:
    """Draw every figure into the folder of ``figure_paths`` (PNG and PDF)."""
    from brainalign.plots.figures import plot_figures as draw

    out_dir = Path(figure_paths[0]).parent
    written = draw(
        io.read_tsv(brain_path),
        io.read_tsv(layers_path),
        io.read_tsv(behavior_path),
        Path(effect_path).parent,
        dict(models),
        out_dir,
        demo,
    )
    missing = [str(p) for p in figure_paths if Path(p) not in {Path(w) for w in written}]
    if missing:
        raise DataError(f"figures not drawn: {missing}")
