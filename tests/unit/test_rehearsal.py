"""Rehearsal datasets: real on-disk formats read back by the real readers, and the simulation's
controls and autocorrelation checked by independent computations (scikit-learn, numpy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import REPO_ROOT, shared_data_dir
from sklearn.linear_model import LinearRegression

from brainalign import rehearsal
from brainalign.config import load_config
from brainalign.datasets import blank2014, pereira2018, wehbe2014
from brainalign.errors import ConfigError

NULL = {
    "variant": "null",
    "size": "ci",
    "signal_fraction": 0.0,
    "control_fraction": 0.3,
    "autocorrelation": 0.6,
    "delays": [1, 2, 3, 4],
    "seed": 3,
}


@pytest.fixture(params=["shared", "demo"])
def texts(request) -> rehearsal.TextSources:
    """Both text sources: the reference data (skipped where absent) and the demo-text fallback."""
    if request.param == "demo":
        return rehearsal.TextSources(None, REPO_ROOT / "resources" / "demo")
    sources = rehearsal.text_sources(shared_data_dir(), REPO_ROOT / "resources" / "demo")
    if sources.shared is None:
        pytest.skip(f"reference texts not found in {shared_data_dir()}")
    return sources


def pereira_block(tmp_path) -> dict:
    return {
        "reader": "pereira2018",
        "files": {"assembly": str(tmp_path / "assy.nc")},
        "options": {"strict_counts": False},
    }


def test_pereira_layout_has_brainscore_coords_stored_order_and_skipped_experiments(tmp_path, texts):
    block = pereira_block(tmp_path)
    rehearsal.generate_pereira(block, {**NULL, "layout": "pereira2018"}, texts, None)
    with xr.open_dataset(tmp_path / "assy.nc") as stored:
        array = stored["data"].load()
    assert array.dims == ("presentation", "neuroid") and array.shape[0] == 627
    presentation = {
        "stimulus",
        "stimulus_id",
        "sentence",
        "experiment",
        "passage_index",
        "passage_label",
        "passage_category",
        "story",
        "stimulus_num",
    }
    neuroid = {
        "subject",
        "voxel_num",
        "neuroid_id",
        "filter_strategy",
        "atlas_selection",
        "roi",
        "indices_in_3d",
        "col_to_coord_1",
        "col_to_coord_2",
        "col_to_coord_3",
    }
    assert {n for n, c in array.coords.items() if c.dims == ("presentation",)} == presentation
    assert {n for n, c in array.coords.items() if c.dims == ("neuroid",)} == neuroid
    assert list(array["stimulus_id"].values) == list(rehearsal.pereira_sentences(texts)["stimulus_id"])
    data = pereira2018.load(block)
    # the file keeps the stimulus set's order, not the reader's (experiment, passage_label) order
    assert data.stimuli["stimulus_id"].tolist() != list(array["stimulus_id"].values)
    # each subject is all-NaN exactly in the experiments it did not take part in
    values, subjects = array.values, array["subject"].values
    for index, (done, _) in enumerate(rehearsal.SIZES["ci"]["pereira2018"]):
        for experiment in rehearsal.PEREIRA_EXPERIMENTS:
            block_values = values[np.ix_(array["experiment"].values == experiment, subjects == f"{index + 1:03d}")]
            assert np.isnan(block_values).all() == (experiment not in done)
            assert np.isfinite(block_values).all() == (experiment in done)
    assert data.kept == {"243sentences": 96, "384sentences": 96}


def test_full_size_pereira_counts_are_brainscores():
    subjects = rehearsal.SIZES["full"]["pereira2018"]
    kept = {e: sum(n for done, n in subjects if e in done) for e in rehearsal.PEREIRA_EXPERIMENTS}
    assert (len(subjects), sum(n for _, n in subjects)) == (
        pereira2018.EXPECTED_SUBJECTS,
        pereira2018.EXPECTED_NEUROIDS,
    )
    assert kept == pereira2018.EXPECTED_KEPT


def test_null_responses_are_controls_and_ar1_noise(tmp_path, texts):
    """Independent checks: the controls' R^2 (scikit-learn) and the lag-1 autocorrelation within stories."""
    block = {
        "reader": "blank2014",
        "files": {"assembly": str(tmp_path / "blank.nc")},
        "options": {"strict_counts": False},
    }
    rehearsal.generate_blank(block, {**NULL, "layout": "blank2014"}, texts, None)
    data = blank2014.load(block)
    assert data.matrix.shape == (blank2014.EXPECTED_TRS, blank2014.EXPECTED_NEUROIDS)
    assert (data.stimuli["assembly_row"].diff().dropna() != 1).any(), "stored order is the reading order"
    controls = np.column_stack([[len(t.split()) for t in data.stimuli["text"]], data.stimuli["position"]])
    r2 = [LinearRegression().fit(controls, y).score(controls, y) for y in data.matrix.T]
    assert np.mean(r2) == pytest.approx(NULL["control_fraction"], abs=0.05)
    residuals = data.matrix - LinearRegression().fit(controls, data.matrix).predict(controls)
    same_story = data.stimuli["story"].to_numpy()[1:] == data.stimuli["story"].to_numpy()[:-1]
    lag1 = [np.corrcoef(r[:-1][same_story], r[1:][same_story])[0, 1] for r in residuals.T]
    assert np.mean(lag1) == pytest.approx(NULL["autocorrelation"], abs=0.08)


