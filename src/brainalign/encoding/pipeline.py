"""Encoding stages on files: the noise ceiling, one fit per layer, and the model's layer choice."""

from __future__ import annotations

import functools
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign import io
from brainalign.encoding import registry
from brainalign.encoding.columns import PAIR_TEST_COLUMNS
from brainalign.errors import ConfigError, DataError
from brainalign.models.extraction_options import expected_metadata
from brainalign.stats import paired_sign_flip_test, reach_columns, sign_flip_p_min

logger = logging.getLogger(__name__)
# Each stage imports the protocol modules it uses when it runs (through the registry or
# in the function): a job then loads only its own protocol's stack.
HEADLINE_MEASURE = {"aw2024": "r", "robust": "score"}
"""The per-neuroid measure (``<measure>_fold_<k>`` in a layer's neuroid table) that each
protocol's score aggregates: aw2024 the paper's Pearson r, robust the held-out R^2 gain."""


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
    protocol: str,
    stimuli_path: str | Path,
    responses_path: str | Path,
    options: Mapping[str, Any],
    out_path: str | Path,
) -> None:
    """Compute a dataset's noise ceiling under a protocol once; write per-neuroid values and the summary.

    ``options["published"]`` (partition -> Brain-Score ceiling file) reads Brain-Score's
    precomputed ceilings instead, as the paper's code does for Pereira2018."""
    stimuli, responses, rows, neuroids = load_encoding_inputs(stimuli_path, responses_path)
    options = dict(options)
    published = options.pop("published", None)
    if published:
        from brainalign.encoding.ceiling import published_ceiling

        table, summary = published_ceiling(stimuli, published)
    else:
        table, summary = registry.ceiling(protocol, options)(responses, stimuli, rows, neuroids, options)
    io.write_table(
        out_path, table, io.result_metadata(summary=summary, stimuli_sha256=io.stimuli_checksum(stimuli_path))
    )


def ceiling_value(path: str | Path) -> tuple[float, str | None]:
    """Return the dataset-level ceiling recorded in a ceiling file and its measure (``r``, ``R^2``)."""
    summary = io.read_metadata(path)["summary"]
    value = summary["ceiling"]
    return (np.nan if value is None else float(value)), summary.get("measure")


