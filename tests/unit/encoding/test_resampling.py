"""Crossed bootstrap and block permutations of the robust headline: exactness and calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from brainalign.encoding import resampling
from brainalign.encoding.metrics import r2_columns
from brainalign.encoding.resampling import (
    HeldOut,
    aggregate_fold_scores,
    bootstrap_draws,
    fold_bootstrap_scores,
    fold_permutation_scores,
    fold_statistic,
    headline_columns,
    headline_from_sums,
    score_interval,
    score_p_value,
    unit_sums,
)
from brainalign.stats import circular_shift_permutations, group_swap_permutations, percentile_interval


def permutation_p_value(partitions, n_permutations, scheme="group_swap", min_shift=20, random_state=0):
    """The reported score's p-value and null scores from the folds' permutation scores."""
    scores = fold_permutation_scores(partitions, n_permutations, scheme, min_shift, random_state)
    return score_p_value(scores), None if scores is None else aggregate_fold_scores(scores)[1:]


def bootstrap_score_ci(partitions, n_bootstrap, random_state=0, n_subjects=1):
    return score_interval(fold_bootstrap_scores(partitions, n_subjects, n_bootstrap, random_state))


def grouped_null_fold(rng, n_groups=12, size=4, n_targets=15, group_effect=2.0):
    """Independent predictions and responses, both with strong shared group effects."""
    units = np.repeat(np.arange(n_groups), size)
    predictions = group_effect * rng.standard_normal(n_groups)[units][:, None] + rng.standard_normal(
        (len(units), n_targets)
    )
    observed = group_effect * rng.standard_normal(n_groups)[units][:, None] + rng.standard_normal(
        (len(units), n_targets)
    )
    return HeldOut(predictions, observed, units)


def with_baseline(held_out: HeldOut, rng) -> HeldOut:
    """The same fold with a baseline model whose predictions track the responses loosely."""
    baseline = 0.5 * held_out.observed + rng.standard_normal(held_out.observed.shape)
    return HeldOut(held_out.predictions, held_out.observed, held_out.units, baseline=baseline)


def test_headline_from_unit_sums_equals_the_r2_gain_of_the_rows():
    rng = np.random.default_rng(0)
    held_out = grouped_null_fold(rng)
    held_out.observed += 10.0  # far from 0: the sums must not lose digits
    _, sums = unit_sums(held_out)
    own = r2_columns(held_out.predictions, held_out.observed)
    np.testing.assert_allclose(headline_from_sums(sums.sum(axis=0)), own, atol=1e-10)
    paired = with_baseline(held_out, rng)
    _, sums = unit_sums(paired)
    gain = own - r2_columns(paired.baseline, paired.observed)
    np.testing.assert_allclose(headline_from_sums(sums.sum(axis=0)), gain, atol=1e-10)
    np.testing.assert_allclose(headline_columns(paired.predictions, paired.observed, paired.baseline), gain, atol=1e-12)


def naive_fold_score(held_out: HeldOut, unit_counts: np.ndarray, subject_counts: np.ndarray) -> float:
    """The fold's headline on one crossed resample, by building the resampled data: each unit's
    rows repeated as often as it is drawn, each subject's neuroids as often as the subject."""
    rows = np.concatenate(
        [np.flatnonzero(held_out.units == u) for u, k in enumerate(unit_counts) for _ in range(int(k))]
    )
    columns = np.concatenate(
        [np.flatnonzero(held_out.subjects == s) for s, k in enumerate(subject_counts) for _ in range(int(k))]
    )
    baseline = None if held_out.baseline is None else held_out.baseline[np.ix_(rows, columns)]
    return np.nanmedian(
        headline_columns(
            held_out.predictions[np.ix_(rows, columns)], held_out.observed[np.ix_(rows, columns)], baseline
        )
    )


def test_crossed_fold_statistic_equals_naive_recomputation_on_resamples():
    rng = np.random.default_rng(1)
    held_out = with_baseline(grouped_null_fold(rng, n_groups=6, n_targets=12), rng)
    held_out.subjects = np.repeat(np.arange(4), 3)
    subject_counts, unit_counts = bootstrap_draws(4, [[6]], 20, random_state=3)
    found = fold_statistic(unit_sums(held_out)[1], unit_counts[0][0], subject_counts[:, held_out.subjects])
    naive = [naive_fold_score(held_out, unit_counts[0][0][b], subject_counts[b]) for b in range(20)]
    np.testing.assert_allclose(found, naive, rtol=1e-9, atol=1e-12)


