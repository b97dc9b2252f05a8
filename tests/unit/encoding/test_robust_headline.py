"""The robust headline under adversarial data: nothing beyond the controls gives about 0 and
uniform p-values over seeds; a planted LLM signal gives a clearly positive headline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from threadpoolctl import threadpool_limits

from brainalign.encoding.controls import oasm
from brainalign.encoding.robust import fit_robust

OPTIONS = {
    "n_bootstrap": 0,
    "n_permutations": 99,
    "n_band_weights": 6,
    "n_inner_folds": 3,
    "controls": ["length", "position", "oasm"],
}
N_TOPICS, PASSAGES_PER_TOPIC, SENTENCES_PER_PASSAGE, N_NEUROIDS, N_FEATURES = 20, 3, 4, 10, 40
N_SEEDS = 40


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: one BLAS thread avoids oversubscription when tests share the cores."""
    with threadpool_limits(limits=1):
        yield


def topic_stimuli(rng: np.random.Generator) -> pd.DataFrame:
    """Sentences in passages in topics, as Pereira2018 lays them out; cv groups are topics."""
    per_topic = PASSAGES_PER_TOPIC * SENTENCES_PER_PASSAGE
    n = N_TOPICS * per_topic
    passage = np.repeat(np.arange(N_TOPICS * PASSAGES_PER_TOPIC), SENTENCES_PER_PASSAGE)
    lengths = rng.integers(4, 15, size=n)
    return pd.DataFrame(
        {
            "stimulus_id": [f"s{i}" for i in range(n)],
            "context_group": [f"p{p:03d}" for p in passage],
            "position": np.tile(np.arange(SENTENCES_PER_PASSAGE), N_TOPICS * PASSAGES_PER_TOPIC),
            "text": [" ".join(["w"] * k) for k in lengths],
            "cv_group": [f"t{t:02d}" for t in passage // PASSAGES_PER_TOPIC],
            "partition": "all",
        }
    )


def adversarial_data(scenario: str, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """LLM features and responses of one scenario.

    controls: responses follow sentence length and position; the features know the length
    (a nonlinear code of it) and nothing else. autocorrelation: responses are smooth random
    sequences along each passage (what OASM models); the features are smooth along passages
    too. passage: responses are a random offset per passage; the features identify the
    passage. planted: responses follow the features, plus the controls.
    """
    rng = np.random.default_rng(seed)
    stimuli = topic_stimuli(rng)
    n = len(stimuli)
    length = stimuli["text"].str.split().str.len().to_numpy(float)
    position = stimuli["position"].to_numpy(float)
    passage = pd.factorize(stimuli["context_group"])[0]
    noise = rng.standard_normal((n, N_NEUROIDS))
    features = rng.standard_normal((n, N_FEATURES))
    standard_length = (length - length.mean()) / length.std()
    controls_signal = np.outer(standard_length, rng.uniform(0.5, 1.0, N_NEUROIDS)) + np.outer(
        position - position.mean(), rng.uniform(0.3, 0.6, N_NEUROIDS)
    )
    if scenario == "controls":
        codes = np.column_stack([np.cos(k * standard_length) for k in range(1, 6)] + [standard_length**2])
        features = codes @ rng.standard_normal((codes.shape[1], N_FEATURES)) + 0.1 * features
        responses = controls_signal + noise
    elif scenario == "autocorrelation":
        smooth = oasm(stimuli["context_group"].to_numpy(), position, width=1.5)
        features = smooth @ features / 2
        responses = smooth @ rng.standard_normal((n, N_NEUROIDS)) + noise
    elif scenario == "passage":
        features = rng.standard_normal((passage.max() + 1, N_FEATURES))[passage] + 0.3 * features
        responses = 1.5 * rng.standard_normal((passage.max() + 1, N_NEUROIDS))[passage] + noise
    else:
        responses = features[:, :8] @ rng.standard_normal((8, N_NEUROIDS)) / np.sqrt(8) + controls_signal + noise
    return features, responses, stimuli


def robust_fit(scenario: str, seed: int):
    features, responses, stimuli = adversarial_data(scenario, seed)
    neuroids = pd.DataFrame({"neuroid_id": [f"n{i}" for i in range(N_NEUROIDS)], "subject": "s1"})
    return fit_robust(
        features, responses, stimuli, stimuli[["stimulus_id"]], neuroids, {**OPTIONS, "random_state": seed}
    )


@pytest.mark.parametrize("scenario", ["controls", "autocorrelation", "passage"])
def test_nothing_beyond_the_controls_gives_a_headline_of_about_0_with_uniform_p_values(scenario):
    results = [robust_fit(scenario, seed) for seed in range(N_SEEDS)]
    headline = np.array([result.score for result in results])
    p_values = np.array([result.p_value for result in results])
    assert abs(headline.mean()) < 0.02
    assert np.all(np.isfinite(p_values))
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


def test_the_joint_model_alone_would_credit_the_controls_to_the_llm():
    """On length-driven data the joint model's R^2 is large; the headline removes it."""
    result = robust_fit("controls", 0)
    assert result.details["score_joint"] > 0.2
    assert result.details["score_joint"] == pytest.approx(result.details["score_controls"], abs=0.03)
    assert abs(result.score) < 0.03


def test_a_planted_llm_signal_gives_a_clearly_positive_headline():
    result = robust_fit("planted", 0)
    assert result.score > 0.15
    assert result.p_value == pytest.approx(0.01)
    assert result.details["score_joint"] > result.details["score_controls"] + 0.15
    assert result.details["score_llm"] > 0.1
