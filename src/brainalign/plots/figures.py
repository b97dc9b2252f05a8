"""Figures of the study (matplotlib, Agg backend), each saved as PNG and PDF.

Every ``plot_*`` function returns its Figure so that tests can inspect the drawn points
before saving. A figure with nothing to show still appears, with a message saying why.

What a reader can rely on in every figure of a run (:class:`ModelStyle`): one colour per
model family (:func:`family_colors`), vanilla models filled markers and solid lines,
instruction-tuned models open markers and dashed lines; keys sit outside the axes; points
and lines carry their model's name where there are at most :data:`LABEL_LIMIT` of them;
simulated data get a red band above the figure (:func:`stamp_demo`), never over data.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from brainalign.analysis.correlations import MIN_MODELS, SIZE, model_properties  # noqa: E402
from brainalign.analysis.instruction import ALL_FAMILIES  # noqa: E402
from brainalign.analysis.tables import AVERAGE, validate_scores, with_dataset_average  # noqa: E402
from brainalign.io import atomic_path, read_tsv  # noqa: E402
from brainalign.stats import ALPHA  # noqa: E402

DEMO_LABEL = "DEMO DATA (simulated)"
DEMO_BAND_INCHES = 0.35
"""Height of the red band that marks simulated data, above everything else in the figure."""
NO_PAIRS = "no instruction-tuned/base pairs in this suite"
PANEL_SIZE = (4.0, 3.6)
KEY_HEIGHT = 0.7
"""Inches added to a figure's height for the key under its panels."""
KEY_ENTRY_WIDTH = 1.6
"""Inches a key entry takes in a row, to decide how many entries a row holds."""
LABEL_LIMIT = 30
"""Most points (or lines) in a panel that are labelled with their model's name."""
LABEL_FONTSIZE = 6.5
PNG_DPI = 300
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 8, "figure.titlesize": 11}
UNKNOWN_FAMILY = "unknown"
PROPERTY_LABELS = {
    "mmlu": "MMLU (5-shot accuracy)",
    "bbh_world_knowledge": "BBH world knowledge (3-shot)",
    "bbh": "BBH overall (3-shot)\n(world-knowledge category not available)",
    SIZE: "log10 parameters",
}
SCORE_SCALES = {"aw2024": "r", "robust": "R² gain over controls", "regression": "held-out r gain over baseline"}
"""What a protocol's score measures, for axis labels."""
COMPARED_PROTOCOLS = {"brain": ("aw2024", "robust"), "behavior": ("aw2024", "regression")}
"""The paper's protocol and this project's re-run of it, per alignment."""
MODEL_SETS = {"instruction_tuned": "instruction-tuned models", "all": "all models"}
"""Readable names of the ``models`` column of the correlation table."""
BAR_COLOR = "0.55"
"""Bars summarise many families at once, so they take no family's colour."""
BAR_WIDTH = 1.7
"""Inches per dataset in a bar chart: room for the test and counts under each bar."""


def family_colors(families: Iterable[str]) -> dict[str, tuple]:
    """The colour of each family: the sorted distinct families take tab10's colours in order
    (tab20's beyond ten families; colours repeat only beyond twenty)."""
    names = sorted(set(families))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {family: cmap(i % cmap.N) for i, family in enumerate(names)}


@dataclass(frozen=True)
class ModelStyle:
    """How every figure of a run draws a model: its family's colour, and filled markers with
    solid lines when vanilla, open markers with dashed lines when instruction-tuned."""

    family: Mapping[str, str]
    tuned: Mapping[str, bool]
    colors: Mapping[str, tuple]

    @classmethod
    def from_models(cls, models: Mapping[str, Mapping]) -> ModelStyle:
        """The style of every model of a run (model name -> config block)."""
        family = {name: block.get("family") or UNKNOWN_FAMILY for name, block in models.items()}
        tuned = {name: bool(block.get("instruction_tuned")) for name, block in models.items()}
        return cls(family, tuned, family_colors(family.values()))

    def color(self, model: str) -> tuple:
        """The colour of the model's family."""
        if model not in self.family:
            raise KeyError(f"model {model!r} is in a score table but not among the run's models {sorted(self.family)}")
        return self.colors[self.family[model]]

    def marker(self, model: str) -> dict:
        """Keyword arguments of ``Axes.scatter`` for the model's point."""
        color = self.color(model)
        return {
            "marker": "o",
            "s": 30,
            "edgecolors": [color],
            "linewidths": 1.2,
            "facecolors": "none" if self.tuned[model] else [color],
        }

    def line(self, model: str) -> dict:
        """Keyword arguments of ``Axes.plot`` for the model's line (markers at the data)."""
        color = self.color(model)
        return {
            "color": color,
            "linestyle": "--" if self.tuned[model] else "-",
            "linewidth": 1.2,
            "marker": "o",
            "markersize": 3.5,
            "markerfacecolor": "white" if self.tuned[model] else color,
        }

    def key(self, models: Iterable[str]) -> list:
        """Legend entries for the families and tunings among ``models`` (colours of the whole run)."""
        models = list(models)
        families = sorted({self.family[m] for m in models})
        handles = [Patch(color=self.colors[f], label=f) for f in families]
        tunings = sorted({self.tuned[m] for m in models})
        for tuned in tunings:
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.3",
                    linestyle="--" if tuned else "-",
                    marker="o",
                    markerfacecolor="white" if tuned else "0.3",
                    label="instruction-tuned" if tuned else "vanilla",
                )
            )
        return handles


