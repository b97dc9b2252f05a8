"""Robust permutation p-values on rehearsal null data are uniform over seeds (Kolmogorov-Smirnov).

Two layouts, responses from the controls and AR(1) noise only (as ``brainalign.rehearsal``
simulates them), fit with autocorrelated features that share nothing with the responses:

- Blank2014-shaped: TR fragments of stories of unequal length. A scheme that ignores the
  autocorrelation, or group swaps that cannot move stories of unequal length, piles
  p-values up at one end.
- Wehbe2014-shaped: a time series of 4 runs, with the default 5 outer folds and the
  default control bands (OASM included). Test blocks that cut runs piled p-values up at
  both ends (0.01 and 1.0 with 99 permutations); folds of whole runs do not.

Under the null, the headline's p-value must be uniform on (0, 1].
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from brainalign import rehearsal
from brainalign.encoding.robust import fit_robust, resolve_robust_options

STORY_LENGTHS = (29, 34, 40, 47)
N_SEEDS = 24
SMALL_GRID = {
    "n_outer_folds": 2,
    "n_inner_folds": 2,
    "alphas": {"min_exp": -1, "max_exp": 5, "n": 3},
    "n_band_weights": 2,
    "n_bootstrap": 0,
    "n_permutations": 99,
    "block_trs": 8,
    "permutation": "circular_shift",
}


def null_neuroids() -> pd.DataFrame:
    """Six neuroids, two per subject."""
    return pd.DataFrame({"neuroid_id": [f"n{i}" for i in range(6)], "subject": [f"s{i // 2}" for i in range(6)]})


def assert_uniform(p_values: list[float]) -> None:
    """Finite p-values that a Kolmogorov-Smirnov test does not reject as uniform at 1 %."""
    p_values = np.asarray(p_values)
    assert np.isfinite(p_values).all()
    assert stats.kstest(p_values, "uniform").pvalue > 0.01, np.sort(p_values)


def null_story_data(seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    """Stimuli, null responses (the generator's), unrelated autocorrelated features, neuroids."""
    rng = np.random.default_rng(1000 + seed)
    stories = np.repeat([f"story{s}" for s in range(len(STORY_LENGTHS))], STORY_LENGTHS)
    position = pd.Series(stories).groupby(stories).cumcount().to_numpy()
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"{s}.{p}" for s, p in zip(stories, position)],
            "context_group": stories,
            "position": position,
            "text": [" ".join(["word"] * int(n)) for n in rng.integers(2, 8, len(stories))],
            "cv_group": stories,
            "partition": "all",
        }
    )
    settings = {"signal_fraction": 0.0, "control_fraction": 0.2, "autocorrelation": 0.6, "seed": seed}
    design = rehearsal.neural_design(np.zeros((len(stimuli), 0)), stimuli, None, [])
    responses = rehearsal.simulate_neural(design, settings, 6)
    features = rehearsal.ar1_noise(stories, 0.8, 4, rng)
    neuroids = null_neuroids()
    return stimuli, responses, features, neuroids


@pytest.mark.slow
def test_null_p_values_are_uniform_over_seeds():
    p_values = []
    for seed in range(N_SEEDS):
        stimuli, responses, features, neuroids = null_story_data(seed)
        result = fit_robust(
            features, responses, stimuli, stimuli[["stimulus_id"]], neuroids, {**SMALL_GRID, "random_state": seed}
        )
        p_values.append(result.p_value)
    assert_uniform(p_values)


N_RUNS, TRS_PER_RUN, WORDS_PER_TR = 4, 60, 3
# The protocol's own defaults for the permutation scheme and its block length (not
# SMALL_GRID's): with SMALL_GRID's block_trs the runs-cutting splitter also passes.
TIME_SERIES_GRID = {
    "n_outer_folds": 5,
    "n_inner_folds": 2,
    "alphas": {"min_exp": -3, "max_exp": 5, "n": 5},
    "n_band_weights": 2,
    "n_bootstrap": 0,
    "n_permutations": 99,
    "time_series": True,
}


def null_run_data(seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Words, null responses per TR (the generator's), stimuli, response rows and neuroids of 4 runs."""
    rng = np.random.default_rng(2000 + seed)
    rows = pd.DataFrame(
        {
            "stimulus_id": [f"tr{i}" for i in range(N_RUNS * TRS_PER_RUN)],
            "run": np.repeat(np.arange(N_RUNS), TRS_PER_RUN),
            "time": np.tile(np.arange(TRS_PER_RUN) * 2.0, N_RUNS),
        }
    )
    response_id = np.repeat(rows["stimulus_id"].to_numpy(), WORDS_PER_TR)
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(len(response_id))],
            "context_group": "story",
            "position": np.arange(len(response_id)),
            "text": [" ".join(["word"] * int(n)) for n in rng.integers(1, 4, len(response_id))],
            "cv_group": "story",
            "partition": "all",
            "response_id": response_id,
        }
    )
    delays = resolve_robust_options(TIME_SERIES_GRID)["delays"]
    design = rehearsal.neural_design(np.zeros((len(stimuli), 0)), stimuli, rows, delays)
    settings = {"signal_fraction": 0.0, "control_fraction": 0.2, "autocorrelation": 0.6, "seed": seed}
    responses = rehearsal.simulate_neural(design, settings, 6)
    words = rehearsal.ar1_noise(np.repeat(rows["run"].to_numpy(), WORDS_PER_TR), 0.8, 4, rng)
    neuroids = null_neuroids()
    return words, responses, stimuli, rows, neuroids


@pytest.mark.slow
def test_time_series_null_p_values_are_uniform_over_seeds_with_fewer_runs_than_folds():
    assert "oasm" in resolve_robust_options(TIME_SERIES_GRID)["controls"]
    p_values = []
    for seed in range(N_SEEDS):
        words, responses, stimuli, rows, neuroids = null_run_data(seed)
        result = fit_robust(words, responses, stimuli, rows, neuroids, {**TIME_SERIES_GRID, "random_state": seed})
        assert (result.folds["n_test"] == TRS_PER_RUN).all()  # one whole run per fold
        p_values.append(result.p_value)
    assert_uniform(p_values)
