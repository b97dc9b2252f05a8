"""The analyze stage end to end: tables, validation, the published reanalysis and the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from brainalign.analysis import cli
from brainalign.analysis.published import PUBLISHED_DIR, compare_with_published, load_models_file
from brainalign.analysis.run import compute_study_statistics
from brainalign.errors import ConfigError, DataError
from brainalign.io import read_tsv, write_tsv

DATASETS = ("pereira2018", "blank2014", "wehbe2014")
N_RESAMPLES = 300


def synthetic_models(n_bases: int = 4) -> dict[str, dict]:
    """Bases of growing size, each with two instruction-tuned partners with benchmark metadata."""
    models = {}
    rng = np.random.default_rng(0)
    for i in range(n_bases):
        size = 10 ** (8 + 0.5 * i)
        family = "fa" if i % 2 else "fb"
        models[f"base{i}"] = {
            "family": family,
            "parameters": size,
            "instruction_tuned": False,
            "base": None,
            "metadata": {"nwp_loss": 3.0 - 0.2 * i},
        }
        for j in range(2):
            models[f"tuned{i}{j}"] = {
                "family": family,
                "parameters": size,
                "instruction_tuned": True,
                "base": f"base{i}",
                "metadata": {
                    "mmlu": 0.3 + 0.05 * i + rng.normal(0, 0.02),
                    "bbh": 0.25 + rng.normal(0, 0.05),
                    "nwp_loss": 3.0 - 0.2 * i,
                    "bbh_categories": {"world_knowledge": 0.2 + 0.04 * i + rng.normal(0, 0.02)},
                },
            }
    return models


def synthetic_scores(models: dict, protocols=("aw2024", "robust")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores grow with log size; instruction tuning adds a planted 5% (brain) and nothing (behavior)."""
    rng = np.random.default_rng(1)
    brain, behavior = [], []
    for name, block in models.items():
        level = 0.05 * np.log10(block["parameters"]) - 0.3
        gain = 1.05 if block["instruction_tuned"] else 1.0
        for protocol in protocols:
            for k, dataset in enumerate(DATASETS):
                brain.append((name, dataset, protocol, (level + 0.05 * k) * gain * rng.normal(1, 0.01)))
            behavior.append((name, "futrell2018", protocol, 0.3 + rng.normal(0, 0.02)))
    columns = ["model", "dataset", "protocol", "score"]
    return pd.DataFrame(brain, columns=columns), pd.DataFrame(behavior, columns=columns)


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    models = synthetic_models()
    brain, behavior = synthetic_scores(models)
    published = tmp_path_factory.mktemp("published")
    write_tsv(published / "brain.tsv", brain[brain["protocol"] == "aw2024"].assign(score=lambda f: f["score"] - 0.01))
    out = tmp_path_factory.mktemp("analysis")
    compute_study_statistics(brain, behavior, models, out, published_dir=published, n_resamples=N_RESAMPLES)
    return models, brain, behavior, out


def test_analyze_writes_every_table_with_documented_columns(analyzed):
    *_, out = analyzed
    required = {
        "instruction_effect.tsv": [
            "protocol",
            "alignment",
            "dataset",
            "family",
            "n_pairs",
            "n_bases",
            "mean_change",
            "change_ci_low",
            "change_ci_high",
            "pct_change",
            "ci_low",
            "ci_high",
            "pct_note",
            "pct_change_paper",
            "p_value",
            "p_min",
            "can_reach_alpha",
            "p_fdr",
            "n_improved",
        ],
        "correlations.tsv": [
            "protocol",
            "alignment",
            "dataset",
            "property",
            "models",
            "n",
            "pearson_r",
            "p_value",
            "p_min",
            "can_reach_alpha",
            "p_fdr",
            "spearman_r",
            "spearman_p",
            "ci_low",
            "ci_high",
        ],
        "partial_correlations.tsv": [
            "protocol",
            "alignment",
            "dataset",
            "property",
            "partial_r",
            "p_value",
            "p_min",
            "can_reach_alpha",
            "p_fdr",
        ],
        "family_correlations.tsv": [
            "protocol",
            "alignment",
            "dataset",
            "property",
            "models",
            "method",
            "family",
            "covariates",
            "n",
            "n_families",
            "pearson_r",
            "p_value",
            "p_min",
            "can_reach_alpha",
            "p_fdr",
        ],
        "instruction_pairs.tsv": ["protocol", "alignment", "dataset", "model", "base", "change", "pct_change"],
        "comparison_with_published.tsv": ["alignment", "model", "dataset", "ours", "published", "difference"],
    }
    for name, columns in required.items():
        table = read_tsv(out / name)
        assert not table.empty, name
        assert set(columns) <= set(table.columns), name


