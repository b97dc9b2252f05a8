"""The markdown summary states each finding with the numbers of the analysis tables."""

from __future__ import annotations

import pytest

from brainalign.analysis.published import PUBLISHED_DIR, load_models_file
from brainalign.analysis.run import compute_study_statistics
from brainalign.analysis.summary import DEMO_BANNER, write_summary
from brainalign.io import read_tsv


@pytest.fixture(scope="module")
def published_analysis(tmp_path_factory):
    models, _ = load_models_file(PUBLISHED_DIR / "models.yaml", "paper")
    brain = read_tsv(PUBLISHED_DIR / "brain.tsv").query("model in @models")
    behavior = read_tsv(PUBLISHED_DIR / "behavior.tsv").query("model in @models")
    out = tmp_path_factory.mktemp("analysis")
    compute_study_statistics(brain, behavior, models, out, published_dir=None, n_resamples=300)
    return brain, behavior, out


def test_summary_states_effects_and_correlations_with_their_numbers(published_analysis, tmp_path):
    brain, behavior, out = published_analysis
    path = tmp_path / "summary.md"
    write_summary(out, brain, behavior, path, demo=False)
    text = path.read_text()
    effect = (
        read_tsv(out / "instruction_effect.tsv")
        .query("alignment == 'brain' and dataset == 'average' and family == 'all'")
        .iloc[0]
    )
    assert f"mean over datasets: {effect['pct_change']:+.2f}% (95% CI {effect['ci_low']:+.2f} to" in text
    assert f"sign flips over {int(effect['n_bases'])} bases p = " in text
    for dataset in ("pereira2018", "blank2014", "wehbe2014", "futrell2018"):
        assert f"- {dataset}: " in text
    mmlu = (
        read_tsv(out / "correlations.tsv")
        .query("alignment == 'brain' and dataset == 'average' and property == 'mmlu'")
        .iloc[0]
    )
    assert f"- MMLU: r = {mmlu['pearson_r']:.3g}" in text
    assert "BBH overall (world-knowledge category not available)" in text
    assert "log10 parameters: r = " in text and "partial r = " in text
    assert "## Behavior alignment, protocol aw2024" in text
    assert DEMO_BANNER not in text


def test_demo_summary_is_labelled(published_analysis, tmp_path):
    brain, behavior, out = published_analysis
    write_summary(out, brain, behavior, tmp_path / "summary.md", demo=True)
    assert "DEMO DATA (simulated)" in (tmp_path / "summary.md").read_text()


def test_each_protocol_says_how_its_scores_were_made(published_analysis, tmp_path):
    brain, behavior, out = published_analysis
    brain = brain.assign(
        activation_readout=lambda t: t["protocol"].map({"aw2024": "aw2024"}).fillna("unit"),
        split_order="stored",
        fit_precision="float32",
        layer_choice="max_per_dataset",
    )
    behavior = behavior.assign(surprisal_readout="aw2024")
    write_summary(out, brain, behavior, tmp_path / "summary.md", demo=False)
    text = (tmp_path / "summary.md").read_text()
    section = text.split("## Brain alignment, protocol aw2024")[1].split("##")[0]
    assert (
        "How these scores were made: readout: aw2024; layer rule: max_per_dataset; split order: stored; fit "
        "precision: float32." in section
    )
    assert (
        "How these scores were made: surprisal readout: aw2024."
        in text.split("## Behavior alignment, protocol aw2024")[1]
    )
    # Published tables record nothing of the kind, and the summary says so.
    write_summary(
        out,
        brain.drop(columns=["activation_readout", "split_order", "fit_precision", "layer_choice"]),
        behavior,
        tmp_path / "bare.md",
        demo=False,
    )
    assert "How these scores were made: not recorded." in (tmp_path / "bare.md").read_text()
