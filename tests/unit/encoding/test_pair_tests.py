"""Per-neuroid scores under a layer choice, and each instruction-tuned model against its base."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from brainalign import io
from brainalign.analysis.pipeline import aggregate_scores
from brainalign.analysis.summary import _pair_test_lines
from brainalign.encoding.pipeline import chosen_neuroid_scores, compare_with_base
from brainalign.errors import DataError
from brainalign.stats import with_fdr

N_FOLDS = 3
PARTITIONS = ("384sentences", "243sentences")
OPTIONS = {"group_by": "subject", "n_permutations": 10_000, "random_state": 0}


def layer_fit(rng: np.random.Generator, n_subjects: int = 4, per_subject: int = 5) -> pd.DataFrame:
    """A layer's neuroid table in two partitions (the same neuroids in both), with fold r."""
    rows = []
    for partition in PARTITIONS:
        for subject in range(n_subjects):
            for voxel in range(per_subject):
                rows.append({"partition": partition, "neuroid_id": f"s{subject}.v{voxel}", "subject": f"s{subject}"})
    table = pd.DataFrame(rows)
    folds = rng.uniform(-0.2, 0.8, size=(len(table), N_FOLDS))
    folds[0, 1] = np.nan  # a constant neuroid in one test fold
    for fold in range(N_FOLDS):
        table[f"r_fold_{fold}"] = folds[:, fold]
    table["r"] = np.nanmean(folds, axis=1)
    return table


def write_layers(tmp_path, rng, n_layers=3) -> tuple[dict[int, str], dict[int, pd.DataFrame]]:
    tables = {layer: layer_fit(rng) for layer in range(1, n_layers + 1)}
    paths = {}
    for layer, table in tables.items():
        paths[layer] = str(tmp_path / f"layer-{layer}.parquet")
        io.write_table(paths[layer], table, io.result_metadata(layer=layer))
    return paths, tables


def test_one_chosen_layer_gives_that_layers_mean_r(tmp_path):
    paths, tables = write_layers(tmp_path, np.random.default_rng(0))
    choices = pd.DataFrame([{"partition": p, "fold": f, "layer": 2} for p in PARTITIONS for f in range(N_FOLDS)])
    scores = chosen_neuroid_scores(paths, choices)
    expected = tables[2][["partition", "neuroid_id", "subject", "r"]]
    merged = expected.merge(scores, on=["partition", "neuroid_id", "subject"], suffixes=("_layer", "_chosen"))
    assert len(merged) == len(expected) == len(scores)
    np.testing.assert_allclose(merged["r_chosen"], merged["r_layer"], rtol=0, atol=1e-12)


def test_nested_choice_takes_each_folds_r_from_the_layer_chosen_in_that_fold(tmp_path):
    paths, tables = write_layers(tmp_path, np.random.default_rng(1))
    chosen = {
        (PARTITIONS[0], 0): 1,
        (PARTITIONS[0], 1): 3,
        (PARTITIONS[0], 2): 3,
        (PARTITIONS[1], 0): 2,
        (PARTITIONS[1], 1): 2,
        (PARTITIONS[1], 2): 1,
    }
    choices = pd.DataFrame([{"partition": p, "fold": f, "layer": layer} for (p, f), layer in chosen.items()])
    scores = chosen_neuroid_scores(paths, choices).set_index(["partition", "neuroid_id"])
    for row in range(len(tables[1])):
        partition, neuroid = tables[1].loc[row, ["partition", "neuroid_id"]]
        values = [tables[chosen[(partition, fold)]].loc[row, f"r_fold_{fold}"] for fold in range(N_FOLDS)]
        finite = [v for v in values if np.isfinite(v)]
        assert scores.loc[(partition, neuroid), "r"] == pytest.approx(sum(finite) / len(finite), abs=1e-12)


