"""Demo datasets: stimuli structure and the documented generative models, checked naively."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT as REPO

from brainalign import io
from brainalign.datasets import demo_fmri, demo_reading_times, pipeline
from brainalign.errors import ConfigError

PASSAGES = REPO / "resources/demo/passages.tsv"
STORY = REPO / "resources/demo/story.txt"


def test_demo_passages_meet_the_design(tmp_path):
    out = tmp_path / "stimuli.parquet"
    demo_fmri.prepare_stimuli({"files": {"passages": str(PASSAGES)}}, out)
    stimuli = io.read_stimuli(out)
    sizes = stimuli.groupby("context_group").size()
    assert len(sizes) >= 40 and sizes.between(3, 5).all()
    assert (stimuli["cv_group"] == stimuli["context_group"]).all()
    assert (stimuli["n_words"] == stimuli["text"].str.split().str.len()).all()


def test_demo_story_is_long_enough_and_segmented(tmp_path):
    out = tmp_path / "stimuli.parquet"
    demo_reading_times.prepare_stimuli({"files": {"story": str(STORY)}}, out)
    stimuli = io.read_stimuli(out)
    assert len(stimuli) >= 1000
    assert stimuli["cv_group"].nunique() == demo_reading_times.N_SECTIONS
    starts = stimuli.loc[stimuli["word_in_sentence"] == 0, "position"].to_numpy()
    previous = stimuli.set_index("position").loc[starts[1:] - 1, "text"]
    assert previous.str.contains(r"[.!?][\"')\]]*$").all()
    assert stimuli.groupby("item")["zone"].min().eq(1).all()


def naive_voxels(activations, controls, simulation):
    """Loop-per-voxel re-implementation of the module docstring's generative model."""
    rng = np.random.default_rng(simulation["seed"])
    z = (activations - activations.mean(0)) / activations.std(0)
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    k = simulation["n_components"]
    comps = u[:, :k] * s[:k]
    comps = (comps - comps.mean(0)) / comps.std(0)
    ctrl = (controls - controls.mean(0)) / controls.std(0)
    n = simulation["n_subjects"] * simulation["n_voxels"]
    w = rng.standard_normal((k, n))
    c = rng.standard_normal((ctrl.shape[1], n))
    noise = rng.standard_normal((len(z), n))
    out = np.empty((len(z), n))
    for v in range(n):
        signal = comps @ w[:, v]
        control = ctrl @ c[:, v]
        signal = (signal - signal.mean()) / signal.std()
        control = (control - control.mean()) / control.std()
        out[:, v] = (
            np.sqrt(simulation["signal_fraction"]) * signal
            + np.sqrt(simulation["control_fraction"]) * control
            + np.sqrt(1 - simulation["signal_fraction"] - simulation["control_fraction"]) * noise[:, v]
        )
    return out


def test_simulated_voxels_follow_the_generative_model():
    rng = np.random.default_rng(0)
    activations = rng.standard_normal((60, 30)) @ rng.standard_normal((30, 30))
    controls = np.column_stack([rng.integers(5, 20, 60), np.tile(np.arange(4), 15)]).astype(float)
    simulation = {
        "seed": 3,
        "n_components": 5,
        "n_subjects": 2,
        "n_voxels": 7,
        "signal_fraction": 0.6,
        "control_fraction": 0.1,
    }
    voxels, neuroids = demo_fmri.simulate_voxels(activations, controls, simulation)
    np.testing.assert_allclose(voxels, naive_voxels(activations, controls, simulation), rtol=1e-4, atol=1e-4)
    assert neuroids["subject"].nunique() == 2 and len(neuroids) == 14
    np.testing.assert_allclose(voxels.var(axis=0), 1.0, atol=0.5)


def test_simulated_readers_recover_the_planted_slopes():
    rng = np.random.default_rng(1)
    surprisal = rng.gamma(2.0, 3.0, 3000)
    surprisal[0] = np.nan
    length = rng.integers(1, 12, 3000).astype(float)
    simulation = {
        "seed": 5,
        "n_readers": 20,
        "surprisal_ms_per_bit": 12.0,
        "length_ms_per_char": 8.0,
        "reader_sd_ms": 40.0,
        "noise_sd_ms": 90.0,
    }
    times = demo_reading_times.simulate_readers(surprisal, length, simulation)
    mean = times.mean(axis=1)
    design = np.column_stack([np.ones(2999), surprisal[1:], length[1:]])
    coefficients = np.linalg.lstsq(design, mean[1:], rcond=None)[0]
    assert coefficients[1] == pytest.approx(12.0, abs=1.0)
    assert coefficients[2] == pytest.approx(8.0, abs=1.0)
    residual_sd = (times - times.mean(axis=0) - (mean - mean.mean())[:, None]).std()
    assert residual_sd == pytest.approx(90.0, rel=0.05)


