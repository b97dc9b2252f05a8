"""Figures: the right points in the right panels, readable (keys and the demo band off the data, points
named, one colour per family), files written, empty suites."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle
from scipy import stats

from brainalign.analysis.correlations import model_properties
from brainalign.analysis.run import compute_study_statistics
from brainalign.analysis.tables import with_dataset_average
from brainalign.io import read_tsv
from brainalign.plots import figures
from brainalign.plots.names import figure_names

N_BASES = 3


def make_models() -> dict[str, dict]:
    models = {}
    for i in range(N_BASES):
        models[f"base{i}"] = {
            "family": "fa",
            "parameters": 10 ** (8 + i),
            "instruction_tuned": False,
            "base": None,
            "metadata": {},
        }
        for j in range(2):
            models[f"tuned{i}{j}"] = {
                "family": "fa" if j else "fb",
                "parameters": 10 ** (8 + i),
                "instruction_tuned": True,
                "base": f"base{i}",
                "metadata": {"mmlu": 0.3 + 0.1 * i + 0.01 * j, "bbh": 0.2 + 0.05 * i - 0.01 * j},
            }
    return models


def make_scores(models, protocols=("aw2024", "robust")):
    rng = np.random.default_rng(0)
    brain = [(m, d, p, rng.uniform(0.05, 0.4)) for m in models for d in ("D1", "D2") for p in protocols]
    behavior = [(m, "Futrell2018", "aw2024", rng.uniform(0.1, 0.4)) for m in models]
    layers = [
        (m, d, "aw2024", layer, layer / 3, rng.uniform(0, 0.3))
        for m in models
        for d in ("D1", "D2")
        for layer in range(4)
    ]
    columns = ["model", "dataset", "protocol", "score"]
    return (
        pd.DataFrame(brain, columns=columns),
        pd.DataFrame(behavior, columns=columns),
        pd.DataFrame(layers, columns=["model", "dataset", "protocol", "layer", "relative_depth", "score"]),
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    models = make_models()
    brain, behavior, layers = make_scores(models)
    analysis_dir = tmp_path_factory.mktemp("analysis")
    compute_study_statistics(brain, behavior, models, analysis_dir, published_dir=None, n_resamples=100)
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
    fig = figures.plot_instruction_scatter(pairs, "brain", "aw2024", figures.ModelStyle.from_models(make_models()))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["average", "D1", "D2"]
    for ax in fig.axes:
        assert n_points(ax) == 2 * N_BASES
        assert any(line.get_label() == "identity (y = x)" for line in ax.lines)
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
        "alignment == 'brain' and protocol == 'aw2024' and dataset == 'average'"
    )
    scores = with_dataset_average(brain[brain["protocol"] == "aw2024"])
    fig = figures.plot_property_scatter(
        scores,
        model_properties(models),
        correlations,
        "brain",
        "aw2024",
        "average",
        figures.ModelStyle.from_models(models),
    )
    assert [n_points(ax) for ax in fig.axes] == [2 * N_BASES] * 3
    mmlu = correlations.query("property == 'mmlu' and models == 'instruction_tuned'").iloc[0]
    assert f"r = {mmlu['pearson_r']:.2f}" in fig.axes[0].get_title()
    assert "world-knowledge category not available" in fig.axes[1].get_xlabel()
    assert fig.axes[2].get_xlabel() == "log10 parameters"


def test_layer_profiles_draw_one_line_per_model_and_dataset(study):
    models, _, _, layers, _ = study
    fig = figures.plot_layer_profiles(layers, figures.ModelStyle.from_models(models), "aw2024")
    for ax in fig.axes:
        drawn = [line for line in ax.lines if len(line.get_xdata()) == 4]
        assert len(drawn) == len(models)


def test_protocol_comparison_has_one_point_per_model(study):
    models, brain, *_ = study
    style = figures.ModelStyle.from_models(models)
    fig = figures.plot_protocol_comparison(with_dataset_average(brain), "brain", style)
    assert [n_points(ax) for ax in fig.axes] == [len(models)] * 3
    single = figures.plot_protocol_comparison(brain[brain["protocol"] == "aw2024"], "brain", style)
    assert "no model has scores under both" in single.axes[0].texts[0].get_text()


def test_plot_figures_writes_png_and_pdf_with_demo_label(study, tmp_path, monkeypatch):
    models, brain, behavior, layers, analysis_dir = study
    stamped = []
    original = figures.stamp_demo
    monkeypatch.setattr(figures, "stamp_demo", lambda fig: (original(fig), stamped.append(fig)))
    monkeypatch.setattr(figures, "PNG_DPI", 60)  # resolution does not change what is drawn; keeps the test fast
    paths = figures.draw_figures(brain, layers, behavior, analysis_dir, models, tmp_path, demo=True)
    names = {path.stem for path in paths}
    assert {
        "instruction_scatter_brain_aw2024",
        "percent_change_behavior_aw2024",
        "properties_brain_robust",
        "layer_profiles_aw2024",
        "protocols_brain",
    } <= names
    assert {path.suffix for path in paths} == {".png", ".pdf"}
    assert all(path.stat().st_size > 1000 for path in paths)
    assert len(stamped) == len(paths) // 2
    assert all(any(text.get_text() == figures.DEMO_LABEL for text in fig.texts) for fig in stamped)


def test_a_suite_without_pairs_gets_a_message_figure(tmp_path):
    models = {name: block for name, block in make_models().items() if name.startswith("base")}
    brain, behavior, _ = make_scores(models)
    analysis_dir = tmp_path / "analysis"
    compute_study_statistics(brain, behavior, models, analysis_dir, published_dir=None, n_resamples=50)
    built = figures.study_figures(brain, None, behavior, analysis_dir, models)
    message = built["instruction_scatter_brain_aw2024"].axes[0].texts[0].get_text()
    assert message == figures.NO_PAIRS
    assert built["percent_change_brain_aw2024"].axes[0].texts[0].get_text() == figures.NO_PAIRS
    assert built["layer_profiles_aw2024"].axes[0].texts[0].get_text() == "no per-layer scores for this protocol"
    paths = figures.save_figure(built["instruction_scatter_brain_aw2024"], tmp_path, "empty", demo=False)
    assert all(path.stat().st_size > 0 for path in paths)


def test_robust_decomposition_bars_carry_each_models_measures(tmp_path):
    rng = np.random.default_rng(3)
    rows = [
        {
            "model": m,
            "dataset": d,
            "protocol": "robust",
            "layer": layer,
            **{column: rng.uniform(-0.05, 0.4) for column in figures.DECOMPOSITION},
        }
        for layer, m in enumerate(("m1", "m2", "m3"), start=2)
        for d in ("D1", "D2")
    ]
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
    assert "decomposition_brain_robust" in figure_names(["aw2024", "robust"], [])
    assert "decomposition_brain_robust" not in figure_names(["aw2024"], [])
    fig = figures.plot_robust_decomposition(pd.DataFrame({"model": ["m"], "dataset": ["D"], "score": [0.1]}))
    assert "no robust scores with ['layer', 'score_joint'" in fig.axes[0].texts[0].get_text()


# --------------------------------------------------------------------------- readability
def study_figure_set(study) -> dict:
    """Every figure of the synthetic study, laid out as it will be saved (layout run, keys fixed)."""
    models, brain, behavior, layers, analysis_dir = study
    built = figures.study_figures(brain, layers, behavior, analysis_dir, models)
    for fig in built.values():
        figures._pin_legends(fig)
    return built


def data_points_display(ax) -> np.ndarray:
    """Display coordinates of every scatter point and line vertex the axes show (inside them: the rest is clipped)."""
    points = [np.empty((0, 2))]
    for collection in ax.collections:
        if isinstance(collection, PathCollection) and len(collection.get_offsets()):
            points.append(collection.get_offset_transform().transform(collection.get_offsets()))
    for line in ax.lines:
        if line.get_label() != "identity (y = x)":
            points.append(line.get_transform().transform(line.get_xydata()))
    points = np.concatenate(points)
    return points[[ax.get_window_extent().contains(x, y) for x, y in points]]


def model_artists(fig, models):
    """(model, artist) for every scatter point and line that draws a model."""
    for ax in fig.axes:
        for artist in [*ax.collections, *ax.lines]:
            if artist.get_label() in models:
                yield artist.get_label(), artist


def test_no_key_covers_a_data_point(study):
    for name, fig in study_figure_set(study).items():
        assert all(ax.get_legend() is None for ax in fig.axes), f"{name}: a key inside a panel"
        for legend in fig.legends:
            box = legend.get_window_extent()
            for ax in fig.axes:
                points = data_points_display(ax)
                inside = (
                    (points[:, 0] >= box.x0)
                    & (points[:, 0] <= box.x1)
                    & (points[:, 1] >= box.y0)
                    & (points[:, 1] <= box.y1)
                )
                assert not inside.any(), f"{name}: the key covers {inside.sum()} data points"
                assert not box.overlaps(ax.get_window_extent()), f"{name}: the key overlaps a panel"


def test_demo_band_lies_above_every_panel_and_key_and_the_title_says_demo(study, tmp_path, monkeypatch):
    models, brain, behavior, layers, analysis_dir = study
    built = figures.study_figures(brain, layers, behavior, analysis_dir, models)
    monkeypatch.setattr(figures, "PNG_DPI", 40)
    for name in ("protocols_brain", "layer_profiles_aw2024", "main_brain_aw2024", "decomposition_brain_robust"):
        fig = built[name]
        figures.save_figure(fig, tmp_path, name, demo=True)
        fig.draw_without_rendering()
        (band,) = [artist for artist in fig.artists if isinstance(artist, Rectangle)]
        band_box = band.get_window_extent()
        assert to_rgba(band.get_facecolor()) == to_rgba("red")
        for ax in fig.axes:
            assert band_box.y0 > ax.get_tightbbox().y1, f"{name}: the band is not above panel {ax.get_title()!r}"
        for legend in fig.legends:
            assert band_box.y0 > legend.get_window_extent().y1, f"{name}: the band is not above the key"
        assert fig.get_suptitle().startswith(figures.DEMO_LABEL)
        band_texts = [text for text in fig.texts if text.get_text() == figures.DEMO_LABEL]
        assert band_texts and band_box.contains(*band_texts[0].get_window_extent().get_points().mean(axis=0))


def test_a_family_has_one_colour_and_a_tuning_one_fill_in_every_figure(study):
    models, *_ = study
    # The run's families sorted take tab10's colours in order: fa the first, fb the second.
    expected = {"fa": to_rgba(plt.get_cmap("tab10")(0)), "fb": to_rgba(plt.get_cmap("tab10")(1))}
    seen = set()
    for name, fig in study_figure_set(study).items():
        for model, artist in model_artists(fig, models):
            family, tuned = models[model]["family"], models[model]["instruction_tuned"]
            if isinstance(artist, PathCollection):
                assert to_rgba(artist.get_edgecolor()[0]) == expected[family], f"{name}: {model}"
                assert (len(artist.get_facecolor()) == 0 or artist.get_facecolor()[0][3] == 0) == tuned, name
            else:
                assert to_rgba(artist.get_color()) == expected[family], f"{name}: {model}"
                assert (artist.get_linestyle() == "--") == tuned, f"{name}: {model}"
            seen.add(name)
        for legend in fig.legends:
            for patch, text in zip(legend.get_patches(), legend.get_texts()):
                if text.get_text() in expected:
                    assert to_rgba(patch.get_facecolor()) == expected[text.get_text()], name
    assert {
        "instruction_scatter_brain_aw2024",
        "properties_brain_robust",
        "protocols_brain",
        "layer_profiles_aw2024",
        "main_behavior_aw2024",
    } <= seen


def test_every_point_is_named_beside_its_marker_when_few(study, monkeypatch):
    models, brain, *_ = study
    style = figures.ModelStyle.from_models(models)
    fig = figures.plot_protocol_comparison(with_dataset_average(brain), "brain", style)
    for ax in fig.axes:
        named = {(text.get_text(), tuple(np.round(text.xy, 12))) for text in ax.texts}
        for model, artist in model_artists(fig, models):
            if artist.axes is ax:
                (point,) = artist.get_offsets()
                assert (model, tuple(np.round(point, 12))) in named
        assert all(text.get_position() != (0, 0) for text in ax.texts)  # offset: not on the marker
    monkeypatch.setattr(figures, "LABEL_LIMIT", len(models) - 1)
    crowded = figures.plot_protocol_comparison(with_dataset_average(brain), "brain", style)
    assert all(not ax.texts for ax in crowded.axes)


def test_points_at_the_edge_and_negative_scores_lie_inside_the_axes():
    models = {"m0": {"family": "f"}, "m1": {"family": "f"}, "m2": {"family": "f", "instruction_tuned": True}}
    scores = pd.DataFrame(
        {
            "model": ["m0", "m1", "m2"] * 2,
            "dataset": "D",
            "protocol": ["aw2024"] * 3 + ["robust"] * 3,
            "score": [0.0, 0.3, 0.1, -0.02, 0.0, 0.2],
        }
    )
    fig = figures.plot_protocol_comparison(scores, "brain", figures.ModelStyle.from_models(models))
    (ax,) = fig.axes
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    assert x_low < 0.0 < 0.3 < x_high and y_low < -0.02 < 0.2 < y_high
    # Margins of at least a marker's size on every side.
    assert min(0.0 - x_low, x_high - 0.3, -0.02 - y_low, y_high - 0.2) >= 0.05 * (x_high - x_low)


def test_behavior_protocols_compare_aw2024_with_regression(study):
    models, _, behavior, *_ = study
    regression = behavior.assign(protocol="regression", score=behavior["score"] / 2)
    fig = figures.plot_protocol_comparison(
        pd.concat([behavior, regression]), "behavior", figures.ModelStyle.from_models(models)
    )
    (ax,) = fig.axes
    assert n_points(ax) == len(models)
    assert ax.get_xlabel().startswith("aw2024") and ax.get_ylabel().startswith("regression")


@pytest.mark.parametrize(
    ("row", "text"),
    [
        ({"p_value": np.nan, "p_min": np.nan, "can_reach_alpha": np.nan}, "no test"),
        ({"p_value": 0.25, "p_min": 0.25, "can_reach_alpha": False}, "n.s.: p >= p_min = 0.25"),
        ({"p_value": 0.0078, "p_min": 0.0001, "can_reach_alpha": True}, "p = 0.0078"),
        ({"p_value": 0.36, "p_min": 0.0001, "can_reach_alpha": True}, "p = 0.36 (n.s.)"),
    ],
)
def test_p_text_says_why_there_is_no_p_value_instead_of_nan(row, text):
    assert figures.p_text(pd.Series(row)) == text


def test_effect_bars_carry_ci_and_test_under_each_bar_and_no_nan(study):
    *_, analysis_dir = study
    effect = read_tsv(analysis_dir / "instruction_effect.tsv").query("alignment == 'brain' and protocol == 'aw2024'")
    single = effect[effect["dataset"] == "D1"].assign(
        dataset="one-base", n_bases=1, p_value=np.nan, ci_low=np.nan, ci_high=np.nan
    )
    fig = figures.plot_percent_change(pd.concat([effect, single]), "brain", "aw2024")
    (ax,) = fig.axes
    labels = [label.get_text() for label in ax.get_xticklabels()]
    rows = effect[effect["family"] == "all"].set_index("dataset")
    for label, dataset in zip(labels, ["average", "D1", "D2", "one-base"]):
        assert label.startswith(dataset) and "nan" not in label
        if dataset != "one-base":
            assert figures.p_text(rows.loc[dataset]) in label
    assert "no test: 1 base" in labels[-1]
    # Error bars only where the table has a CI (not the single base, nor a refused percent change).
    (bars,) = [c for c in ax.collections if c.get_segments()]
    with_ci = rows.loc[["average", "D1", "D2"], ["ci_low", "ci_high"]].dropna().to_numpy()
    assert len(with_ci) >= 1
    assert np.array(bars.get_segments())[:, :, 1] == pytest.approx(with_ci)


def test_main_figure_draws_the_tables_effect_and_correlations_with_their_least_squares_lines(study):
    models, brain, _, _, analysis_dir = study
    effect = read_tsv(analysis_dir / "instruction_effect.tsv").query("alignment == 'brain' and protocol == 'aw2024'")
    correlations = read_tsv(analysis_dir / "correlations.tsv").query(
        "alignment == 'brain' and protocol == 'aw2024' and dataset == 'average'"
    )
    scores = with_dataset_average(brain[brain["protocol"] == "aw2024"])
    properties = model_properties(models)
    fig = figures.plot_main_figure(
        effect, scores, properties, correlations, "brain", "aw2024", "average", figures.ModelStyle.from_models(models)
    )
    bars, size_ax, mmlu_ax = fig.axes
    expected = effect[effect["family"] == "all"].set_index("dataset").loc[["average", "D1", "D2"], "pct_change"]
    assert [patch.get_height() for patch in bars.patches] == pytest.approx(expected.to_numpy(), nan_ok=True)
    average = scores[scores["dataset"] == "average"].set_index("model").join(properties)
    for ax, prop, model_set in ((size_ax, "log10_parameters", "all"), (mmlu_ax, "mmlu", "instruction_tuned")):
        row = correlations.query("property == @prop and models == @model_set").iloc[0]
        members = average if model_set == "all" else average[average["instruction_tuned"]]
        assert n_points(ax) == int(row["n"]) == len(members)
        fit = stats.linregress(members[prop], members["score"])
        assert f"r = {fit.rvalue:.2f}" in ax.get_title()
        (line,) = [line for line in ax.lines if line.get_label() == "least-squares line"]
        (x0, x1), (y0, y1) = line.get_xdata(), line.get_ydata()
        assert (y1 - y0) / (x1 - x0) == pytest.approx(fit.slope)
        assert y0 == pytest.approx(fit.intercept + fit.slope * x0)


def test_property_panel_says_why_it_has_no_r():
    models = {
        "base": {"family": "f", "parameters": 1e8},
        "tuned": {
            "family": "f",
            "parameters": 1e8,
            "instruction_tuned": True,
            "base": "base",
            "metadata": {"mmlu": 0.3},
        },
    }
    scores = pd.DataFrame({"model": ["base", "tuned"], "dataset": "D", "protocol": "aw2024", "score": [0.2, 0.3]})
    empty = pd.DataFrame(
        columns=[
            "property",
            "models",
            "n",
            "pearson_r",
            "p_value",
            "p_min",
            "can_reach_alpha",
            "p_fdr",
            "ci_low",
            "ci_high",
        ]
    )
    fig = figures.plot_property_scatter(
        scores, model_properties(models), empty, "brain", "aw2024", "D", figures.ModelStyle.from_models(models)
    )
    assert all(ax.get_title().startswith("no r: 1 of these models has this") for ax in fig.axes[::2])
    assert "no r: 0 of these models have this" in fig.axes[1].get_title()  # no BBH in the metadata
    assert [n_points(ax) for ax in fig.axes] == [1, 0, 1]


def test_figure_names_list_every_drawn_figure(study):
    models, brain, behavior, layers, analysis_dir = study
    built = figures.study_figures(brain, layers, behavior, analysis_dir, models)
    assert set(built) == set(figure_names(["aw2024", "robust"], ["aw2024"]))
    assert "main_brain_robust" in built
