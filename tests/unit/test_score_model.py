"""score_model: the aw2024 layer rules and the facts every score row carries.

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
from brainalign.errors import ConfigError

N_FOLDS = 3
N_LAYERS = 4
PARTITIONS = ("243sentences", "384sentences")
ACTIVATIONS = {"model": "m", "dtype": "float32", "prompt_policy": "raw", "context_policy": "context-group so far", "readout_module": "decoder.block"}


def layer_table(rng: np.random.Generator, strength: dict[str, float]) -> pd.DataFrame:
    rows = [{"partition": p, "neuroid_id": f"s{s}.v{v}", "subject": f"s{s}"} for p in PARTITIONS for s in range(3) for v in range(4)]
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
        io.write_table(path, table, io.provenance(**metadata[layer]))
        paths.append(str(path))
    ceiling = tmp_path / "ceiling.parquet"
    io.write_table(ceiling, pd.DataFrame({"ceiling": [0.5]}), io.provenance(summary={"ceiling": 0.5}))
    return paths, ceiling, metadata


def run(tmp_path, layer_files, **choice) -> pd.Series:
    paths, ceiling, _ = layer_files
    out = tmp_path / "model.tsv"
    score_model("aw2024", "m", "pereira2018", paths, ceiling, N_LAYERS, out, tmp_path / "layers.tsv", tmp_path / "neuroids.parquet", **choice)
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
    best = {p: max(metadata, key=lambda layer: metadata[layer]["details"]["partitions"][p]["score"]) for p in PARTITIONS}
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