def subject_varying_fold(rng, quality: np.ndarray, n_groups=12, size=4, per_subject=5) -> HeldOut:
    """A fold whose predictions are good for some subjects and poor for others (``quality`` per
    subject: the prediction's share of the signal)."""
    subjects = np.repeat(np.arange(len(quality)), per_subject)
    units = np.repeat(np.arange(n_groups), size)
    truth = rng.standard_normal((len(units), len(subjects)))
    observed = truth + 0.5 * rng.standard_normal(truth.shape)
    predictions = quality[subjects] * truth + 0.3 * rng.standard_normal(truth.shape)
    return HeldOut(predictions, observed, units, subjects=subjects)


def test_crossed_ci_equals_a_naive_bootstrap_and_widens_with_between_subject_variance():
    """Planted: 8 subjects whose prediction quality ranges from poor to good. The crossed CI
    equals a naive loop over the same draws, and is much wider than the stimuli-only one."""
    rng = np.random.default_rng(8)
    quality = np.linspace(0.0, 1.0, 8)
    partitions = [[subject_varying_fold(rng, quality) for _ in range(2)]]
    crossed = bootstrap_score_ci(partitions, n_bootstrap=200, random_state=5, n_subjects=8)
    subject_counts, unit_counts = bootstrap_draws(8, [[12, 12]], 200, random_state=5)
    naive = [
        np.mean(
            [naive_fold_score(fold, unit_counts[0][f][b], subject_counts[b]) for f, fold in enumerate(partitions[0])]
        )
        for b in range(200)
    ]
    np.testing.assert_allclose(crossed, percentile_interval(np.array(naive)), rtol=1e-9)
    stimuli_only = [[HeldOut(f.predictions, f.observed, f.units) for f in partitions[0]]]
    low, high = bootstrap_score_ci(stimuli_only, n_bootstrap=200, random_state=5)
    assert crossed[1] - crossed[0] > 3 * (high - low)
    score = aggregate_fold_scores(
        [np.array([[np.median(headline_columns(f.predictions, f.observed, None))] for f in partitions[0]])]
    )[0]
    assert crossed[0] < score < crossed[1]


def test_bootstrap_ci_brackets_the_score_and_tracks_the_signal():
    rng = np.random.default_rng(2)
    units = np.repeat(np.arange(20), 4)
    truth = rng.standard_normal((80, 10))
    folds = [HeldOut(truth + 0.8 * rng.standard_normal((80, 10)), truth, units)]
    low, high = bootstrap_score_ci([folds], n_bootstrap=300, random_state=0)
    score = np.median(r2_columns(folds[0].predictions, truth))
    assert low < score < high
    assert 0 < high - low < 0.3


def test_group_swaps_keep_groups_whole():
    rng = np.random.default_rng(3)
    units = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    order = group_swap_permutations(units, 1, rng)[0]
    assert sorted(order) == list(range(len(units)))
    for u in np.unique(units):
        moved = units[order[units == u]]
        assert len(set(moved)) == 1 and np.sum(units == moved[0]) == np.sum(units == u)


def test_circular_shifts_move_each_stream_within_itself_by_at_least_the_minimum():
    rng = np.random.default_rng(3)
    streams = np.repeat(["a", "b", "c"], [50, 31, 1])
    for _ in range(20):
        order = circular_shift_permutations(streams, 1, 10, rng)[0]
        assert sorted(order) == list(range(len(streams)))
        np.testing.assert_array_equal(streams[order], streams)
        for start, n in ((0, 50), (50, 31)):
            shift = (order[start] - start) % n
            assert 10 <= shift <= n - 10
            np.testing.assert_array_equal(order[start : start + n], start + (np.arange(n) + shift) % n)
        assert order[-1] == len(streams) - 1  # a one-row stream cannot move