def test_instruction_effect_matches_a_direct_computation(analyzed):
    _, brain, _, out = analyzed
    effect = read_tsv(out / "instruction_effect.tsv")
    row = effect.query(
        "protocol == 'aw2024' and alignment == 'brain' and dataset == 'average' and family == 'all'"
    ).iloc[0]
    average = brain[brain["protocol"] == "aw2024"].groupby("model")["score"].mean()
    tuned = [m for m in average.index if m.startswith("tuned")]
    bases = [f"base{m[5]}" for m in tuned]
    pct = [100 * (average[m] - average[b]) / average[b] for m, b in zip(tuned, bases)]
    assert row["n_pairs"] == 8 and row["n_bases"] == 4  # two tuned models per base
    assert row["pct_change"] == pytest.approx(100 * (average[tuned].mean() / average[bases].mean() - 1))
    assert row["pct_change_paper"] == pytest.approx(np.mean(pct))
    assert row["pct_change"] == pytest.approx(5.0, abs=1.0)  # the planted gain
    assert row["ci_low"] < row["pct_change"] < row["ci_high"]
    # Every base improves: the smallest p that sign flips over 4 bases give, which cannot reach 0.05.
    assert row["n_improved"] == 8 and row["p_value"] == pytest.approx(row["p_min"]) == pytest.approx(2 / 2**4)
    assert not row["can_reach_alpha"]


def test_correlations_match_scipy_and_fdr_covers_the_family(analyzed):
    models, brain, _, out = analyzed
    correlations = read_tsv(out / "correlations.tsv")
    row = correlations.query(
        "protocol == 'robust' and alignment == 'brain' and dataset == 'wehbe2014' and property == 'mmlu'"
    ).iloc[0]
    scores = brain.query("protocol == 'robust' and dataset == 'wehbe2014'").set_index("model")["score"]
    tuned = [m for m in models if models[m]["instruction_tuned"]]
    mmlu = [models[m]["metadata"]["mmlu"] for m in tuned]
    expected = stats.pearsonr(mmlu, scores[tuned])
    assert row["models"] == "instruction_tuned" and row["n"] == len(tuned)
    assert row["pearson_r"] == pytest.approx(expected.statistic)
    assert row["p_value"] == pytest.approx(expected.pvalue)
    # MMLU exists only for instruction-tuned models: no duplicate 'all' row; size has both sets.
    sizes = correlations.query("protocol == 'robust' and alignment == 'brain' and dataset == 'average'")
    assert set(sizes.loc[sizes["property"] == "mmlu", "models"]) == {"instruction_tuned"}
    assert set(sizes.loc[sizes["property"] == "log10_parameters", "models"]) == {"instruction_tuned", "all"}
    # One FDR family per protocol: every p-value of every table of the analysis.
    tables = [
        read_tsv(out / f"{name}.tsv").query("protocol == 'robust'")
        for name in ("instruction_effect", "correlations", "partial_correlations", "family_correlations")
    ]
    pooled = pd.concat([table[["p_value", "p_fdr"]] for table in tables]).dropna(subset=["p_value"])
    assert pooled["p_fdr"].to_numpy() == pytest.approx(stats.false_discovery_control(pooled["p_value"]))
    assert (correlations["p_min"] == 0).all() and correlations["can_reach_alpha"].all()