def _dataset_order(datasets) -> list[str]:
    """The dataset average first, then datasets alphabetically."""
    names = sorted(set(datasets) - {AVERAGE})
    return ([AVERAGE] if AVERAGE in set(datasets) else []) + names


def score_label(alignment: str, protocol: str) -> str:
    """Axis label of an alignment score, e.g. ``brain alignment (r)``."""
    return f"{alignment} alignment ({SCORE_SCALES.get(protocol, 'score')})"


def _panels(
    n: int, title: str, legend: bool = False, size: tuple[float, float] | None = None
) -> tuple[Figure, np.ndarray]:
    """A row of ``n`` panels under ``title``, laid out so that labels and keys never overlap.

    The figure is ``size`` inches (by default :data:`PANEL_SIZE` per panel), and
    :data:`KEY_HEIGHT` taller for a key under the panels (``legend``).
    """
    n = max(n, 1)
    width, height = size or (PANEL_SIZE[0] * n, PANEL_SIZE[1])
    size = (width, height + (KEY_HEIGHT if legend else 0.0))
    with plt.rc_context(STYLE):
        # Not through pyplot: a study draws dozens of figures before saving them, and pyplot would keep each open.
        fig = Figure(figsize=size, layout="constrained")
        axes = fig.subplots(1, n, squeeze=False)
    _suptitle(fig, title)
    return fig, axes[0]


def _suptitle(fig: Figure, title: str, **kwargs) -> None:
    """The figure's title, wrapped to the figure's width so that no word is cut off."""
    characters = int(fig.get_size_inches()[0] * 72 / (0.6 * STYLE["figure.titlesize"]))
    fig.suptitle("\n".join(textwrap.wrap(title.replace("\n", " "), max(characters, 20))), **kwargs)