def test_word_length_ignores_punctuation():
    assert list(demo_reading_times.word_length(pd.Series(['"Hello,', "it's", "--"]))) == [5, 3, 0]


def test_simulate_responses_plants_the_source_layer_of_the_activation_file(tmp_path):
    """The stage reads the source layer by stimulus id (the file is stored shuffled) and
    writes the generative model's voxels, recomputed here naively from the same arrays."""
    stimuli_path = tmp_path / "stimuli.parquet"
    demo_fmri.prepare_stimuli({"files": {"passages": str(PASSAGES)}}, stimuli_path)
    stimuli = io.read_stimuli(stimuli_path)
    rng = np.random.default_rng(4)
    layers = {layer: rng.standard_normal((len(stimuli), 12)) for layer in (1, 2)}
    stored = rng.permutation(len(stimuli))
    activations_path = tmp_path / "activations.parquet"
    facts = {"stimuli_sha256": io.stimuli_checksum(stimuli_path)}
    with io.ActivationWriter(activations_path, list(stimuli["stimulus_id"].iloc[stored]), 12, facts) as writer:
        for layer, matrix in layers.items():
            writer.write_layer(layer, matrix[stored])
    simulation = {
        "source_layer": 2,
        "seed": 11,
        "n_components": 4,
        "n_subjects": 2,
        "n_voxels": 5,
        "signal_fraction": 0.5,
        "control_fraction": 0.2,
    }
    block = {"reader": "demo_fmri", "simulation": simulation}
    out = tmp_path / "responses.parquet"
    pipeline.simulate_responses(block, stimuli_path, out, activations_path)
    ids, voxels, neuroids, _ = io.read_responses(out)
    assert list(ids) == list(stimuli["stimulus_id"])
    controls = stimuli[["n_words", "position"]].to_numpy(dtype=float)
    expected = naive_voxels(layers[2].astype(np.float32).astype(float), controls, simulation)
    np.testing.assert_allclose(voxels, expected, rtol=1e-4, atol=1e-4)
    assert neuroids["subject"].tolist() == ["sim-01"] * 5 + ["sim-02"] * 5


def test_simulate_responses_drives_reading_times_by_the_surprisal_file(tmp_path):
    """Reading times = 300 ms + slopes x (surprisal, letters) + reader offset + noise, drawn
    here naively in the documented order (offsets, then noise) from the same seed."""
    stimuli_path = tmp_path / "stimuli.parquet"
    demo_reading_times.prepare_stimuli({"files": {"story": str(STORY)}}, stimuli_path)
    stimuli = io.read_stimuli(stimuli_path)
    rng = np.random.default_rng(6)
    surprisal = rng.gamma(2.0, 3.0, len(stimuli))
    surprisal[0] = np.nan  # no context before the first word: filled with the mean
    frame = pd.DataFrame({"stimulus_id": stimuli["stimulus_id"], "surprisal_bits": surprisal, "n_tokens": 1}).iloc[::-1]
    surprisal_path = tmp_path / "surprisal.parquet"
    io.write_surprisal(surprisal_path, frame, {"stimuli_sha256": io.stimuli_checksum(stimuli_path)})
    simulation = {
        "seed": 9,
        "n_readers": 3,
        "surprisal_ms_per_bit": 10.0,
        "length_ms_per_char": 5.0,
        "reader_sd_ms": 30.0,
        "noise_sd_ms": 50.0,
    }
    out = tmp_path / "responses.parquet"
    pipeline.simulate_responses(
        {"reader": "demo_reading_times", "simulation": simulation}, stimuli_path, out, surprisal_path
    )
    ids, times, readers, _ = io.read_responses(out)
    assert list(ids) == list(stimuli["stimulus_id"])
    draws = np.random.default_rng(9)
    offsets = draws.normal(0.0, 30.0, 3)
    noise = draws.normal(0.0, 50.0, (len(stimuli), 3))
    filled = np.where(np.isnan(surprisal), np.nanmean(surprisal), surprisal)
    letters = np.array([sum(c.isascii() and c.isalnum() for c in word) for word in stimuli["text"]])
    expected = 300.0 + 10.0 * filled[:, None] + 5.0 * letters[:, None] + offsets[None, :] + noise
    np.testing.assert_allclose(times, expected, rtol=1e-5)
    assert readers["subject"].tolist() == ["reader-01", "reader-02", "reader-03"]


def test_each_response_stage_refuses_the_other_stages_readers(tmp_path):
    paths = (tmp_path / "stimuli.parquet", tmp_path / "responses.parquet")
    with pytest.raises(ConfigError, match="simulate_responses"):
        pipeline.prepare_responses({"reader": "demo_fmri"}, *paths)
    with pytest.raises(ConfigError, match="prepare_responses"):
        pipeline.simulate_responses({"reader": "pereira2018"}, *paths, tmp_path / "activations.parquet")
    assert not paths[1].exists()
