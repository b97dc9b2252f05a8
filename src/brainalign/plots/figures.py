"""Figures of the study (matplotlib, Agg backend), each saved as PNG and PDF.

Every ``plot_*`` function returns its Figure so that tests can inspect the drawn points
before saving. A figure with nothing to show still appears, with a message saying why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from brainalign.analysis.correlations import SIZE, model_properties  # noqa: E402
from brainalign.analysis.tables import AVERAGE, validate_scores, with_dataset_average  # noqa: E402
from brainalign.io import atomic_path, read_tsv  # noqa: E402

DEMO_LABEL = "DEMO DATA (simulated)"
NO_PAIRS = "no instruction-tuned/base pairs in this suite"
PANEL_SIZE = (3.4, 3.2)
PNG_DPI = 300
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 8, "figure.titlesize": 11}
PROPERTY_LABELS = {
    "mmlu": "MMLU (5-shot accuracy)",
    "bbh_world_knowledge": "BBH world knowledge (3-shot)",
    "bbh": "BBH overall (3-shot)\n(world-knowledge category not available)",
    SIZE: "log10 parameters",
}
ALIGNMENT_LABELS = {"brain": "brain alignment (r)", "behavior": "behavioral alignment (r)"}
SCORE_SCALES = {"aw2024": "r", "robust": "R² gain over controls"}
"""What a protocol's brain score measures, for axis labels."""


def _dataset_order(datasets) -> list[str]:
    """The dataset average first, then datasets alphabetically."""
    names = sorted(set(datasets) - {AVERAGE})
    return ([AVERAGE] if AVERAGE in set(datasets) else []) + names


def _family_colors(families) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {family: cmap(i % 10) for i, family in enumerate(sorted(set(families)))}


def _panels(n: int, title: str) -> tuple[Figure, np.ndarray]:
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, max(n, 1), figsize=(PANEL_SIZE[0] * max(n, 1), PANEL_SIZE[1]), squeeze=False)
    fig.suptitle(title)
    return fig, axes[0]


def message_figure(title: str, message: str) -> Figure:
    """A one-panel figure that states why there is nothing to plot."""
    fig, (ax,) = _panels(1, title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _identity_line(ax) -> None:
    low = min(ax.get_xlim()[0], ax.get_ylim()[0])
    high = max(ax.get_xlim()[1], ax.get_ylim()[1])
    ax.plot([low, high], [low, high], color="0.5", linestyle="--", linewidth=1, label="identity")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)