def _key_outside(fig: Figure, handles: list) -> None:
    """The figure's key, under every panel, in as many columns as the figure's width holds."""
    columns = max(1, min(len(handles), int(fig.get_size_inches()[0] // KEY_ENTRY_WIDTH)))
    fig.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize=STYLE["legend.fontsize"])


def message_figure(title: str, message: str) -> Figure:
    """A one-panel figure that states why there is nothing to plot."""
    fig, (ax,) = _panels(1, title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _padded(low: float, high: float, fraction: float = 0.1) -> tuple[float, float]:
    """``(low, high)`` widened by ``fraction`` of its span on both sides, so that no marker sits on an edge."""
    pad = fraction * (high - low) if high > low else max(abs(high), 1e-3) * fraction
    return low - pad, high + pad


def _identity_limits(ax: Axes, x: np.ndarray, y: np.ndarray) -> None:
    """The same padded limits on both axes covering every point (negative scores included), and y = x."""
    low, high = _padded(float(np.nanmin([x.min(), y.min()])), float(np.nanmax([x.max(), y.max()])))
    ax.plot([low, high], [low, high], color="0.5", linestyle=":", linewidth=1, label="identity (y = x)")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)


def _identity_key() -> list:
    return [Line2D([], [], color="0.5", linestyle=":", label="identity (y = x)")]


def _scatter_models(ax: Axes, x: Sequence[float], y: Sequence[float], models: Sequence[str], style: ModelStyle) -> None:
    """One marker per model in its style; names beside the markers where there are few enough."""
    for xi, yi, model in zip(x, y, models):
        ax.scatter([xi], [yi], label=model, **style.marker(model))
    if len(models) <= LABEL_LIMIT:
        _label_points(ax, x, y, models)


LABEL_PLACES = ((1, 1), (1, -1), (-1, 1), (-1, -1))
"""Where a name may sit relative to its marker (right/left, above/below), in order of preference."""


def _label_points(ax: Axes, x: Sequence[float], y: Sequence[float], names: Sequence[str]) -> None:
    """Each name a few points off its marker, on the first side where (by an estimate of the text's
    size) it overlaps no other marker or name and stays inside the axes."""
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    width_pt, height_pt = _axes_size_points(ax)
    points = np.column_stack(
        [(np.asarray(x, float) - x_low) / (x_high - x_low), (np.asarray(y, float) - y_low) / (y_high - y_low)]
    )
    marker = np.array([4.0 / width_pt, 4.0 / height_pt])  # a marker's half-size, in axes fractions
    placed: list[np.ndarray] = []
    for i, ((px, py), name) in enumerate(zip(points, names)):
        size = np.array([0.6 * LABEL_FONTSIZE * len(name) / width_pt, 1.3 * LABEL_FONTSIZE / height_pt])
        boxes = [_label_box(px, py, side, size, marker) for side in LABEL_PLACES]
        clashes = [_clashes(box, placed, points, marker) for box in boxes]
        best = int(np.argmin(clashes))
        placed.append(boxes[best])
        sx, sy = LABEL_PLACES[best]
        ax.annotate(
            name,
            (x[i], y[i]),
            xytext=(5 * sx, 3 * sy),
            textcoords="offset points",
            ha="left" if sx > 0 else "right",
            va="bottom" if sy > 0 else "top",
            fontsize=LABEL_FONTSIZE,
            color="0.2",
        )


def _axes_size_points(ax: Axes) -> tuple[float, float]:
    """The axes' width and height in points (before the final layout: close enough to place labels)."""
    box = ax.get_position()
    fig_width, fig_height = ax.figure.get_size_inches()
    return box.width * fig_width * 72, box.height * fig_height * 72


def _label_box(px: float, py: float, side: tuple[int, int], size: np.ndarray, marker: np.ndarray) -> np.ndarray:
    """Estimated (x0, y0, x1, y1) in axes fractions of a name placed on ``side`` of the point."""
    x0 = px + side[0] * marker[0] if side[0] > 0 else px - marker[0] - size[0]
    y0 = py + side[1] * marker[1] / 2 if side[1] > 0 else py - marker[1] / 2 - size[1]
    return np.array([x0, y0, x0 + size[0], y0 + size[1]])


def _clashes(box: np.ndarray, placed: list[np.ndarray], points: np.ndarray, marker: np.ndarray) -> int:
    """How many names and markers the box overlaps, and 1 more when it leaves the axes."""
    overlaps = sum(_overlap(box, other) for other in placed)
    overlaps += sum(_overlap(box, np.concatenate([point - marker, point + marker])) for point in points)
    return overlaps + int(box[0] < 0 or box[1] < 0 or box[2] > 1 or box[3] > 1)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _spread(positions: np.ndarray, gap: float) -> np.ndarray:
    """Positions moved apart to at least ``gap`` from each other, keeping their order (for labels)."""
    order = np.argsort(positions)
    spread = positions[order].astype(float)
    for i in range(1, len(spread)):
        spread[i] = max(spread[i], spread[i - 1] + gap)
    # Centre the shifted block on the original one so that labels drift as little as possible.
    spread -= spread.mean() - positions.mean()
    out = np.empty_like(spread)
    out[order] = spread
    return out


def _label_line_ends(ax: Axes, ends: list[tuple[str, float, tuple]]) -> None:
    """Each line's model name right of the panel at the height of the line's last point."""
    if not ends or len(ends) > LABEL_LIMIT:
        return
    low, high = ax.get_ylim()
    heights = np.array([(y - low) / (high - low) for _, y, _ in ends])
    for (name, _, color), height in zip(ends, _spread(heights, min(0.07, 1.0 / len(ends)))):
        ax.annotate(name, (1.02, height), xycoords="axes fraction", va="center", fontsize=LABEL_FONTSIZE, color=color)


def plot_instruction_scatter(pairs: pd.DataFrame, alignment: str, protocol: str, style: ModelStyle) -> Figure:
    """Base score (x) against instruction-tuned score (y), one point per pair (named after the
    tuned model), one panel per dataset."""
    title = f"Instruction tuning, {alignment} alignment ({protocol})"
    if pairs.empty:
        return message_figure(title, NO_PAIRS)
    datasets = _dataset_order(pairs["dataset"])
    fig, axes = _panels(len(datasets), title, legend=True)
    for ax, dataset in zip(axes, datasets):
        subset = pairs[pairs["dataset"] == dataset]
        x, y = subset["score_base"].to_numpy(float), subset["score_tuned"].to_numpy(float)
        _identity_limits(ax, x, y)
        _scatter_models(ax, x, y, list(subset["model"]), style)
        ax.set(title=dataset, xlabel=f"vanilla base: {score_label(alignment, protocol)}", ylabel="instruction-tuned")
    _key_outside(fig, style.key(pairs["model"]) + _identity_key())
    return fig


def p_text(row: pd.Series) -> str:
    """A test's p-value for a figure: ``p = 0.0078``, ``p = 0.36 (n.s.)``, ``n.s.: p >= p_min = 0.25``
    when the test cannot reach :data:`ALPHA`, ``no test`` without one."""
    p_value = float(row["p_value"])
    if not np.isfinite(p_value):
        return "no test"
    if str(row.get("can_reach_alpha")).lower() == "false":
        return f"n.s.: p >= p_min = {float(row['p_min']):.2g}"
    return f"p = {p_value:.2g}" + (" (n.s.)" if p_value >= ALPHA else "")


def _effect_label(dataset: str, row: pd.Series) -> str:
    """The tick label of one dataset's bar: its name, the test and how many pairs improve."""
    n_bases = int(row["n_bases"])
    test = p_text(row) if n_bases >= 2 else f"no test: {n_bases} base"
    return f"{dataset}\n{test}\n{int(row['n_improved'])}/{int(row['n_pairs'])} improve"


def _draw_effect_bars(ax: Axes, rows: pd.DataFrame) -> None:
    """Percent change per dataset with its CI; the test and counts under each bar, never over data."""
    x = np.arange(len(rows))
    mean = rows["pct_change"].to_numpy(float)
    low, high = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
    ax.bar(x, mean, color=BAR_COLOR, label="mean tuned / mean base over bases")
    with_ci = np.isfinite(low) & np.isfinite(high) & np.isfinite(mean)
    # A bar without a CI (one base) gets no error bar rather than a misleading zero-width one.
    ax.errorbar(
        x[with_ci],
        mean[with_ci],
        yerr=np.vstack([mean - low, high - mean])[:, with_ci],
        fmt="none",
        ecolor="black",
        capsize=4,
        label="95% bootstrap CI over bases",
    )
    for position in x[~np.isfinite(mean)]:
        note = rows["pct_note"].iloc[position]
        reason = note.split(";")[0] if isinstance(note, str) and note else "not computed"
        ax.annotate(
            "\n".join(textwrap.wrap(f"% change {reason}", 22)),
            (position, 0),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=LABEL_FONTSIZE,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, [_effect_label(dataset, row) for dataset, row in rows.iterrows()])
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(*_padded(*_value_range(mean, low, high)))
    ax.set(ylabel="change vs vanilla base (%)")


def _value_range(*arrays: np.ndarray) -> tuple[float, float]:
    """The finite range of the values and zero (bars start at zero)."""
    values = np.concatenate([np.ravel(a) for a in arrays] + [[0.0]])
    values = values[np.isfinite(values)]
    return float(values.min()), float(values.max())


def _effect_key() -> list:
    return [
        Patch(color=BAR_COLOR, label="mean tuned / mean base\nover bases"),
        Line2D([], [], color="black", marker="_", markersize=8, label="95% bootstrap CI\nover bases"),
    ]


def _all_family_rows(effect: pd.DataFrame) -> pd.DataFrame:
    rows = effect[effect["family"] == ALL_FAMILIES].set_index("dataset")
    return rows.loc[_dataset_order(rows.index)]


def plot_percent_change(effect: pd.DataFrame, alignment: str, protocol: str) -> Figure:
    """Percent change of the mean tuned over the mean base score per dataset (all families), 95% CI over bases."""
    title = f"Instruction-tuning effect on {alignment} alignment ({protocol})"
    rows = _all_family_rows(effect)
    if rows.empty:
        return message_figure(title, NO_PAIRS)
    fig, (ax,) = _panels(1, title, legend=True, size=(BAR_WIDTH * len(rows) + 2.0, PANEL_SIZE[1] + 0.6))
    _draw_effect_bars(ax, rows)
    _key_outside(fig, _effect_key())
    return fig


def _correlation_row(correlations: pd.DataFrame, prop: str, models: str) -> pd.Series | None:
    match = correlations[(correlations["property"] == prop) & (correlations["models"] == models)]
    return None if match.empty else match.iloc[0]


def _interval_text(row: pd.Series) -> str:
    low, high = float(row["ci_low"]), float(row["ci_high"])
    return f" (95% CI {low:.2f} to {high:.2f})" if np.isfinite(low) and np.isfinite(high) else ""


def correlation_title(row: pd.Series) -> str:
    """A panel title with the correlation table's r, its CI, p, FDR p and n."""
    return (
        f"r = {float(row['pearson_r']):.2f}{_interval_text(row)}\n"
        f"{p_text(row)}, FDR p = {float(row['p_fdr']):.2g}, n = {int(row['n'])}"
    )


def _no_correlation_title(n_models: int, model_set: str) -> str:
    """Why a panel has no r: too few models with the property (or, should it happen, no table row)."""
    if n_models >= MIN_MODELS:
        return f"no r in correlations.tsv for these\n{n_models} models: rerun analyze"
    verb = "has" if n_models == 1 else "have"
    return f"no r: {n_models} of these models {verb} this\nproperty; r needs >= {MIN_MODELS}"


def _draw_correlation(
    ax: Axes, joined: pd.DataFrame, prop: str, model_set: str, row: pd.Series | None, style: ModelStyle
) -> None:
    """Score against a property over one model set, its least-squares line and the table's r and p.

    ``joined`` holds one dataset's scores joined with the model properties (index: model).
    """
    models = joined if model_set == "all" else joined[joined["instruction_tuned"]]
    subset = models.dropna(subset=[prop, "score"])
    x, y = subset[prop].to_numpy(float), subset["score"].to_numpy(float)
    if len(subset):
        # Limits first: the labels look at the edges to decide on which side of a marker they go.
        ax.set_xlim(*_padded(x.min(), x.max(), 0.12))
        ax.set_ylim(*_padded(y.min(), y.max(), 0.12))
        _scatter_models(ax, x, y, list(subset.index), style)
    if row is None:
        ax.set_title(_no_correlation_title(len(subset), model_set), fontsize=STYLE["font.size"] - 1)
        return
    if len(subset) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        line_x = np.array(ax.get_xlim())
        ax.plot(line_x, intercept + slope * line_x, color="0.3", linewidth=1, label="least-squares line")
    ax.set_title(correlation_title(row), fontsize=STYLE["font.size"] - 1)


def _joined_scores(scores: pd.DataFrame, properties: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One dataset's score per model beside the model's properties (index: model)."""
    return scores[scores["dataset"] == dataset].set_index("model").join(properties, how="left")


def plot_property_scatter(
    scores: pd.DataFrame,
    properties: pd.DataFrame,
    correlations: pd.DataFrame,
    alignment: str,
    protocol: str,
    dataset: str,
    style: ModelStyle,
) -> Figure:
    """Alignment against MMLU, BBH world knowledge (overall BBH if absent) and log size.

    Points are the instruction-tuned models that have the property (the models the
    correlation in the panel was computed over); each panel states r, p and FDR p, or why
    there is no r (fewer than :data:`MIN_MODELS` models with the property).
    """
    title = f"{alignment.capitalize()} alignment vs model properties ({protocol}, {dataset}, instruction-tuned models)"
    has_category = correlations["property"].eq("bbh_world_knowledge").any()
    shown = ["mmlu", "bbh_world_knowledge" if has_category else "bbh", SIZE]
    joined = _joined_scores(scores, properties, dataset)
    fig, axes = _panels(len(shown), title, legend=True)
    for ax, prop in zip(axes, shown):
        row = _correlation_row(correlations, prop, "instruction_tuned")
        _draw_correlation(ax, joined, prop, "instruction_tuned", row, style)
        ax.set(xlabel=PROPERTY_LABELS[prop], ylabel=score_label(alignment, protocol))
    _key_outside(fig, style.key(joined.index[joined["instruction_tuned"]]) + _fit_key())
    return fig


def _fit_key() -> list:
    return [Line2D([], [], color="0.3", linewidth=1, label="least-squares line")]


def plot_main_figure(
    effect: pd.DataFrame,
    scores: pd.DataFrame,
    properties: pd.DataFrame,
    correlations: pd.DataFrame,
    alignment: str,
    protocol: str,
    dataset: str,
    style: ModelStyle,
) -> Figure:
    """The paper's main results in three panels: (a) the instruction-tuning effect per dataset
    with its CI and test, (b) alignment against model size and (c) against MMLU, each with its
    least-squares line and the correlation table's r, CI and p.

    Size is correlated over all models where the table has that row (the paper's 25), else
    over the instruction-tuned ones; MMLU over the instruction-tuned models (the only ones
    with MMLU in the paper).
    """
    title = f"Main results: {alignment} alignment ({protocol}; correlations on {dataset})"
    rows = _all_family_rows(effect)
    size_set = "all" if _correlation_row(correlations, SIZE, "all") is not None else "instruction_tuned"
    joined = _joined_scores(scores, properties, dataset)
    width = max(BAR_WIDTH * len(rows) + 1.5, PANEL_SIZE[0]) + 2 * PANEL_SIZE[0]
    fig, axes = _panels(3, title, legend=True, size=(width, PANEL_SIZE[1] + 0.8))
    if rows.empty:
        axes[0].text(0.5, 0.5, NO_PAIRS, ha="center", va="center", wrap=True, transform=axes[0].transAxes)
        axes[0].set_axis_off()
    else:
        _draw_effect_bars(axes[0], rows)
    axes[0].set_title("a. instruction-tuning effect\n(% change, 95% CI over bases)", fontsize=STYLE["font.size"] - 1)
    for ax, prop, model_set, letter in ((axes[1], SIZE, size_set, "b"), (axes[2], "mmlu", "instruction_tuned", "c")):
        _draw_correlation(ax, joined, prop, model_set, _correlation_row(correlations, prop, model_set), style)
        ax.set_title(f"{letter}. {MODEL_SETS[model_set]}\n{ax.get_title()}", fontsize=STYLE["font.size"] - 1)
        ax.set(xlabel=PROPERTY_LABELS[prop], ylabel=score_label(alignment, protocol))
    shown = joined.index if size_set == "all" else joined.index[joined["instruction_tuned"]]
    _key_outside(fig, style.key(shown) + _fit_key() + ([] if rows.empty else _effect_key()))
    return fig


def plot_layer_profiles(layers: pd.DataFrame | None, style: ModelStyle, protocol: str) -> Figure:
    """Score against relative depth, one line per model (named at its end), one panel per dataset."""
    title = f"Layer profiles of brain alignment ({protocol})"
    if layers is None or layers.empty:
        return message_figure(title, "no per-layer scores for this protocol")
    datasets = _dataset_order(layers["dataset"])
    fig, axes = _panels(len(datasets), title, legend=True)
    for ax, dataset in zip(axes, datasets):
        ends = []
        for model, group in layers[layers["dataset"] == dataset].groupby("model"):
            group = group.sort_values("relative_depth")
            ax.plot(group["relative_depth"], group["score"], label=model, **style.line(model))
            ends.append((model, float(group["score"].iloc[-1]), style.color(model)))
        ax.margins(x=0.03, y=0.08)
        ax.set(title=dataset, xlabel="relative layer depth", ylabel=score_label("brain", protocol))
        _label_line_ends(ax, ends)
    _key_outside(fig, style.key(layers["model"].unique()))
    return fig


def plot_protocol_comparison(scores: pd.DataFrame, alignment: str, style: ModelStyle) -> Figure:
    """Per model, the score under the paper's protocol (x) against this project's re-run (y)."""
    protocols = COMPARED_PROTOCOLS[alignment]
    title = f"{alignment.capitalize()} alignment: {protocols[0]} vs {protocols[1]} protocol"
    wide = scores.pivot_table(index=["model", "dataset"], columns="protocol", values="score").reset_index()
    if not set(protocols) <= set(wide.columns) or wide.dropna(subset=list(protocols)).empty:
        return message_figure(title, f"no model has scores under both {protocols[0]} and {protocols[1]}")
    wide = wide.dropna(subset=list(protocols))
    datasets = _dataset_order(wide["dataset"])
    fig, axes = _panels(len(datasets), title, legend=True)
    for ax, dataset in zip(axes, datasets):
        subset = wide[wide["dataset"] == dataset]
        x, y = subset[protocols[0]].to_numpy(float), subset[protocols[1]].to_numpy(float)
        _identity_limits(ax, x, y)
        if ax.get_ylim()[0] < 0:  # robust scores can be negative: mark where the gain over controls is zero
            ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
        _scatter_models(ax, x, y, list(subset["model"]), style)
        ax.set(
            title=dataset,
            xlabel=f"{protocols[0]} score ({SCORE_SCALES[protocols[0]]})",
            ylabel=f"{protocols[1]} score ({SCORE_SCALES[protocols[1]]})",
        )
    _key_outside(fig, style.key(wide["model"]) + _identity_key())
    return fig


DECOMPOSITION = {
    "score_joint": ("joint (LLM + controls)", "tab:purple"),
    "score_controls": ("controls only", "tab:gray"),
    "score_llm": ("LLM only", "tab:blue"),
    "score": ("headline: gain of joint over controls", "tab:orange"),
}
"""The robust protocol's held-out R^2 measures shown per model, and their legend labels and colours."""


def plot_robust_decomposition(scores: pd.DataFrame) -> Figure:
    """Per model at its chosen layer, the robust headline beside the joint, controls-only and
    LLM-only held-out R^2 it is made from; one panel per dataset, one group of bars per model.

    Parameters
    ----------
    scores : DataFrame
        Robust rows of the brain score table (``model``, ``dataset``, ``layer`` and the
        :data:`DECOMPOSITION` columns).
    """
    title = "Robust protocol: what the held-out R² gain is made of (chosen layer)"
    missing = [column for column in ("layer", *DECOMPOSITION) if column not in scores.columns]
    if scores.empty or missing:
        return message_figure(title, f"no robust scores with {missing or list(DECOMPOSITION)}")
    datasets = _dataset_order(scores["dataset"])
    n_models = scores["model"].nunique()
    fig, axes = _panels(len(datasets), title, size=(5.0 * len(datasets), 1.6 + 0.45 * n_models))
    height = 0.8 / len(DECOMPOSITION)
    for ax, dataset in zip(axes, datasets):
        rows = scores[scores["dataset"] == dataset].sort_values("model", ascending=False)
        y = np.arange(len(rows))
        for k, (column, (label, color)) in enumerate(DECOMPOSITION.items()):
            ax.barh(
                y + (k - (len(DECOMPOSITION) - 1) / 2) * height,
                rows[column].to_numpy(float),
                height,
                color=color,
                label=label,
            )
        ax.set_yticks(y, [f"{model} (layer {int(layer)})" for model, layer in zip(rows["model"], rows["layer"])])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set(title=dataset, xlabel="held-out R² (median over neuroids)")
    handles, labels = axes[0].get_legend_handles_labels()
    # Reversed so that the legend lists the bars top-down as each group draws them.
    fig.legend(handles[::-1], labels[::-1], loc="outside lower center", ncol=len(DECOMPOSITION))
    return fig


def stamp_demo(fig: Figure) -> None:
    """Mark a figure as simulated data: the label in its title, and a red band with
    :data:`DEMO_LABEL` above everything drawn (titles and keys included), as wide as all of it."""
    _suptitle(fig, f"{DEMO_LABEL}: {fig.get_suptitle()}", color="red")
    _pin_legends(fig)
    width, height = fig.get_size_inches()
    drawn = fig.get_tightbbox()  # inches; may reach beyond the canvas
    # In figure fractions (not inches): saving with a tight box moves the figure's origin, and
    # only artists placed in figure coordinates move with it.
    left, right, bottom = drawn.x0 / width, drawn.x1 / width, (drawn.y1 + 0.05) / height
    band = DEMO_BAND_INCHES / height
    fig.add_artist(
        Rectangle((left, bottom), right - left, band, transform=fig.transFigure, facecolor="red", edgecolor="none")
    )
    fig.text((left + right) / 2, bottom + band / 2, DEMO_LABEL, ha="center", va="center", color="white", weight="bold")


def _pin_legends(fig: Figure) -> None:
    """Run the layout once more and keep it: panels stay where they are, and each figure-level key
    is fixed where the layout put it, in figure fractions.

    Saving with a tight box would otherwise re-anchor keys to the corners of the cropped
    image, onto whatever lies there (the demo band).
    """
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    to_fraction = fig.transFigure.inverted()
    for legend in fig.legends:
        legend.set_bbox_to_anchor(legend.get_window_extent().transformed(to_fraction), transform=fig.transFigure)
        legend.set_loc("center")


def save_figure(fig: Figure, out_dir: Path, name: str, demo: bool) -> list[Path]:
    """Save a figure as PNG (:data:`PNG_DPI`) and PDF, atomically; close it; return the paths."""
    if demo:
        stamp_demo(fig)
    else:
        _pin_legends(fig)
    paths = []
    for suffix in ("png", "pdf"):
        path = Path(out_dir) / f"{name}.{suffix}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix, dpi=PNG_DPI, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _analysis_table(analysis_dir: Path, name: str) -> pd.DataFrame:
    return read_tsv(Path(analysis_dir) / name)


def study_figures(
    brain: pd.DataFrame,
    brain_layers: pd.DataFrame | None,
    behavior: pd.DataFrame,
    analysis_dir: str | Path,
    models: Mapping[str, Mapping],
) -> dict[str, Figure]:
    """Build every figure of the study, all in the run's :class:`ModelStyle`; return name -> Figure (not saved)."""
    pairs = _analysis_table(analysis_dir, "instruction_pairs.tsv")
    effect = _analysis_table(analysis_dir, "instruction_effect.tsv")
    correlations = _analysis_table(analysis_dir, "correlations.tsv")
    properties = model_properties(models)
    style = ModelStyle.from_models(models)
    figures = {}
    for alignment, table in (("brain", brain), ("behavior", behavior)):
        source = table.attrs.get("source", f"the {alignment} score table")
        scores = with_dataset_average(validate_scores(table, source, models))
        for protocol, protocol_scores in scores.groupby("protocol", sort=True):

            def select(frame: pd.DataFrame, alignment=alignment, protocol=protocol) -> pd.DataFrame:
                return frame[(frame["alignment"] == alignment) & (frame["protocol"] == protocol)]

            dataset = _dataset_order(protocol_scores["dataset"])[0]  # the average where there is one
            key = f"{alignment}_{protocol}"
            chosen = select(correlations)
            chosen = chosen[chosen["dataset"] == dataset]
            figures[f"main_{key}"] = plot_main_figure(
                select(effect), protocol_scores, properties, chosen, alignment, protocol, dataset, style
            )
            figures[f"instruction_scatter_{key}"] = plot_instruction_scatter(select(pairs), alignment, protocol, style)
            figures[f"percent_change_{key}"] = plot_percent_change(select(effect), alignment, protocol)
            figures[f"properties_{key}"] = plot_property_scatter(
                protocol_scores, properties, chosen, alignment, protocol, dataset, style
            )
        if not scores.empty:
            figures[f"protocols_{alignment}"] = plot_protocol_comparison(scores, alignment, style)
    # One layer profile per brain protocol (a placeholder panel where no per-layer table is given).
    for protocol in sorted(brain["protocol"].unique()):
        subset = None if brain_layers is None else brain_layers[brain_layers["protocol"] == protocol]
        figures[f"layer_profiles_{protocol}"] = plot_layer_profiles(subset, style, protocol)
    if "robust" in set(brain["protocol"]):
        figures["decomposition_brain_robust"] = plot_robust_decomposition(brain[brain["protocol"] == "robust"])
    return figures


def draw_figures(
    brain: pd.DataFrame,
    brain_layers: pd.DataFrame | None,
    behavior: pd.DataFrame,
    analysis_dir: str | Path,
    models: Mapping[str, Mapping],
    out_dir: str | Path,
    demo: bool,
) -> list[Path]:
    """Draw every figure of the study into ``out_dir`` (PNG and PDF); return the files written.

    Parameters
    ----------
    brain, behavior : DataFrame
        Score tables (as given to :func:`brainalign.analysis.run.compute_study_statistics`).
    brain_layers : DataFrame or None
        Per-layer brain scores (model, dataset, protocol, layer, relative_depth, score).
    analysis_dir : path
        Folder written by :func:`brainalign.analysis.run.compute_study_statistics`.
    models : mapping
        Model name -> config block.
    out_dir : path
        Output folder.
    demo : bool
        Mark every figure as simulated data (:func:`stamp_demo`).
    """
    paths = []
    for name, fig in study_figures(brain, brain_layers, behavior, analysis_dir, models).items():
        paths += save_figure(fig, Path(out_dir), name, demo)
    return paths