def test_comparison_with_published_is_ours_minus_published(analyzed):
    *_, out = analyzed
    comparison = read_tsv(out / "comparison_with_published.tsv")
    assert set(comparison["alignment"]) == {"brain"}  # no published behavior table given
    assert comparison["difference"].to_numpy() == pytest.approx(0.01)
    assert (comparison["dataset"] == "average").sum() == len(synthetic_models())


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda f: f.drop(columns="protocol"), "lacks column(s) ['protocol']"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "share a (model, dataset, protocol) key"),
        (lambda f: f.assign(model=f["model"].where(f.index > 0, "mystery-model")), "'mystery-model'"),
        (lambda f: f.assign(score=f["score"].astype(object).where(f.index > 0, "high")), "non-numeric score"),
    ],
)
def test_bad_score_tables_are_refused(tmp_path, corrupt, message):
    models = synthetic_models(2)
    brain, behavior = synthetic_scores(models)
    bad = corrupt(brain)
    bad.attrs["source"] = "results/scores/brain.tsv"
    with pytest.raises(DataError, match="results/scores/brain.tsv") as error:
        compute_study_statistics(bad, behavior, models, tmp_path, published_dir=None, n_resamples=50)
    assert message in str(error.value)
    assert not (tmp_path / "instruction_effect.tsv").exists()


def test_a_suite_without_pairs_still_analyzes(tmp_path):
    models = {name: block for name, block in synthetic_models(2).items() if name.startswith("base")}
    brain, behavior = synthetic_scores(models)
    compute_study_statistics(brain, behavior, models, tmp_path, published_dir=None, n_resamples=50)
    assert read_tsv(tmp_path / "instruction_effect.tsv").empty
    assert read_tsv(tmp_path / "comparison_with_published.tsv").empty


# ----------------------------------------------------------------- the published numbers
def test_published_tables_hold_all_33_models_of_tables_5_and_9():
    brain = read_tsv(PUBLISHED_DIR / "brain.tsv")
    behavior = read_tsv(PUBLISHED_DIR / "behavior.tsv")
    _, registry = load_models_file(PUBLISHED_DIR / "models.yaml")
    assert len(registry) == 33 and set(brain["model"]) == set(behavior["model"]) == set(registry)
    assert len(brain) == 99 and set(brain["dataset"]) == set(DATASETS) and set(brain["protocol"]) == {"aw2024"}
    assert len(behavior) == 33 and set(behavior["dataset"]) == {"futrell2018"}
    for name, block in registry.items():
        assert block["base"] is None or registry[block["base"]]["family"] == block["family"], name
    paper, _ = load_models_file(PUBLISHED_DIR / "models.yaml", "paper")
    assert len(paper) == 25 and sum(b["instruction_tuned"] for b in paper.values()) == 17


def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_reanalysis_of_published_numbers_reproduces_the_paper(tmp_path):
    run_cli(
        [
            "analyze",
            "--models",
            str(PUBLISHED_DIR / "models.yaml"),
            "--suite",
            "paper",
            "--brain-scores",
            str(PUBLISHED_DIR / "brain.tsv"),
            "--behavior-scores",
            str(PUBLISHED_DIR / "behavior.tsv"),
            "--out",
            str(tmp_path),
            "--n-resamples",
            "500",
        ]
    )
    effect = read_tsv(tmp_path / "instruction_effect.tsv").query("alignment == 'brain' and family == 'all'")
    correlations = read_tsv(tmp_path / "correlations.tsv").query("alignment == 'brain' and dataset == 'average'")
    mmlu = correlations.query("property == 'mmlu'").iloc[0]
    size = correlations.query("property == 'log10_parameters' and models == 'instruction_tuned'").iloc[0]
    # The paper: ~6% average improvement, r = 0.81 with world knowledge (MMLU), r = 0.95 with size.
    assert effect.query("dataset == 'average'")["n_pairs"].iloc[0] == 17
    # The paper's mean of per-pair percent changes; the effect over bases differs (see pct_change).
    assert round(effect.query("dataset == 'average'")["pct_change_paper"].iloc[0]) == 6
    assert round(mmlu["pearson_r"], 2) == 0.81 and mmlu["p_value"] < 0.001
    assert round(size["pearson_r"], 2) == 0.95
    comparison = read_tsv(tmp_path / "comparison_with_published.tsv")
    assert comparison["difference"].abs().max() == 0  # the published numbers against themselves