def naive_permutation_scores(held_out, n_permutations, scheme, min_shift, rng):
    """One fold's headline under the identity and each permutation, one order at a time
    (a transcription of the scheme's definitions, independent of the batched code)."""
    units, streams = held_out.units, held_out.streams
    tested = held_out.predictions - held_out.baseline
    residual = held_out.observed - (held_out.predictions - tested)
    total = ((held_out.observed - held_out.observed.mean(0)) ** 2).sum(0)
    baseline_sse = ((held_out.observed - held_out.baseline) ** 2).sum(0)

    def headline(order):
        return np.nanmedian((baseline_sse - ((residual - tested[order]) ** 2).sum(0)) / total)

    scores = [headline(np.arange(len(units)))]
    for _ in range(n_permutations):
        order = np.arange(len(units))
        if scheme == "group_swap":
            _, starts, unit_of_row, sizes = np.unique(units, return_index=True, return_inverse=True, return_counts=True)
            target = np.arange(len(sizes))
            for size in np.unique(sizes):
                same_size = np.flatnonzero(sizes == size)
                target[same_size] = rng.permutation(same_size)
            order = order + (starts[target] - starts)[unit_of_row]
        else:
            for stream in pd.unique(streams):
                rows = np.flatnonzero(streams == stream)
                if len(rows) >= 2:
                    least = int(np.clip(min_shift, 1, len(rows) // 2))
                    shift = rng.integers(least, len(rows) - least + 1)
                    order[rows] = rows[(np.arange(len(rows)) + shift) % len(rows)]
        scores.append(headline(order))
    return np.array(scores)


@pytest.mark.parametrize("scheme", ["group_swap", "circular_shift"])
def test_batched_permutation_scores_equal_one_order_at_a_time(scheme, monkeypatch):
    rng = np.random.default_rng(7)
    units = np.repeat(np.arange(9), [4, 4, 3, 4, 3, 5, 4, 3, 4])
    streams = np.repeat(["a", "b", "c"], [15, 12, 7])
    observed = rng.standard_normal((len(units), 40))
    baseline = 0.3 * observed + rng.standard_normal(observed.shape)
    predictions = baseline + 0.2 * observed + rng.standard_normal(observed.shape)
    folds = [HeldOut(predictions, observed, units, streams=streams, baseline=baseline)]
    # Several batches of orders, the last one partial.
    monkeypatch.setattr(resampling, "PERMUTATION_BYTES", 8 * observed.size * 7)
    batched = fold_permutation_scores([folds], 50, scheme, min_shift=3, random_state=5)[0][0]
    naive = naive_permutation_scores(folds[0], 50, scheme, 3, np.random.default_rng(5))
    np.testing.assert_array_equal(batched, naive)
    assert len(np.unique(batched)) > 10  # the orders do move the predictions


def test_group_permutation_p_values_are_uniform_under_the_null_and_row_shuffles_are_not():
    """200 null datasets: the block scheme is calibrated, the naive row shuffle is not.

    The data have strong group effects in both predictions and responses, so a row-level
    shuffle underestimates the null variance; the same tolerance must reject it, which
    shows that the calibration check has the power to catch a broken scheme.
    """
    rng = np.random.default_rng(4)
    block_p, row_p = [], []
    for seed in range(200):
        folds = [grouped_null_fold(rng), grouped_null_fold(rng)]
        block_p.append(permutation_p_value([folds], n_permutations=99, random_state=seed)[0])
        row_folds = [HeldOut(f.predictions, f.observed, np.arange(len(f.units))) for f in folds]
        row_p.append(permutation_p_value([row_folds], n_permutations=99, random_state=seed)[0])
    block_p, row_p = np.array(block_p), np.array(row_p)
    # Binomial(200, 0.05): P(X > 21) < 1e-3 and P(X < 3) < 3e-3.
    assert 3 <= np.sum(block_p <= 0.05) <= 21
    assert stats.kstest(block_p, "uniform").pvalue > 0.01
    # A calibrated scheme exceeds 25 with probability < 1e-4.
    assert np.sum(row_p <= 0.05) > 25
    assert stats.kstest(row_p, "uniform").pvalue < 0.01


def test_circular_shift_p_values_are_uniform_for_autocorrelated_null_series():
    rng = np.random.default_rng(5)
    p_values = []
    for seed in range(200):
        folds = []
        for _ in range(2):
            noise = rng.standard_normal((2, 120, 8))
            series = np.apply_along_axis(lambda x: np.convolve(x, np.ones(5) / 5, mode="same"), 1, noise)
            folds.append(HeldOut(series[0], series[1], np.arange(120) // 20))
        p_values.append(
            permutation_p_value([folds], n_permutations=99, scheme="circular_shift", min_shift=10, random_state=seed)[0]
        )
    p_values = np.array(p_values)
    assert 3 <= np.sum(p_values <= 0.05) <= 21
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


def smoothed_noise(rng, n_rows: int, n_targets: int, width: int = 5) -> np.ndarray:
    """Autocorrelated noise: white noise under a moving average of ``width`` rows."""
    noise = rng.standard_normal((n_rows + width - 1, n_targets))
    return np.stack([np.convolve(column, np.ones(width) / width, mode="valid") for column in noise.T], axis=1)


def null_layout(layout: str, rng) -> list[list[HeldOut]]:
    """Independent autocorrelated predictions and responses in the fold layout of a dataset.

    pereira: 2 partitions x 2 folds of passages of 3-4 sentences; blank: stories of unequal
    length (120-200 TRs), one per held-out fold; wehbe: 4 runs of 150 TRs, one per fold,
    resampling units of 20 TRs.
    """
    partitions = []
    if layout == "pereira":
        for _ in range(2):
            folds = []
            for _ in range(2):
                sizes = rng.choice([3, 4], size=12)
                units = np.repeat(np.arange(12), sizes)
                folds.append(
                    HeldOut(rng.standard_normal((len(units), 10)), rng.standard_normal((len(units), 10)), units)
                )
            partitions.append(folds)
        return partitions
    lengths = rng.integers(120, 201, size=4) if layout == "blank" else np.full(4, 150)
    folds = []
    for length in lengths:
        units = np.zeros(length, dtype=int) if layout == "blank" else np.arange(length) // 20
        folds.append(
            HeldOut(
                smoothed_noise(rng, length, 10), smoothed_noise(rng, length, 10), units, np.zeros(length, dtype=int)
            )
        )
    return [folds]


@pytest.mark.parametrize(
    ("layout", "scheme"), [("pereira", "group_swap"), ("blank", "circular_shift"), ("wehbe", "circular_shift")]
)
def test_pure_noise_gives_uniform_p_values_under_every_dataset_layout(layout, scheme):
    rng = np.random.default_rng(11)
    p_values = np.array(
        [
            permutation_p_value(
                null_layout(layout, rng), n_permutations=99, scheme=scheme, min_shift=20, random_state=seed
            )[0]
            for seed in range(200)
        ]
    )
    assert np.all(np.isfinite(p_values))
    # Binomial(200, 0.05): P(X > 21) < 1e-3 and P(X < 3) < 3e-3.
    assert 3 <= np.sum(p_values <= 0.05) <= 21
    assert stats.kstest(p_values, "uniform").pvalue > 0.01


def test_group_swaps_of_unequal_stories_give_no_p_value_and_say_why(caplog):
    folds = null_layout("blank", np.random.default_rng(12))[0]
    with caplog.at_level("WARNING", logger="brainalign.encoding.resampling"):
        p_value, null = permutation_p_value([folds], n_permutations=20, scheme="group_swap")
    assert np.isnan(p_value) and null is None
    assert "in 4 of 4 folds no two groups have the same size" in caplog.text and "circular_shift" in caplog.text


def test_a_permutation_that_changes_nothing_ties_with_the_observed_score():
    """float32 inputs, every 'shift' the identity (one-row streams): p is 1, not 1/(n+1)."""
    rng = np.random.default_rng(13)
    predictions, observed = rng.standard_normal((2, 40, 7)).astype(np.float32)
    folds = [HeldOut(predictions, observed, np.arange(40), np.arange(40))]
    p_value, null = permutation_p_value([folds], n_permutations=50, scheme="circular_shift", min_shift=5)
    assert p_value == 1.0
    assert np.all(null == null[0])


def controls_driven_fold(rng, increment_weight: float = 0.0, n_groups=12, size=4, n_targets=15) -> HeldOut:
    """Responses = a controls signal + group effects + noise; the baseline predicts the controls
    signal imperfectly; the model adds to it an increment of its own (group effects, noise)
    that carries ``increment_weight`` times the responses' noise (0: the null)."""
    units = np.repeat(np.arange(n_groups), size)
    signal = np.outer(rng.standard_normal(len(units)), rng.uniform(0.5, 1.0, n_targets))
    noise = 1.5 * rng.standard_normal(n_groups)[units][:, None] + rng.standard_normal((len(units), n_targets))
    observed = signal + noise
    baseline = 0.9 * signal + 0.2 * rng.standard_normal(signal.shape)
    increment = 0.3 * rng.standard_normal(n_groups)[units][:, None] + 0.3 * rng.standard_normal(signal.shape)
    return HeldOut(baseline + increment + increment_weight * noise, observed, units, baseline=baseline)


def test_the_gain_over_a_baseline_has_uniform_p_values_under_the_null_and_detects_a_real_increment():
    rng = np.random.default_rng(14)
    null_p = np.array(
        [
            permutation_p_value(
                [[controls_driven_fold(rng), controls_driven_fold(rng)]], n_permutations=99, random_state=seed
            )[0]
            for seed in range(200)
        ]
    )
    assert 3 <= np.sum(null_p <= 0.05) <= 21
    assert stats.kstest(null_p, "uniform").pvalue > 0.01
    planted = [[controls_driven_fold(rng, increment_weight=0.5) for _ in range(2)]]
    p_value, _ = permutation_p_value(planted, n_permutations=99)
    assert p_value == pytest.approx(0.01)
    low, high = bootstrap_score_ci(planted, n_bootstrap=300)
    assert 0 < low < high