def test_the_robust_headline_is_the_score_columns_and_every_measure_follows_the_choice(tmp_path):
    rng = np.random.default_rng(7)
    paths = {}
    tables = {}
    for layer in (1, 2):
        table = layer_fit(rng)
        for fold in range(N_FOLDS):
            table[f"score_fold_{fold}"] = rng.uniform(-0.05, 0.2, len(table))
            table[f"score_joint_fold_{fold}"] = rng.uniform(0, 0.3, len(table))
        tables[layer] = table
        paths[layer] = str(tmp_path / f"layer-{layer}.parquet")
        io.write_table(paths[layer], table, io.result_metadata(layer=layer))
    choices = pd.DataFrame(
        [{"partition": p, "fold": f, "layer": 1 + f % 2} for p in PARTITIONS for f in range(N_FOLDS)]
    )
    scores = chosen_neuroid_scores(paths, choices, headline="score").set_index(["partition", "neuroid_id"])
    assert {"score", "score_joint", "r"} <= set(scores.columns)
    partition, neuroid = tables[1].loc[3, ["partition", "neuroid_id"]]
    for measure in ("score", "score_joint"):
        expected = np.mean([tables[1 + f % 2].loc[3, f"{measure}_fold_{f}"] for f in range(N_FOLDS)])
        assert scores.loc[(partition, neuroid), measure] == pytest.approx(expected, abs=1e-12)
    aw2024_style, _ = write_layers(tmp_path, rng)
    with pytest.raises(DataError, match="no per-fold 'score' columns"):
        chosen_neuroid_scores(aw2024_style, choices, headline="score")


def test_a_chosen_layer_without_a_fit_is_an_error(tmp_path):
    paths, _ = write_layers(tmp_path, np.random.default_rng(2), n_layers=2)
    choices = pd.DataFrame([{"partition": PARTITIONS[0], "fold": 0, "layer": 5}])
    with pytest.raises(DataError, match="layer 5 was chosen"):
        chosen_neuroid_scores(paths, choices)


def neuroid_scores(rng, n_subjects, per_subject, shift_by_subject=None) -> pd.DataFrame:
    rows = [
        {"partition": "all", "neuroid_id": f"s{s}.v{v}", "subject": f"s{s}"}
        for s in range(n_subjects)
        for v in range(per_subject)
    ]
    table = pd.DataFrame(rows)
    table["score"] = rng.uniform(0, 0.5, len(table))
    table["r"] = rng.uniform(0, 0.5, len(table))
    if shift_by_subject is not None:
        table["score"] += np.repeat(shift_by_subject, per_subject)
    return table


def run_comparison(tmp_path, tuned: pd.DataFrame, base: pd.DataFrame, options=OPTIONS) -> pd.Series:
    tuned_path, base_path, out = tmp_path / "tuned.parquet", tmp_path / "base.parquet", tmp_path / "pair.tsv"
    io.write_table(tuned_path, tuned, io.result_metadata())
    io.write_table(base_path, base, io.result_metadata())
    compare_with_base("robust", "pereira2018", "flan-t5-xl", "t5-xl", tuned_path, base_path, options, out)
    (row,) = io.read_tsv(out).to_dict(orient="records")
    return pd.Series(row)


def test_pair_test_equals_a_naive_sign_flip_over_subjects(tmp_path):
    rng = np.random.default_rng(3)
    n_subjects, per_subject = 6, 8
    base = neuroid_scores(rng, n_subjects, per_subject)
    tuned = base.assign(
        score=base["score"]
        + np.repeat(rng.normal(0.03, 0.03, n_subjects), per_subject)
        + rng.normal(0, 0.05, len(base)),
        r=rng.uniform(0, 0.5, len(base)),
    )
    row = run_comparison(tmp_path, tuned, base)

    per_subject_difference = (tuned["score"] - base["score"]).groupby(tuned["subject"]).mean().to_numpy()
    observed = per_subject_difference.mean()
    null = [
        np.mean(np.array(signs) * per_subject_difference) for signs in itertools.product([-1, 1], repeat=n_subjects)
    ]
    naive_p = np.mean(np.abs(null) >= abs(observed) - 1e-12)
    assert row["mean_difference"] == pytest.approx(observed, abs=1e-12)
    assert row["p_value"] == pytest.approx(naive_p)
    assert (row["n_groups"], row["n_neuroids"], row["group_by"]) == (n_subjects, n_subjects * per_subject, "subject")
    assert row["score_model"] == pytest.approx(tuned["score"].median())
    assert row["score_base"] == pytest.approx(base["score"].median())
    assert row["r_model"] == pytest.approx(tuned["r"].median())
    assert row["r_base"] == pytest.approx(base["r"].median())