def test_cli_pair_tests_join_the_fdr_family_and_the_summary(tmp_path):
    from brainalign.encoding.columns import PAIR_TEST_COLUMNS

    row = dict.fromkeys(PAIR_TEST_COLUMNS, 0.1) | {
        "protocol": "aw2024",
        "dataset": "pereira2018",
        "model": "flan-t5-xl",
        "base": "t5-xl",
        "group_by": "subject",
        "n_groups": 10,
        "n_neuroids": 100,
        "p_value": 0.004,
        "p_min": 0.002,
        "can_reach_alpha": True,
    }
    pairs = tmp_path / "brain_pairs.tsv"
    pd.DataFrame([row], columns=PAIR_TEST_COLUMNS).to_csv(pairs, sep="\t", index=False)
    run_cli(
        [
            "analyze",
            "--models",
            str(PUBLISHED_DIR / "models.yaml"),
            "--suite",
            "paper",
            "--brain-scores",
            str(PUBLISHED_DIR / "brain.tsv"),
            "--behavior-scores",
            str(PUBLISHED_DIR / "behavior.tsv"),
            "--out",
            str(tmp_path / "out"),
            "--n-resamples",
            "200",
            "--pair-tests",
            str(pairs),
            "--summary",
            str(tmp_path / "summary.md"),
        ]
    )
    tested = read_tsv(tmp_path / "out" / "instruction_pair_tests.tsv")
    assert tested["p_fdr"].iloc[0] >= 0.004 and tested["model"].iloc[0] == "flan-t5-xl"
    assert "flan-t5-xl" in (tmp_path / "summary.md").read_text()


def test_cli_refuses_an_unknown_suite(tmp_path):
    with pytest.raises(ConfigError, match="no suite 'nonexistent'"):
        run_cli(
            [
                "analyze",
                "--models",
                str(PUBLISHED_DIR / "models.yaml"),
                "--suite",
                "nonexistent",
                "--brain-scores",
                "b.tsv",
                "--behavior-scores",
                "h.tsv",
                "--out",
                str(tmp_path),
            ]
        )


def test_models_file_needs_models(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"suites": {"x": []}}))
    with pytest.raises(ConfigError, match="'models:'"):
        load_models_file(path)


def test_published_average_matches_table_5_average_column():
    # Table 5 lists the rounded average; our mean over the three datasets must agree to rounding.
    text = Path(__file__).resolve().parents[4] / "shared" / "reference" / "aw2024.md"
    if not text.exists():
        pytest.skip("paper reference notes not available")
    brain = read_tsv(PUBLISHED_DIR / "brain.tsv").groupby("model")["score"].mean()
    rows = [line.strip("|").split("|") for line in text.read_text().splitlines() if line.count("|") == 6]
    published = {r[0].strip(): float(r[4]) for r in rows if r[0].strip() in brain.index}
    assert len(published) == 33
    for model, average in published.items():
        assert brain[model] == pytest.approx(average, abs=0.0011), model


def test_published_averages_cover_only_the_datasets_both_sides_have():
    ours = pd.DataFrame(
        {"model": "m", "dataset": ["pereira2018", "blank2014"], "protocol": "aw2024", "score": [0.3, 0.2]}
    )
    published = pd.DataFrame(
        {
            "model": "m",
            "dataset": ["pereira2018", "blank2014", "wehbe2014"],
            "protocol": "aw2024",
            "score": [0.25, 0.2, 0.9],
        }
    )
    comparison = compare_with_published(ours, published, "brain").set_index("dataset")
    assert comparison.loc["average", "ours"] == pytest.approx(0.25)
    assert comparison.loc["average", "published"] == pytest.approx(0.225)  # wehbe2014 left out
    assert "wehbe2014" not in comparison.index
