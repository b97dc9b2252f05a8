"""Robust permutation p-values on rehearsal null data are uniform over seeds (Kolmogorov-Smirnov).

A Blank2014-shaped null (TR fragments of stories of unequal length, responses from the
controls and AR(1) noise only, as ``brainalign.rehearsal`` simulates them) is fit
with autocorrelated features that share nothing with the responses. Under the null, the
headline's p-value must be uniform on (0, 1]: a scheme that ignores the autocorrelation, or
group swaps that cannot move stories of unequal length, piles p-values up at one end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from brainalign import rehearsal
from brainalign.encoding.robust import fit_robust

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
    neuroids = pd.DataFrame({"neuroid_id": [f"n{i}" for i in range(6)], "subject": [f"s{i // 2}" for i in range(6)]})
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
    p_values = np.asarray(p_values)
    assert np.isfinite(p_values).all()
    assert stats.kstest(p_values, "uniform").pvalue > 0.01, np.sort(p_values)
