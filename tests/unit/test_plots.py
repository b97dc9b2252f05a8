"""Figures: the right points in the right panels, files written, demo label, empty suites."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from brainalign.analysis.correlations import model_properties
from brainalign.analysis.run import analyze
from brainalign.analysis.tables import with_dataset_average
from brainalign.io import read_tsv
from brainalign.plots import figures

N_BASES = 3


def make_models() -> dict[str, dict]:
    models = {}
    for i in range(N_BASES):
        models[f"base{i}"] = {"family": "fa", "parameters": 10 ** (8 + i), "instruction_tuned": False, "base": None,
                              "metadata": {}}
        for j in range(2):
            models[f"tuned{i}{j}"] = {"family": "fa" if j else "fb", "parameters": 10 ** (8 + i),
                                      "instruction_tuned": True, "base": f"base{i}",
                                      "metadata": {"mmlu": 0.3 + 0.1 * i + 0.01 * j, "bbh": 0.2 + 0.05 * i - 0.01 * j}}
    return models


def make_scores(models, protocols=("aw2024", "robust")):
    rng = np.random.default_rng(0)
    brain = [(m, d, p, rng.uniform(0.05, 0.4)) for m in models for d in ("D1", "D2") for p in protocols]
    behavior = [(m, "Futrell2018", "aw2024", rng.uniform(0.1, 0.4)) for m in models]
    layers = [(m, d, "aw2024", layer, layer / 3, rng.uniform(0, 0.3)) for m in models for d in ("D1", "D2")
              for layer in range(4)]
    columns = ["model", "dataset", "protocol", "score"]
    return (pd.DataFrame(brain, columns=columns), pd.DataFrame(behavior, columns=columns),
            pd.DataFrame(layers, columns=["model", "dataset", "protocol", "layer", "relative_depth", "score"]))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    models = make_models()
    brain, behavior, layers = make_scores(models)
    analysis_dir = tmp_path_factory.mktemp("analysis")
    analyze(brain, behavior, models, analysis_dir, published_dir=None, n_resamples=100)
    return models, brain, behavior, layers, analysis_dir


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def n_points(ax) -> int:
    return sum(len(collection.get_offsets()) for collection in ax.collections if hasattr(collection, "get_offsets"))


def test_instruction_scatter_has_one_point_per_pair_and_an_identity_line(study):
    *_, analysis_dir = study
    pairs = read_tsv(analysis_dir / "instruction_pairs.tsv").query("alignment == 'brain' and protocol == 'aw2024'")
    fig = figures.plot_instruction_scatter(pairs, "brain", "aw2024")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["average", "D1", "D2"]
    for ax in fig.axes:
        assert n_points(ax) == 2 * N_BASES
        assert any(line.get_label() == "identity" for line in ax.lines)
        assert ax.get_xlabel() and ax.get_ylabel()


def test_percent_change_bars_carry_the_effect_table_values(study):
    *_, analysis_dir = study
    effect = read_tsv(analysis_dir / "instruction_effect.tsv").query("alignment == 'brain' and protocol == 'robust'")
    fig = figures.plot_percent_change(effect, "brain", "robust")
    (ax,) = fig.axes
    heights = [patch.get_height() for patch in ax.patches]
    expected = effect[effect["family"] == "all"].set_index("dataset").loc[["average", "D1", "D2"], "pct_change"]
    # A refused percent change (base scores near or below zero) is NaN and draws no bar.
    assert heights == pytest.approx(expected.to_numpy(), nan_ok=True)


def test_property_scatter_shows_tuned_models_with_r_in_each_title(study):
    models, brain, _, _, analysis_dir = study
    correlations = read_tsv(analysis_dir / "correlations.tsv").query(
        "alignment == 'brain' and protocol == 'aw2024' and dataset == 'average'")
    scores = with_dataset_average(brain[brain["protocol"] == "aw2024"])
    fig = figures.plot_property_scatter(scores, model_properties(models), correlations, "brain", "aw2024", "average")
    assert [n_points(ax) for ax in fig.axes] == [2 * N_BASES] * 3
    mmlu = correlations.query("property == 'mmlu' and models == 'instruction_tuned'").iloc[0]
    assert f"r = {mmlu['pearson_r']:.2f}" in fig.axes[0].get_title()
    assert "world-knowledge category not available" in fig.axes[1].get_xlabel()
    assert fig.axes[2].get_xlabel() == "log10 parameters"


def test_layer_profiles_draw_one_line_per_model_and_dataset(study):
    models, _, _, layers, _ = study
    fig = figures.plot_layer_profiles(layers, models, "aw2024")
    for ax in fig.axes:
        drawn = [line for line in ax.lines if len(line.get_xdata()) == 4]
        assert len(drawn) == len(models)


def test_protocol_comparison_has_one_point_per_model(study):
    models, brain, *_ = study
    fig = figures.plot_protocol_comparison(with_dataset_average(brain), "brain")
    assert [n_points(ax) for ax in fig.axes] == [len(models)] * 3
    single = figures.plot_protocol_comparison(brain[brain["protocol"] == "aw2024"], "brain")
    assert "no model has scores under both" in single.axes[0].texts[0].get_text()


def test_plot_figures_writes_png_and_pdf_with_demo_label(study, tmp_path, monkeypatch):
    models, brain, behavior, layers, analysis_dir = study
    stamped = []
    original = figures.stamp_demo
    monkeypatch.setattr(figures, "stamp_demo", lambda fig: (original(fig), stamped.append(fig)))
    monkeypatch.setattr(figures, "PNG_DPI", 60)  # resolution does not change what is drawn; keeps the test fast
    paths = figures.plot_figures(brain, layers, behavior, analysis_dir, models, tmp_path, demo=True)
    names = {path.stem for path in paths}
    assert {"instruction_scatter_brain_aw2024", "percent_change_behavior_aw2024", "properties_brain_robust",
            "layer_profiles_aw2024", "protocols_brain"} <= names
    assert {path.suffix for path in paths} == {".png", ".pdf"}
    assert all(path.stat().st_size > 1000 for path in paths)
    assert len(stamped) == len(paths) // 2
    assert all(any(text.get_text() == figures.DEMO_LABEL for text in fig.texts) for fig in stamped)


def test_a_suite_without_pairs_gets_a_message_figure(tmp_path):
    models = {name: block for name, block in make_models().items() if name.startswith("base")}
    brain, behavior, _ = make_scores(models)
    analysis_dir = tmp_path / "analysis"
    analyze(brain, behavior, models, analysis_dir, published_dir=None, n_resamples=50)
    built = figures.study_figures(brain, None, behavior, analysis_dir, models)
    message = built["instruction_scatter_brain_aw2024"].axes[0].texts[0].get_text()
    assert message == figures.NO_PAIRS
    assert built["percent_change_brain_aw2024"].axes[0].texts[0].get_text() == figures.NO_PAIRS
    assert built["layer_profiles_aw2024"].axes[0].texts[0].get_text() == "no per-layer scores for this protocol"
    paths = figures.save_figure(built["instruction_scatter_brain_aw2024"], tmp_path, "empty", demo=False)
    assert all(path.stat().st_size > 0 for path in paths)


def test_robust_decomposition_bars_carry_each_models_measures(tmp_path):
    rng = np.random.default_rng(3)
    rows = [{"model": m, "dataset": d, "protocol": "robust", "layer": layer,
             **{column: rng.uniform(-0.05, 0.4) for column in figures.DECOMPOSITION}}
            for layer, m in enumerate(("m1", "m2", "m3"), start=2) for d in ("D1", "D2")]
    scores = pd.DataFrame(rows)
    fig = figures.plot_robust_decomposition(scores)
    assert [ax.get_title() for ax in fig.axes] == ["D1", "D2"]
    for ax, dataset in zip(fig.axes, ("D1", "D2")):
        expected = scores[scores["dataset"] == dataset].sort_values("model", ascending=False)
        widths = [patch.get_width() for patch in ax.patches]
        # One bar per model for each measure, measure after measure.
        assert widths == pytest.approx(expected[list(figures.DECOMPOSITION)].to_numpy().T.ravel())
        assert [label.get_text() for label in ax.get_yticklabels()] == ["m3 (layer 4)", "m2 (layer 3)", "m1 (layer 2)"]
    assert {text.get_text() for text in fig.legends[0].texts} == {label for label, _ in figures.DECOMPOSITION.values()}
    paths = figures.save_figure(fig, tmp_path, "decomposition", demo=False)
    assert all(path.stat().st_size > 1000 for path in paths)


def test_robust_decomposition_is_named_for_robust_suites_and_says_what_it_lacks():
    assert "decomposition_brain_robust" in figures.figure_names(["aw2024", "robust"], [])
    assert "decomposition_brain_robust" not in figures.figure_names(["aw2024"], [])
    fig = figures.plot_robust_decomposition(pd.DataFrame({"model": ["m"], "dataset": ["D"], "score": [0.1]}))
    assert "no robust scores with ['layer', 'score_joint'" in fig.axes[0].texts[0].get_text()
