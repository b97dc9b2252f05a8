"""score_model: the aw2024 layer rules, the robust nested headline, and the facts every score row carries.

Each layer fit is written as fit_encoding writes it (per-neuroid fold r, the fold and
partition scores in its metadata, the activation file's metadata); the expected choices
are computed here from the fold r directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainalign import io
from brainalign.encoding.pipeline import score_model
from brainalign.encoding.robust import choose_layers, fit_robust
from brainalign.errors import ConfigError

N_FOLDS = 3
N_LAYERS = 4
PARTITIONS = ("243sentences", "384sentences")
ACTIVATIONS = {
    "model": "m",
    "dtype": "float32",
    "prompt_policy": "raw",
    "context_policy": "context-group so far",
    "readout_module": "decoder.block",
}


def layer_table(rng: np.random.Generator, strength: dict[str, float]) -> pd.DataFrame:
    rows = [
        {"partition": p, "neuroid_id": f"s{s}.v{v}", "subject": f"s{s}"}
        for p in PARTITIONS
        for s in range(3)
        for v in range(4)
    ]
    table = pd.DataFrame(rows)
    shift = table["partition"].map(strength).to_numpy()[:, None]
    folds = rng.uniform(-0.1, 0.1, size=(len(table), N_FOLDS)) + shift
    for fold in range(N_FOLDS):
        table[f"r_fold_{fold}"] = folds[:, fold]
    table["r"] = folds.mean(axis=1)
    return table


def fit_metadata(table: pd.DataFrame, layer: int) -> dict:
    """The metadata fit_aw2024 + fit_encoding write for this table."""
    folds, partitions = [], {}
    for partition, part in table.groupby("partition"):
        scores = [float(np.median(part[f"r_fold_{fold}"])) for fold in range(N_FOLDS)]
        folds += [{"partition": partition, "fold": fold, "test_score": score} for fold, score in enumerate(scores)]
        partitions[partition] = {"score": float(np.mean(scores))}
    details = {"partitions": partitions, "split_order": "stored", "fit_precision": "float32"}
    score = float(np.mean([p["score"] for p in partitions.values()]))
    return dict(layer=layer, score=score, folds=folds, details=details, activations=ACTIVATIONS)


@pytest.fixture
def layer_files(tmp_path):
    """Layer 2 best on 243sentences, layer 3 on 384sentences, layer 4 best on average."""
    rng = np.random.default_rng(0)
    strengths = {1: (0.1, 0.1), 2: (0.5, 0.1), 3: (0.1, 0.45), 4: (0.35, 0.35)}
    paths, metadata = [], {}
    for layer, (a, b) in strengths.items():
        table = layer_table(rng, dict(zip(PARTITIONS, (a, b))))
        metadata[layer] = fit_metadata(table, layer)
        path = tmp_path / f"layer-{layer}.parquet"
        io.write_table(path, table, io.result_metadata(**metadata[layer]))
        paths.append(str(path))
    ceiling = tmp_path / "ceiling.parquet"
    io.write_table(ceiling, pd.DataFrame({"ceiling": [0.5]}), io.result_metadata(summary={"ceiling": 0.5}))
    return paths, ceiling, metadata


def run(tmp_path, layer_files, **choice) -> pd.Series:
    paths, ceiling, _ = layer_files
    out = tmp_path / "model.tsv"
    score_model(
        "aw2024",
        "m",
        "pereira2018",
        paths,
        ceiling,
        N_LAYERS,
        out,
        tmp_path / "layers.tsv",
        tmp_path / "neuroids.parquet",
        **choice,
    )
    return io.read_tsv(out).iloc[0]


def test_max_per_dataset_takes_the_layer_with_the_best_dataset_score(tmp_path, layer_files):
    metadata = layer_files[2]
    row = run(tmp_path, layer_files)
    assert row["layer"] == 4 and row["layer_choice"] == "max_per_dataset"
    assert row["score"] == pytest.approx(metadata[4]["score"])
    assert row["max_layer"] == 4 and row["score_max_layer"] == pytest.approx(metadata[4]["score"])
    assert row["layers_by_partition"] == "243sentences:4;384sentences:4"


def test_max_per_partition_averages_each_partitions_best_layer(tmp_path, layer_files):
    metadata = layer_files[2]
    best = {
        p: max(metadata, key=lambda layer: metadata[layer]["details"]["partitions"][p]["score"]) for p in PARTITIONS
    }
    assert best == {"243sentences": 2, "384sentences": 3}
    row = run(tmp_path, layer_files, layer_rule="max_per_partition")
    expected = np.mean([metadata[best[p]]["details"]["partitions"][p]["score"] for p in PARTITIONS])
    assert row["score"] == pytest.approx(expected)
    assert row["layers_by_partition"] == "243sentences:2;384sentences:3"
    assert row["score"] > row["score_max_layer"]  # choosing per partition can only gain
    neuroids = io.read_table(tmp_path / "neuroids.parquet")
    layer_2 = io.read_table(layer_files[0][1])
    expected_r = layer_2.loc[layer_2["partition"] == "243sentences", "r"].to_numpy()
    np.testing.assert_allclose(neuroids.loc[neuroids["partition"] == "243sentences", "r"].to_numpy(), expected_r)


def test_committed_takes_the_configured_layer(tmp_path, layer_files):
    metadata = layer_files[2]
    row = run(tmp_path, layer_files, layer_rule="committed", committed_layer=2)
    assert row["layer"] == 2 and row["layer_choice"] == "committed"
    assert row["score"] == pytest.approx(metadata[2]["score"])
    assert row["max_layer"] == 4


def test_committed_without_a_layer_names_the_key_and_the_fix(tmp_path, layer_files):
    with pytest.raises(ConfigError, match=r"models\.m\.committed_layer is None.*1\.\.4"):
        run(tmp_path, layer_files, layer_rule="committed")


def test_rows_carry_the_activation_facts_and_the_fit_settings(tmp_path, layer_files):
    row = run(tmp_path, layer_files)
    for key, value in ACTIVATIONS.items():
        assert row[f"activation_{key}"] == value
    assert row["split_order"] == "stored" and row["fit_precision"] == "float32"


def test_an_unknown_rule_names_the_allowed_ones(tmp_path, layer_files):
    with pytest.raises(ConfigError, match="layer_rule is 'best'.*max_per_partition"):
        run(tmp_path, layer_files, layer_rule="best")


def test_robust_rows_carry_the_nested_headline_and_the_models_beside_it(tmp_path):
    """Two layers fit by fit_robust on data that follow layer 1 and sentence length: the row's
    score is the nested headline, with the joint, controls-only and LLM-only values beside it."""
    rng = np.random.default_rng(1)
    n_passages, per_passage = 20, 4
    passages = np.repeat([f"p{g:02d}" for g in range(n_passages)], per_passage)
    lengths = rng.integers(4, 15, size=len(passages))
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"s{i}" for i in range(len(passages))],
            "context_group": passages,
            "position": np.tile(np.arange(per_passage), n_passages),
            "text": [" ".join(["w"] * k) for k in lengths],
            "cv_group": passages,
            "partition": "all",
        }
    )
    layers = {layer: rng.standard_normal((len(stimuli), 12)) for layer in (1, 2)}
    responses = (
        layers[1][:, :4] @ rng.standard_normal((4, 6))
        + np.outer(lengths - lengths.mean(), np.ones(6)) / 3
        + rng.standard_normal((len(stimuli), 6))
    )
    neuroids = pd.DataFrame({"neuroid_id": [f"n{i}" for i in range(6)], "subject": np.repeat(["a", "b"], 3)})
    options = {
        "n_bootstrap": 40,
        "n_permutations": 19,
        "n_band_weights": 6,
        "n_inner_folds": 3,
        "controls": ["length", "position"],
    }
    paths, folds = [], {}
    for layer, features in layers.items():
        result = fit_robust(features, responses, stimuli, stimuli[["stimulus_id"]], neuroids, options)
        folds[layer] = result.folds
        paths.append(str(tmp_path / f"layer-{layer}.parquet"))
        io.write_table(
            paths[-1],
            result.neuroids,
            io.result_metadata(
                layer=layer,
                score=result.score,
                folds=result.folds.to_dict(orient="records"),
                details=result.details,
                activations=ACTIVATIONS,
                ci_low=result.ci_low,
                ci_high=result.ci_high,
                p_value=result.p_value,
            ),
        )
    ceiling = tmp_path / "ceiling.parquet"
    io.write_table(ceiling, pd.DataFrame({"ceiling": [0.5]}), io.result_metadata(summary={"ceiling": 0.5}))
    out, neuroids_out = tmp_path / "model.tsv", tmp_path / "neuroids.parquet"
    score_model("robust", "m", "pereira2018", paths, ceiling, 2, out, tmp_path / "layers.tsv", neuroids_out)
    row = io.read_tsv(out).iloc[0]
    nested, _ = choose_layers(folds)
    assert row["layer"] == 1 and row["layer_choice"] == "nested"
    for name in ("score", "score_joint", "score_controls", "score_llm", "r_joint", "r_controls", "r_unique"):
        assert row[name] == pytest.approx(nested[name])
    assert row["score"] > 0.2 and row["score_controls"] > 0.05
    assert row["score"] == pytest.approx(folds[1]["test_score"].mean())
    per_neuroid = io.read_table(neuroids_out)
    assert {"score", "score_joint", "score_controls", "score_llm", "r", "r_controls"} <= set(per_neuroid.columns)
    assert row["n_neuroids"] == 6
    # CI and p-value of the nested score: per fold, resample b of the layer chosen there.
    _, choices = choose_layers(folds)
    chosen = [folds[layer].set_index("fold").loc[fold] for fold, layer in zip(choices["fold"], choices["layer"])]
    replicates = np.mean([fold["bootstrap_scores"] for fold in chosen], axis=0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(np.percentile(replicates, [2.5, 97.5])))
    permuted = np.mean([fold["permutation_scores"] for fold in chosen], axis=0)
    assert row["p_value"] == pytest.approx((1 + np.sum(permuted[1:] >= permuted[0])) / 20)
    assert row["p_min"] == pytest.approx(1 / 20) and not row["can_reach_alpha"]  # 19 permutations cannot give p < 0.05


def test_a_model_whose_every_layer_scored_nan_is_refused_with_a_clear_error(tmp_path, layer_files):
    paths, ceiling, metadata = layer_files
    for path, layer in zip(paths, sorted(metadata)):
        table = io.read_table(path)
        io.write_table(
            path,
            table,
            io.result_metadata(**{**metadata[layer], "score": None, "details": {"n_neuroids_constant": 24}}),
        )
    from brainalign.errors import DataError

    with pytest.raises(DataError, match=r"m on pereira2018 \(aw2024\): every layer's score is NaN.*24 neuroids"):
        score_model(
            "aw2024",
            "m",
            "pereira2018",
            paths,
            ceiling,
            N_LAYERS,
            tmp_path / "model.tsv",
            tmp_path / "layers.tsv",
            tmp_path / "neuroids.parquet",
        )