def test_a_consistent_improvement_reaches_the_smallest_exact_p_value(tmp_path):
    rng = np.random.default_rng(4)
    n_subjects = 8
    base = neuroid_scores(rng, n_subjects, 10)
    tuned = base.assign(score=base["score"] + 0.1)
    row = run_comparison(tmp_path, tuned, base)
    assert row["mean_difference"] == pytest.approx(0.1)
    assert row["p_value"] == pytest.approx(2 / 2**n_subjects)


def test_neuroid_blocks_treat_every_neuroid_as_independent(tmp_path):
    rng = np.random.default_rng(5)
    base = neuroid_scores(rng, 3, 40)
    tuned = base.assign(score=base["score"] + 0.05)
    by_subject = run_comparison(tmp_path, tuned, base)
    by_neuroid = run_comparison(tmp_path, tuned, base, {**OPTIONS, "group_by": "neuroid"})
    assert by_neuroid["n_groups"] == 120
    # Three subjects allow p >= 2/8; 120 independent neuroids reach the Monte Carlo floor.
    assert by_subject["p_value"] == pytest.approx(0.25)
    assert by_neuroid["p_value"] < 1e-3


def test_models_scored_on_different_neuroids_are_refused(tmp_path):
    rng = np.random.default_rng(6)
    base = neuroid_scores(rng, 3, 5)
    tuned = base.iloc[1:]
    with pytest.raises(DataError, match=r"tuned\.parquet and .*base\.parquet score different neuroids \(1 unmatched"):
        run_comparison(tmp_path, tuned, base)
    assert not (tmp_path / "pair.tsv").exists()


def test_fdr_is_benjamini_hochberg_within_each_protocol():
    p_values = {"aw2024": [0.01, 0.04, 0.03, 0.2], "robust": [0.001, 0.5]}
    table = pd.DataFrame(
        [{"protocol": protocol, "p_value": p} for protocol, values in p_values.items() for p in values]
    )
    adjusted = with_fdr({"pairs": table}, ["protocol"])["pairs"]
    for protocol, values in p_values.items():
        values = np.asarray(values)
        order = np.argsort(values)
        ranked = values[order] * len(values) / np.arange(1, len(values) + 1)
        naive = np.minimum.accumulate(ranked[::-1])[::-1]
        expected = np.empty_like(naive)
        expected[order] = np.minimum(naive, 1)
        np.testing.assert_allclose(adjusted.loc[adjusted["protocol"] == protocol, "p_fdr"], expected)


def test_a_suite_without_pairs_gets_a_header_only_table_and_says_so(tmp_path):
    score = tmp_path / "score.tsv"
    io.write_tsv(score, pd.DataFrame([{"model": "m", "dataset": "d", "protocol": "robust", "score": 0.1}]))
    outs = {name: tmp_path / f"{name}.tsv" for name in ("brain", "layers", "behavior", "pairs")}
    aggregate_scores([score], [score], [], [], True, outs["brain"], outs["layers"], outs["behavior"], outs["pairs"])
    pairs = with_fdr({"pairs": io.read_tsv(outs["pairs"])}, ["protocol"])["pairs"]
    assert pairs.empty and {"p_value", "p_fdr", "demo"} <= set(pairs.columns)
    assert "- no instruction-tuned/base pairs in this suite" in _pair_test_lines(pairs)