def plot_instruction_scatter(pairs: pd.DataFrame, alignment: str, protocol: str) -> Figure:
    """Base score (x) against instruction-tuned score (y), one point per pair, one panel per dataset."""
    title = f"Instruction tuning, {alignment} alignment ({protocol})"
    if pairs.empty:
        return message_figure(title, NO_PAIRS)
    datasets = _dataset_order(pairs["dataset"])
    colors = _family_colors(pairs["family"])
    fig, axes = _panels(len(datasets), title)
    for ax, dataset in zip(axes, datasets):
        subset = pairs[pairs["dataset"] == dataset]
        for family, group in subset.groupby("family"):
            ax.scatter(group["score_base"], group["score_tuned"], color=colors[family], label=family, s=25)
        _identity_line(ax)
        ax.set(title=dataset, xlabel=f"vanilla {ALIGNMENT_LABELS[alignment]}", ylabel="instruction-tuned")
    axes[-1].legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_percent_change(effect: pd.DataFrame, alignment: str, protocol: str) -> Figure:
    """Percent change of the mean tuned over the mean base score per dataset (all families), 95% CI over bases."""
    title = f"Instruction-tuning effect on {alignment} alignment ({protocol})"
    rows = effect[effect["family"] == "all"].set_index("dataset")
    if rows.empty:
        return message_figure(title, NO_PAIRS)
    rows = rows.loc[_dataset_order(rows.index)]
    fig, (ax,) = _panels(1, title)
    fig.set_size_inches(1.3 * len(rows) + 3.5, PANEL_SIZE[1] + 0.4)
    x = np.arange(len(rows))
    mean = rows["pct_change"].to_numpy(dtype=float)
    # Bars without a CI (a single pair) get no error bar rather than a misleading zero-width one.
    errors = np.nan_to_num(np.vstack([mean - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - mean]))
    ax.bar(x, mean, color="tab:blue", alpha=0.8, label="mean tuned / mean base over bases")
    ax.errorbar(x, mean, yerr=errors, fmt="none", ecolor="black", capsize=4, label="95% bootstrap CI over bases")
    tops = np.fmax(mean, rows["ci_high"].to_numpy(float))
    for position, top, (_, row) in zip(x, tops, rows.iterrows()):
        ax.annotate(f"p = {row['p_value']:.2g}\n{int(row['n_improved'])}/{int(row['n_pairs'])} improve",
                    (position, max(top, 0)), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, rows.index)
    ax.set(ylabel="change vs vanilla base (%)", xlabel="dataset")
    ax.margins(y=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def _correlation_row(correlations: pd.DataFrame, prop: str, models: str) -> pd.Series | None:
    match = correlations[(correlations["property"] == prop) & (correlations["models"] == models)]
    return None if match.empty else match.iloc[0]


def plot_property_scatter(
    scores: pd.DataFrame, properties: pd.DataFrame, correlations: pd.DataFrame, alignment: str, protocol: str, dataset: str
) -> Figure:
    """Alignment against MMLU, BBH world knowledge (overall BBH if absent) and log size.

    Points are the instruction-tuned models that have the property (the models the
    correlation in the panel was computed over); each panel states r, p and FDR p.
    """
    title = f"{alignment.capitalize()} alignment vs model properties ({protocol}, {dataset}, instruction-tuned models)"
    has_category = correlations["property"].eq("bbh_world_knowledge").any()
    shown = ["mmlu", "bbh_world_knowledge" if has_category else "bbh", SIZE]
    joined = scores[scores["dataset"] == dataset].join(properties, on="model")
    joined = joined[joined["instruction_tuned"]]
    fig, axes = _panels(len(shown), title)
    colors = _family_colors(properties["family"].dropna())
    for ax, prop in zip(axes, shown):
        subset = joined.dropna(subset=[prop, "score"])
        row = _correlation_row(correlations, prop, "instruction_tuned")
        ax.set(xlabel=PROPERTY_LABELS[prop], ylabel=ALIGNMENT_LABELS[alignment])
        if subset.empty or row is None:
            ax.text(0.5, 0.5, "no models with this property", ha="center", va="center", transform=ax.transAxes)
            continue
        for family, group in subset.groupby("family"):
            ax.scatter(group[prop], group["score"], color=colors[family], label=family, s=25)
        ax.set_title(f"r = {row['pearson_r']:.2f}, p = {row['p_value']:.2g}\nFDR p = {row['p_fdr']:.2g}, n = {int(row['n'])}")
        ax.legend(loc="best")
    fig.tight_layout()
    return fig


def plot_layer_profiles(layers: pd.DataFrame | None, models: Mapping[str, Mapping], protocol: str) -> Figure:
    """Score against relative depth, one line per model, one panel per dataset."""
    title = f"Layer profiles of brain alignment ({protocol})"
    if layers is None or layers.empty:
        return message_figure(title, "no per-layer scores for this protocol")
    datasets = _dataset_order(layers["dataset"])
    families = {name: block.get("family") or "unknown" for name, block in models.items()}
    colors = _family_colors(families.values())
    fig, axes = _panels(len(datasets), title)
    for ax, dataset in zip(axes, datasets):
        for model, group in layers[layers["dataset"] == dataset].groupby("model"):
            group = group.sort_values("relative_depth")
            tuned = bool(models.get(model, {}).get("instruction_tuned"))
            ax.plot(group["relative_depth"], group["score"], color=colors.get(families.get(model, "unknown"), "0.3"),
                    linestyle="--" if tuned else "-", linewidth=1)
        ax.set(title=dataset, xlabel="relative layer depth", ylabel=f"brain alignment ({SCORE_SCALES.get(protocol, 'score')})")
    handles = [Line2D([], [], color=c, label=f) for f, c in colors.items()]
    handles += [Line2D([], [], color="0.3", linestyle="-", label="vanilla"),
                Line2D([], [], color="0.3", linestyle="--", label="instruction-tuned")]
    axes[-1].legend(handles=handles, loc="best")
    fig.tight_layout()
    return fig


def plot_protocol_comparison(scores: pd.DataFrame, alignment: str, protocols: tuple[str, str] = ("aw2024", "robust")) -> Figure:
    """Per model, the score under the paper's protocol (x) against the robust protocol (y)."""
    title = f"{alignment.capitalize()} alignment: {protocols[0]} vs {protocols[1]} protocol"
    wide = scores.pivot_table(index=["model", "dataset"], columns="protocol", values="score").reset_index()
    if not set(protocols) <= set(wide.columns) or wide.dropna(subset=list(protocols)).empty:
        return message_figure(title, f"no model has scores under both {protocols[0]} and {protocols[1]}")
    wide = wide.dropna(subset=list(protocols))
    datasets = _dataset_order(wide["dataset"])
    fig, axes = _panels(len(datasets), title)
    for ax, dataset in zip(axes, datasets):
        subset = wide[wide["dataset"] == dataset]
        ax.scatter(subset[protocols[0]], subset[protocols[1]], s=25, color="tab:purple", label="model")
        _identity_line(ax)
        ax.set(title=dataset, xlabel=f"{protocols[0]} score ({SCORE_SCALES[protocols[0]]})",
               ylabel=f"{protocols[1]} score ({SCORE_SCALES[protocols[1]]})")
    axes[-1].legend(loc="lower right")
    fig.tight_layout()
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
    fig, axes = _panels(len(datasets), title)
    fig.set_size_inches(5.0 * len(datasets), 1.0 + 0.45 * n_models)
    height = 0.8 / len(DECOMPOSITION)
    for ax, dataset in zip(axes, datasets):
        rows = scores[scores["dataset"] == dataset].sort_values("model", ascending=False)
        y = np.arange(len(rows))
        for k, (column, (label, color)) in enumerate(DECOMPOSITION.items()):
            ax.barh(y + (k - (len(DECOMPOSITION) - 1) / 2) * height, rows[column].to_numpy(float), height,
                    color=color, label=label)
        ax.set_yticks(y, [f"{model} (layer {int(layer)})" for model, layer in zip(rows["model"], rows["layer"])])
        ax.axvline(0, color="black", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set(title=dataset, xlabel="held-out R² (median over neuroids)")
    handles, labels = axes[0].get_legend_handles_labels()
    # Reversed so that the legend lists the bars top-down as each group draws them.
    fig.legend(handles[::-1], labels[::-1], loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(DECOMPOSITION))
    fig.tight_layout()
    return fig


def stamp_demo(fig: Figure) -> None:
    """Mark a figure as simulated data, visibly and in print."""
    fig.text(0.5, 0.5, DEMO_LABEL, ha="center", va="center", rotation=25, fontsize=28, color="red", alpha=0.3,
             weight="bold")
    fig.suptitle(f"{DEMO_LABEL}: {fig.get_suptitle()}", color="red")


def save_figure(fig: Figure, out_dir: Path, name: str, demo: bool) -> list[Path]:
    """Save a figure as PNG (:data:`PNG_DPI`) and PDF, atomically; close it; return the paths."""
    if demo:
        stamp_demo(fig)
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


def figure_names(brain_protocols: Sequence[str], behavior_protocols: Sequence[str]) -> list[str]:
    """Names of the figures :func:`study_figures` draws for the given protocols (no extension).

    The workflow declares these as outputs before any score exists.
    """
    names = []
    for alignment, protocols in (("brain", brain_protocols), ("behavior", behavior_protocols)):
        for protocol in sorted(protocols):
            key = f"{alignment}_{protocol}"
            names += [f"instruction_scatter_{key}", f"percent_change_{key}", f"properties_{key}"]
        if protocols:
            names.append(f"protocols_{alignment}")
    names += [f"layer_profiles_{protocol}" for protocol in sorted(brain_protocols)]
    if "robust" in brain_protocols:
        names.append("decomposition_brain_robust")
    return names


def study_figures(
    brain: pd.DataFrame,
    brain_layers: pd.DataFrame | None,
    behavior: pd.DataFrame,
    analysis_dir: str | Path,
    models: Mapping[str, Mapping],
) -> dict[str, Figure]:
    """Build every figure of the study; return name -> Figure (not saved)."""
    pairs = _analysis_table(analysis_dir, "instruction_pairs.tsv")
    effect = _analysis_table(analysis_dir, "instruction_effect.tsv")
    correlations = _analysis_table(analysis_dir, "correlations.tsv")
    properties = model_properties(models)
    figures = {}
    for alignment, table in (("brain", brain), ("behavior", behavior)):
        scores = with_dataset_average(validate_scores(table, table.attrs.get("source", f"the {alignment} score table"), models))
        for protocol, protocol_scores in scores.groupby("protocol", sort=True):
            def select(frame: pd.DataFrame) -> pd.DataFrame:
                return frame[(frame["alignment"] == alignment) & (frame["protocol"] == protocol)]

            dataset = AVERAGE if AVERAGE in set(protocol_scores["dataset"]) else _dataset_order(protocol_scores["dataset"])[0]
            key = f"{alignment}_{protocol}"
            figures[f"instruction_scatter_{key}"] = plot_instruction_scatter(select(pairs), alignment, protocol)
            figures[f"percent_change_{key}"] = plot_percent_change(select(effect), alignment, protocol)
            chosen = select(correlations)
            figures[f"properties_{key}"] = plot_property_scatter(
                protocol_scores, properties, chosen[chosen["dataset"] == dataset], alignment, protocol, dataset
            )
        if not scores.empty:
            figures[f"protocols_{alignment}"] = plot_protocol_comparison(scores, alignment)
    # One layer profile per brain protocol (a placeholder panel where no per-layer table is given).
    for protocol in sorted(brain["protocol"].unique()):
        subset = None if brain_layers is None else brain_layers[brain_layers["protocol"] == protocol]
        figures[f"layer_profiles_{protocol}"] = plot_layer_profiles(subset, models, protocol)
    if "robust" in set(brain["protocol"]):
        figures["decomposition_brain_robust"] = plot_robust_decomposition(brain[brain["protocol"] == "robust"])
    return figures


def plot_figures(
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
        Score tables (as given to :func:`brainalign.analysis.run.analyze`).
    brain_layers : DataFrame or None
        Per-layer brain scores (model, dataset, protocol, layer, relative_depth, score).
    analysis_dir : path
        Folder written by :func:`brainalign.analysis.run.analyze`.
    models : mapping
        Model name -> config block.
    out_dir : path
        Output folder.
    demo : bool
        Stamp every figure with :data:`DEMO_LABEL`.
    """
    paths = []
    for name, fig in study_figures(brain, brain_layers, behavior, analysis_dir, models).items():
        paths += save_figure(fig, Path(out_dir), name, demo)
    return paths