def test_wehbe_layout_is_the_toneva_folder_with_trimmed_edges(tmp_path, texts):
    block = {
        "reader": "wehbe2014",
        "files": {"folder": str(tmp_path / "fMRI"), "roi_masks": str(tmp_path / "masks.npz")},
    }
    rehearsal.generate_wehbe(block, {**NULL, "layout": "wehbe2014"}, texts, None)
    timeline = wehbe2014.read_timeline(block)  # strict counts: 5,176 words, 1,351 TRs, 4 runs, 1,211 kept
    assert timeline.words.dtype.kind == "U"
    voxels = rehearsal.SIZES["ci"]["wehbe2014"]["voxels"]
    for subject in wehbe2014.TONEVA_SUBJECTS:
        stored = np.load(tmp_path / "fMRI" / f"data_subject_{subject}.npy", allow_pickle=False)
        assert stored.shape == (wehbe2014.EXPECTED["kept TRs"], voxels) and stored.dtype == np.float32
    with np.load(tmp_path / "masks.npz", allow_pickle=False) as masks:
        assert set(masks.files) == {
            f"{s}__{r}" for s in rehearsal.WEHBE_MASK_SUBJECTS for r in ("all", *wehbe2014.LANGUAGE_ROIS)
        }
    # the word rate (a control band) varies within the kept TRs, as pauses make it do
    rate = np.bincount(wehbe2014.word_trs(timeline.word_time, timeline.tr_time), minlength=len(timeline.tr_time))
    kept = ~wehbe2014.trimmed_mask(timeline.tr_run, 20, 15)
    assert len(np.unique(rate[kept])) >= 3 and timeline.word_time.max() < timeline.tr_time.max() + 2
    # ... yet, as in the real files, no TR the paper pipeline reads (kept or a delay source) lacks words
    for run in range(1, 5):
        index = np.flatnonzero(timeline.tr_run == run)
        assert (rate[index[16:-15]] > 0).all()
    assert np.array_equal(timeline.tr_time, 2.0 * np.arange(len(timeline.tr_time)))
    matrix, neuroids = wehbe2014.load_responses(block, timeline)
    per_roi = rehearsal.SIZES["ci"]["wehbe2014"]["per_roi"]
    assert len(neuroids) == 8 * per_roi * len(wehbe2014.LANGUAGE_ROIS)
    trimmed = wehbe2014.trimmed_mask(timeline.tr_run, 20, 15)
    assert np.isnan(matrix[trimmed]).all() and np.isfinite(matrix[~trimmed]).all()


def test_demo_fallback_is_announced(tmp_path, caplog):
    sources = rehearsal.text_sources(tmp_path / "absent", REPO_ROOT / "resources" / "demo")
    assert sources.shared is None
    assert "uses the demo texts" in caplog.text


def test_settings_refuse_a_null_variant_with_signal():
    with pytest.raises(ConfigError, match="signal_fraction 0"):
        rehearsal.settings_of({"rehearsal": {**NULL, "signal_fraction": 0.2}}, "x")


def test_config_refuses_a_layout_other_than_the_reader_and_an_unknown_source(tmp_path):
    text = (REPO_ROOT / "config.yaml").read_text()
    text = text.replace(
        "rehearsal: {layout: blank2014, variant: planted, size: full, source_model: rehearsal-llama-tuned",
        "rehearsal: {layout: wehbe2014, variant: planted, size: full, source_model: nobody",
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "rehearsal-blank2014.rehearsal.layout" in str(error.value)
    assert "rehearsal-blank2014.rehearsal.source_model: 'nobody'" in str(error.value)


def test_ar1_noise_restarts_at_each_stream():
    streams = np.repeat(["a", "b"], 4000)
    noise = rehearsal.ar1_noise(streams, 0.7, 3, np.random.default_rng(0))
    assert noise.std() == pytest.approx(1.0, abs=0.05)
    inside = pd.Series(streams).eq(pd.Series(streams).shift()).to_numpy()[1:]
    assert np.corrcoef(noise[:-1, 0][inside], noise[1:, 0][inside])[0, 1] == pytest.approx(0.7, abs=0.03)
