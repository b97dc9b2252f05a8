"""The Brain-Score self-check: planned from the suite, compared on stand-in scores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO_ROOT as REPO

from brainalign import io
from brainalign.analysis.brainscore_check import PINNED, TOLERANCE, check_brainscore, planned_checks
from brainalign.config import suite_datasets, suite_models, validate_config
from brainalign.errors import DataError

PEREIRA_243 = 0.82228507


@pytest.fixture(scope="module")
def config():
    return validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))


def test_the_suite_plans_the_three_pinned_scores(config):
    checks = planned_checks(suite_models(config, "brainscore-check"), suite_datasets(config, "brainscore-check"))
    assert [(c["model"], c["benchmark"], c["dataset"]) for c in checks] == [
        ("distilgpt2", "Pereira2018.243sentences-linear", "pereira2018"),
        ("distilgpt2", "Futrell2018-pearsonr", "futrell2018"),
        ("gpt2-xl", "Futrell2018-pearsonr", "futrell2018"),
    ]
    # Brain-Score's region_layer_mapping: distilgpt2 commits to transformer.h.5, our layer 6.
    assert checks[0]["fit"] == "results/encoding/aw2024/pereira2018/distilgpt2/layer-6.parquet"
    assert checks[0]["ceiling"] == "results/ceiling/aw2024/pereira2018.parquet"
    assert checks[1]["behavior"] == "results/behavior/futrell2018/distilgpt2.tsv"
    assert {(p.model, p.expected) for p in PINNED} == {
        ("distilgpt2", PEREIRA_243),
        ("distilgpt2", 0.36144805),
        ("gpt2-xl", 0.31825621),
    }


def test_a_neural_check_needs_the_committed_layer(config):
    models = suite_models(config, "brainscore-check")
    models["distilgpt2"] = {**models["distilgpt2"], "committed_layer": None}
    with pytest.raises(DataError, match=r"models\.distilgpt2 needs committed_layer"):
        planned_checks(models, suite_datasets(config, "brainscore-check"))


def stand_in_scores(folder: Path, raw_243: float, ceiling_243: float, futrell: dict[str, tuple[float, float]]) -> list:
    """Files shaped as the workflow writes them: an aw2024 layer fit, the aw2024 ceiling, behavior rows."""
    fit, ceiling = folder / "layer-6.parquet", folder / "ceiling.parquet"
    partitions = {"243sentences": {"score": raw_243}, "384sentences": {"score": 0.5}}
    io.write_table(
        fit, pd.DataFrame({"neuroid_id": ["n"]}), io.result_metadata(layer=6, details={"partitions": partitions})
    )
    summary = {"partitions": {"243sentences": {"ceiling": ceiling_243}, "384sentences": {"ceiling": 0.4}}}
    io.write_table(ceiling, pd.DataFrame({"ceiling": [ceiling_243]}), io.result_metadata(summary=summary))
    checks = [
        {
            "model": "distilgpt2",
            "benchmark": "Pereira2018.243sentences-linear",
            "dataset": "pereira2018",
            "partition": "243sentences",
            "fit": str(fit),
            "ceiling": str(ceiling),
        }
    ]
    for model, (score, ceiling_value) in futrell.items():
        path = folder / f"{model}.tsv"
        rows = [
            {"protocol": "aw2024", "score": score, "ceiling": ceiling_value},
            {"protocol": "robust", "score": 0.01, "ceiling": float("nan")},
        ]
        io.write_tsv(path, pd.DataFrame(rows))
        checks.append(
            {"model": model, "benchmark": "Futrell2018-pearsonr", "dataset": "futrell2018", "behavior": str(path)}
        )
    return checks


def test_matching_scores_pass_and_an_off_score_fails(tmp_path):
    futrell = {"distilgpt2": (0.36144805 * 0.858, 0.858), "gpt2-xl": ((0.31825621 + 3 * TOLERANCE) * 0.858, 0.858)}
    checks = stand_in_scores(tmp_path, PEREIRA_243 * 0.35, 0.35, futrell)
    table = check_brainscore(checks, tmp_path / "check.tsv")
    assert io.read_tsv(tmp_path / "check.tsv")["passed"].tolist() == [True, True, False] == table["passed"].tolist()
    assert table.loc[0, "layer"] == 6 and table.loc[0, "raw"] == pytest.approx(PEREIRA_243 * 0.35)
    assert table.loc[0, "score"] == pytest.approx(PEREIRA_243) and table.loc[0, "ceiling"] == 0.35
    assert table.loc[2, "difference"] == pytest.approx(3 * TOLERANCE)


def test_scores_above_the_ceiling_are_clipped_as_brainscore_does(tmp_path):
    checks = stand_in_scores(tmp_path, 0.5, 0.35, {})
    table = check_brainscore(checks, tmp_path / "check.tsv")
    assert table.loc[0, "score"] == 1.0 and not table.loc[0, "passed"]


def test_a_fit_without_the_partition_is_named(tmp_path):
    checks = stand_in_scores(tmp_path, 0.3, 0.35, {})
    checks[0]["partition"] = "999sentences"
    with pytest.raises(DataError, match=r"layer-6\.parquet: the layer fit has no partition '999sentences'"):
        check_brainscore(checks, tmp_path / "check.tsv")