def fit_controls(
    stimuli_path: str | Path, responses_path: str | Path, options: Mapping[str, Any], out_path: str | Path
) -> None:
    """Fit the robust protocol's controls-only model once per dataset; write its held-out r."""
    stimuli, responses, rows, neuroids = load_encoding_inputs(stimuli_path, responses_path)
    from brainalign.encoding.robust import controls_only_fit

    table = controls_only_fit(stimuli, responses, rows, neuroids, dict(options))
    io.write_table(
        out_path,
        table,
        io.result_metadata(
            controls=list(options.get("controls", [])), stimuli_sha256=io.stimuli_checksum(stimuli_path)
        ),
    )


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
    controls_path: str | Path | None = None,
) -> None:
    """Fit one layer's activations to the responses under a protocol; write per-neuroid results.

    The activation file is refused if its metadata does not match the model's current
    config, the extraction settings and the stimuli (no stale caches); its metadata is
    copied into the fit's (``activations``), for the score rows. ``controls_path``
    (robust only) holds the dataset's controls-only fit (:func:`fit_controls`).
    """
    fit = registry.layer_fit(protocol, options)
    if controls_path is not None:
        fit = functools.partial(fit, controls=io.read_table(controls_path))
    stimuli, responses, rows, neuroids = load_encoding_inputs(stimuli_path, responses_path)
    expected = expected_metadata(
        model, dict(model_block), dict(extraction_options), stimuli_path, io.read_json(manifest_path)
    )
    feature_ids, features = io.read_activations(activations_path, layer, expected=expected)
    features = features[
        io.align_rows(pd.Index(stimuli["stimulus_id"]), feature_ids, "activations", str(activations_path))
    ]
    result = fit(features, responses, stimuli, rows, neuroids, dict(options))
    logger.info("layer %d: %s score %.4f", layer, protocol, result.score)
    io.write_table(
        out_path,
        result.neuroids,
        io.result_metadata(
            protocol=protocol,
            layer=layer,
            score=result.score,
            ci_low=result.ci_low,
            ci_high=result.ci_high,
            p_value=result.p_value,
            folds=result.folds.to_dict(orient="records"),
            details=result.details,
            activations=io.read_metadata(activations_path),
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
    neuroids_out: str | Path,
    layer_rule: str = "max_per_dataset",
    committed_layer: int | None = None,
) -> None:
    """Choose the model's layer and normalise by the protocol's own ceiling (never clipped).

    ``aw2024`` chooses by ``layer_rule`` (see :func:`aw2024_layer_choice`). ``robust``: the
    layer is chosen per outer fold on that fold's training data (inner CV of the headline),
    and the score is the mean held-out headline of the chosen layers, with the joint,
    controls-only and LLM-only R^2 and the r-scale scores of the same choice beside it
    (``score_joint`` ...), and the CI and p-value of that nested score (each fold's crossed
    bootstrap and permutation scores of the layer chosen there, :func:`fold_inference`);
    ``layer`` is the layer chosen in most folds. ``aw2024`` rows carry the CI and p-value of
    the layer of most folds. Either way the row keeps the max over layers (``score_max_layer`` at
    ``max_layer``) beside the chosen score, and says how the score was made
    (:func:`provenance_columns`). ``neuroids_out`` gets each neuroid's measures under the
    same choice (see :func:`chosen_neuroid_scores`), the input of the paired tests between
    models. ``normalized_score = score / ceiling`` with ``ceiling_path`` the protocol's own
    ceiling (:data:`brainalign.encoding.registry.CEILINGS`; ``ceiling_measure`` says its scale: r for aw2024,
    held-out R^2 for robust, whose headline is an R^2 gain).
    """
    ceiling, ceiling_measure = ceiling_value(ceiling_path)
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
    if layers["score"].isna().all():
        details = (fits[min(fits)].get("details") or {}) if fits else {}
        raise DataError(
            f"{model} on {dataset} ({protocol}): every layer's score is NaN (e.g. {layer_paths[0]}; "
            f"{details.get('n_neuroids_constant', 'some')} neuroids gave constant predictions or responses), so no "
            "layer can be chosen. Check the dataset's responses (prepare_responses) and the protocol's settings."
        )
    best = int(layers.loc[layers["score"].idxmax(), "layer"])
    if protocol == "robust":
        _check_same_resampling(fits, model, dataset)
        per_layer_folds = {layer: pd.DataFrame(meta["folds"]) for layer, meta in fits.items()}
        from brainalign.encoding.robust import choose_layers, fold_inference

        nested, choices = choose_layers(per_layer_folds)
        score, companions = nested["score"], {name: value for name, value in nested.items() if name != "score"}
        layer_choice = "nested"
    else:
        score, choices = aw2024_layer_choice(fits, layer_rule, committed_layer, model)
        companions, layer_choice = {}, layer_rule
    chosen = int(pd.Series(choices["layer"]).mode().iloc[0])
    meta = fits[chosen]
    if protocol == "robust":
        inference = fold_inference(choices, float(meta["details"]["confidence_level"]))
    else:
        inference = {key: _float(meta.get(key)) for key in ("ci_low", "ci_high", "p_value")}
        inference["p_min"] = _float((meta.get("details") or {}).get("p_min"))
    neuroid_scores = chosen_neuroid_scores(path_of, choices, HEADLINE_MEASURE[protocol])
    row = {
        "model": model,
        "dataset": dataset,
        "protocol": protocol,
        "layer": chosen,
        "n_layers": n_layers,
        "relative_depth": chosen / n_layers,
        "layer_choice": layer_choice,
        "layers_by_partition": _layers_by_partition(choices),
        "score": float(score),
        **companions,
        "max_layer": best,
        "score_max_layer": float(layers["score"].max()),
        "ceiling": ceiling,
        "ceiling_measure": ceiling_measure,
        "normalized_score": float(score) / ceiling,
        "ci_low": inference["ci_low"],
        "ci_high": inference["ci_high"],
        "p_value": inference["p_value"],
        **reach_columns(inference["p_value"], inference["p_min"]),
        # A neuroid scored in several partitions counts once.
        "n_neuroids": int(neuroid_scores.loc[neuroid_scores["score"].notna(), "neuroid_id"].nunique()),
        **provenance_columns(meta),
    }
    io.write_table(
        neuroids_out,
        neuroid_scores,
        io.result_metadata(model=model, dataset=dataset, protocol=protocol, layer_choice=layer_choice),
    )
    io.write_tsv(layers_out, layers)
    io.write_tsv(model_out, pd.DataFrame([row]))


def _check_same_resampling(fits: Mapping[int, Mapping[str, Any]], model: str, dataset: str) -> None:
    """Require every layer's bootstrap and permutation draws to be the same (same subjects,
    counts, scheme and seed), so that the chosen layers' fold scores pair up resample by resample."""
    settings = {
        layer: json.dumps((meta.get("details") or {}).get("resampling"), sort_keys=True) for layer, meta in fits.items()
    }
    if len(set(settings.values())) > 1:
        raise DataError(
            f"{model} on {dataset}: the robust layer fits were made with different resampling settings or subjects "
            f"({sorted(set(settings.values()))[:2]}); rerun fit_encoding for every layer of this model with the "
            "current options"
        )


def partition_scores(meta: Mapping[str, Any]) -> dict[str, float]:
    """A layer fit's score per partition (the dataset score where it has no partitions)."""
    partitions = (meta.get("details") or {}).get("partitions") or {}
    if not partitions:
        return {"all": float(meta["score"])}
    return {str(name): float(part["score"]) for name, part in partitions.items()}


def aw2024_layer_choice(
    fits: Mapping[int, Mapping[str, Any]], layer_rule: str, committed_layer: int | None, model: str
) -> tuple[float, pd.DataFrame]:
    """The aw2024 score of a model under a layer rule, and the layer of each (partition, fold).

    Parameters
    ----------
    fits : dict of layer -> fit metadata
        ``score``, ``folds`` (``partition``, ``fold``) and per-partition ``details``.
    layer_rule : {"max_per_dataset", "max_per_partition", "committed"}
        ``max_per_dataset``: the layer with the best dataset score (the paper's text);
        ``max_per_partition``: in each partition its best layer, the partition scores
        averaged; ``committed``: ``committed_layer``, the one layer the model commits to.
    committed_layer : int or None
        The model's ``committed_layer`` from the config.
    model : str
        The model's name, for error messages.

    Returns
    -------
    score : float
    choices : DataFrame
        ``partition``, ``fold``, ``layer`` (input of :func:`chosen_neuroid_scores`).
    """
    from brainalign.encoding.aw2024 import resolve_aw2024_options

    resolve_aw2024_options({"layer_rule": layer_rule})  # refuses an unknown rule, naming the allowed ones
    if layer_rule == "committed":
        if committed_layer is None or committed_layer not in fits:
            raise ConfigError(
                f"models.{model}.committed_layer is {committed_layer!r} but protocols.aw2024.layer_rule is "
                f"'committed'; set it to one of the fitted layers {min(fits)}..{max(fits)} in config.yaml, "
                "or use layer_rule max_per_dataset."
            )
        layer_of = {partition: committed_layer for partition in partition_scores(fits[committed_layer])}
    elif layer_rule == "max_per_partition":
        per_layer = {layer: partition_scores(meta) for layer, meta in fits.items()}
        partitions = next(iter(per_layer.values()))
        layer_of = {p: max(sorted(per_layer), key=lambda layer: per_layer[layer][p]) for p in partitions}
    else:
        best = max(sorted(fits), key=lambda layer: float(fits[layer]["score"]))
        layer_of = {partition: best for partition in partition_scores(fits[best])}
    if len(set(layer_of.values())) == 1:
        score = float(fits[next(iter(layer_of.values()))]["score"])
    else:
        score = float(np.mean([partition_scores(fits[layer])[partition] for partition, layer in layer_of.items()]))
    folds = pd.concat(
        [pd.DataFrame(fits[layer]["folds"]).assign(layer=layer) for layer in sorted(set(layer_of.values()))]
    )
    folds = folds[folds["partition"].astype(str).map(layer_of) == folds["layer"]]
    return score, folds[["partition", "fold", "layer"]].reset_index(drop=True)


def _layers_by_partition(choices: pd.DataFrame) -> str:
    """``partition:layer`` per partition (``;``-joined; a nested choice lists its folds' layers)."""
    grouped = choices.groupby("partition", sort=True)["layer"].agg(
        lambda layers: ",".join(str(int(v)) for v in sorted(set(layers)))
    )
    return ";".join(f"{partition}:{layers}" for partition, layers in grouped.items())


def provenance_columns(meta: Mapping[str, Any]) -> dict[str, Any]:
    """How a score was made: the fit's split order and precision, and every fact of the
    activation file it was fit on (``activation_<key>``, as that file's metadata holds them,
    so facts added at extraction appear without change here). Non-scalar facts are JSON."""
    details = meta.get("details") or {}
    columns = {"split_order": details.get("split_order"), "fit_precision": details.get("fit_precision")}
    for key, value in sorted((meta.get("activations") or {}).items()):
        scalar = value is None or isinstance(value, (str, int, float, bool))
        columns[f"activation_{key}"] = value if scalar else json.dumps(value, sort_keys=True)
    return columns


def chosen_neuroid_scores(
    layer_paths: Mapping[int, str | Path], choices: pd.DataFrame, headline: str = "r"
) -> pd.DataFrame:
    """Per scored neuroid, its held-out measures under a layer choice.

    Parameters
    ----------
    layer_paths : dict of layer -> path
        Encoding fits of one model on one dataset under one protocol.
    choices : DataFrame
        One row per (``partition``, ``fold``) with the ``layer`` chosen for that fold: the
        same layer everywhere (max over layers) or one per fold (nested choice).
    headline : str
        The measure the protocol's score aggregates (:data:`HEADLINE_MEASURE`).

    Returns
    -------
    DataFrame
        ``partition``, ``neuroid_id``, ``subject``, one column per measure with per-fold
        columns (``<measure>_fold_<k>``) in the layer tables: the mean over folds of the
        measure of the layer chosen in each fold (folds where it is undefined are skipped),
        and ``score``, a copy of the ``headline`` measure, which the paired tests compare.
    """
    keys = ["partition", "neuroid_id", "subject"]
    tables = {}
    for layer in choices["layer"].unique():
        if layer not in layer_paths:
            raise DataError(f"layer {layer} was chosen but no fit of it was given (have {sorted(layer_paths)})")
        tables[layer] = io.read_table(layer_paths[layer]).set_index(keys).filter(regex=r"_fold_\d+$")
    measures = sorted({column.rsplit("_fold_", 1)[0] for table in tables.values() for column in table.columns})
    if headline not in measures:
        raise DataError(f"the layer fits have no per-fold '{headline}' columns (have {measures}); rerun fit_encoding")
    result = None
    for measure in measures:
        values = _chosen_fold_mean(tables, choices, measure)
        result = values.to_frame(measure) if result is None else result.join(values.rename(measure), how="outer")
    result["score"] = result[headline]
    return result.reset_index()


def _chosen_fold_mean(tables: Mapping[int, pd.DataFrame], choices: pd.DataFrame, measure: str) -> pd.Series:
    """Per neuroid, the mean over folds of ``<measure>_fold_<k>`` of the layer chosen in fold k."""
    fold_values = []
    for partition, fold, layer in choices[["partition", "fold", "layer"]].itertuples(index=False):
        table = tables[layer]
        in_partition = table.index.get_level_values("partition").astype(str) == str(partition)
        fold_values.append(table.loc[in_partition, f"{measure}_fold_{fold}"].rename(f"{partition}/{fold}"))
    # Outer join: each partition's neuroids have values in that partition's folds only.
    stacked = pd.concat(fold_values, axis=1)
    with warnings.catch_warnings():  # a neuroid with no defined fold value stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return pd.Series(np.nanmean(stacked.to_numpy(dtype=np.float64), axis=1), index=stacked.index)


def _float(value: Any) -> float:
    return np.nan if value is None else float(value)


def compare_with_base(
    protocol: str,
    dataset: str,
    model: str,
    base: str,
    model_path: str | Path,
    base_path: str | Path,
    options: Mapping[str, Any],
    out_path: str | Path,
) -> None:
    """Paired permutation test of a model against its base on the same neuroids.

    Reads both models' per-neuroid scores (:func:`chosen_neuroid_scores` files: the
    protocol's headline in ``score``), pairs them by (partition, neuroid), and tests the
    mean difference with sign flips of whole exchangeability blocks (``options["group_by"]``:
    subjects or single neuroids). The row written also carries each model's median score
    and median r over the paired neuroids.
    """
    keys = ["partition", "neuroid_id", "subject"]
    paired = _paired_neuroids(io.read_table(model_path), io.read_table(base_path), keys, model_path, base_path)
    groups = (
        paired["subject"]
        if options["group_by"] == "subject"
        else paired[["partition", "neuroid_id"]].astype(str).agg("/".join, axis=1)
    )
    defined = paired["score_model"].notna() & paired["score_base"].notna()
    if not defined.any():
        raise DataError(f"{model_path} / {base_path}: no neuroid has a score for both models; nothing to compare")
    difference, p_value, n_groups = paired_sign_flip_test(
        paired["score_model"].to_numpy(),
        paired["score_base"].to_numpy(),
        groups.to_numpy(),
        n_permutations=int(options["n_permutations"]),
        random_state=int(options["random_state"]),
    )
    row = {
        "protocol": protocol,
        "dataset": dataset,
        "model": model,
        "base": base,
        "group_by": options["group_by"],
        "n_groups": n_groups,
        "n_neuroids": int(defined.sum()),
        "score_model": float(paired.loc[defined, "score_model"].median()),
        "score_base": float(paired.loc[defined, "score_base"].median()),
        "r_model": float(paired.loc[defined, "r_model"].median()),
        "r_base": float(paired.loc[defined, "r_base"].median()),
        "mean_difference": difference,
        "p_value": p_value,
        **reach_columns(p_value, sign_flip_p_min(n_groups, int(options["n_permutations"]))),
    }
    logger.info(
        "%s vs %s on %s (%s): mean score difference %+.4f, p = %.4g",
        model,
        base,
        dataset,
        protocol,
        difference,
        p_value,
    )
    io.write_tsv(out_path, pd.DataFrame([row], columns=PAIR_TEST_COLUMNS))


def _paired_neuroids(
    model_table: pd.DataFrame, base_table: pd.DataFrame, keys: list[str], model_path: str | Path, base_path: str | Path
) -> pd.DataFrame:
    """Join two per-neuroid tables; they must score exactly the same neuroids."""
    for table, path in ((model_table, model_path), (base_table, base_path)):
        if table.duplicated(keys).any():
            raise DataError(f"{path}: repeated (partition, neuroid_id) rows; rerun score_model for this file")
    paired = model_table[[*keys, "score", "r"]].merge(
        base_table[[*keys, "score", "r"]], on=keys, how="outer", suffixes=("_model", "_base"), indicator=True
    )
    unmatched = paired["_merge"] != "both"
    if unmatched.any():
        example = paired.loc[unmatched, keys].iloc[0].to_dict()
        raise DataError(
            f"{model_path} and {base_path} score different neuroids ({int(unmatched.sum())} unmatched, e.g. "
            f"{example}): "
            "they were fit on different response files; rerun both models' fit_encoding and score_model jobs "
            "on the current responses"
        )
    return paired.drop(columns="_merge")
