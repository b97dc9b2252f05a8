"""The shared-eigendecomposition dual solver against himalaya's random search, and the
torch backend (the GPU code path) against numpy, on the same inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from brainalign.encoding.banded import fit_predict_banded
from brainalign.encoding.cv import grouped_splits
from brainalign.encoding.robust import fit_backend, fit_robust, himalaya_backend
from brainalign.errors import ConfigError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_robust import NEUROID_SCORE_DIFFERENCE, TOLERANCE, compare_fits  # noqa: E402  (one tolerance for the benchmark and the tests)

FAST = {"n_bootstrap": 0, "n_permutations": 0, "n_band_weights": 8, "n_inner_folds": 3, "n_outer_folds": 3}


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def banded_problem(rng: np.random.Generator, n_rows: int = 96, n_targets: int = 40):
    """An LLM-like band (more features than rows), a one-feature band and a block-diagonal band;
    targets driven by the first two bands at different strengths."""
    groups = np.repeat(np.arange(n_rows // 4), 4)
    llm = rng.standard_normal((n_rows, 300))
    length = rng.uniform(3, 15, (n_rows, 1))
    blocks = np.kron(np.eye(n_rows // 4), np.ones((4, 4))) * rng.uniform(size=(n_rows, n_rows))
    responses = llm[:, :5] @ rng.standard_normal((5, n_targets)) * rng.uniform(0, 1, n_targets)
    responses += length @ rng.standard_normal((1, n_targets)) * 0.2 + rng.standard_normal((n_rows, n_targets))
    return [llm, length, blocks], responses, groups


def fit_both(bands, responses, groups, **settings):
    train, test = grouped_splits(groups, 4)[0]
    inner = grouped_splits(groups[train], 3)
    return [
        fit_predict_banded(
            [b[train] for b in bands],
            [b[test] for b in bands],
            responses[train],
            np.logspace(-2, 6, 9),
            inner,
            n_iter=10,
            solver=solver,
            **settings,
        )
        for solver in ("himalaya", "eigh")
    ]


def test_eigh_solver_makes_himalayas_choices_and_predictions():
    bands, responses, groups = banded_problem(np.random.default_rng(0))
    reference, fast = fit_both(bands, responses, groups)
    same = np.isclose(reference.alphas, fast.alphas) & np.isclose(
        reference.band_weights, fast.band_weights, atol=1e-5
    ).all(0)
    assert same.mean() >= 1 - TOLERANCE["fraction_neuroid_scores_differing"]
    scale = np.abs(reference.predictions).max()
    np.testing.assert_allclose(
        fast.band_predictions[:, :, same], reference.band_predictions[:, :, same], atol=1e-3 * scale
    )
    np.testing.assert_allclose(fast.inner_scores[same], reference.inner_scores[same], atol=NEUROID_SCORE_DIFFERENCE)


def test_eigh_solver_batches_of_targets_change_nothing():
    bands, responses, groups = banded_problem(np.random.default_rng(1))
    whole = fit_both(bands, responses, groups)[1]
    batched = fit_both(bands, responses, groups, neuroid_batch=7)[1]
    np.testing.assert_array_equal(batched.alphas, whole.alphas)
    np.testing.assert_allclose(batched.predictions, whole.predictions, atol=1e-4 * np.abs(whole.predictions).max())


def test_few_and_many_targets_make_the_same_choices_through_either_route():
    """Under n_alphas x n_val targets the scores go through the eigenbasis, above it through the
    formed resolvent: the same targets, tiled past the switch, keep their choices and predictions."""
    bands, responses, groups = banded_problem(np.random.default_rng(3))
    few = fit_both(bands, responses, groups)[1]
    many = fit_both(bands, np.tile(responses, 8), groups)[1]  # 320 targets > 9 penalties x 24 rows
    np.testing.assert_array_equal(many.alphas[:40], few.alphas)
    np.testing.assert_array_equal(many.band_weights[:, :40], few.band_weights)
    # The refit (the same code for both) differs by float32 round-off between 40 and 320 columns.
    np.testing.assert_allclose(many.predictions[:, :40], few.predictions, atol=1e-3 * np.abs(few.predictions).max())
    np.testing.assert_allclose(many.inner_scores[:40], few.inner_scores, atol=1e-5)


def test_penalties_below_a_negative_eigenvalue_are_excluded_as_himalaya_excludes_them():
    """A kernel with a negative eigenvalue (float32 round-off of a singular kernel, here made
    larger): penalties under twice its magnitude get NaN resolvents, scored -1e5."""
    from himalaya.kernel_ridge._random_search import _decompose_kernel_ridge

    from brainalign.encoding.banded import _penalty_predictions, _r2_over_penalties, _validation_basis

    rng = np.random.default_rng(2)
    vectors = np.linalg.qr(rng.standard_normal((24, 24)))[0]
    kernel = rng.standard_normal((30, 30))
    kernel[:24, :24] = (vectors * np.r_[-1e-3, np.linspace(0.1, 3, 23)]) @ vectors.T
    train, validation = np.arange(24), np.arange(24, 30)
    alphas = np.logspace(-5, 1, 7)
    with himalaya_backend("numpy"):  # other tests may leave another backend set
        scaled, vectors = _validation_basis(kernel, train, validation, alphas)
        ours = scaled @ vectors.T
        reference, _ = next(
            _decompose_kernel_ridge(
                kernel[np.ix_(train, train)],
                alphas,
                kernel[np.ix_(validation, train)],
                negative_eigenvalues="nan",
                n_alphas_batch=len(alphas),
            )
        )
        responses = rng.standard_normal((30, 4))
        predictions = _penalty_predictions(scaled, vectors, None, responses[train])
        scores = _r2_over_penalties(predictions, responses[validation], np.isnan(scaled[:, 0, 0]))
    excluded = np.isnan(reference[:, 0, 0])
    assert excluded.any() and not excluded.all()
    np.testing.assert_array_equal(np.isnan(ours[:, 0, 0]), excluded)
    np.testing.assert_allclose(ours[~excluded], reference[~excluded], rtol=1e-6, atol=1e-9)
    assert np.all(scores[excluded] == -1e5) and np.all(scores[~excluded] > -1e5)


def test_penalty_r2_is_scikit_learns_r2_per_penalty_and_target():
    """The validation R^2 of every penalty (computed in place over the predictions) against
    scikit-learn's ``r2_score`` per target; a constant target scores 0, an excluded penalty -1e5."""
    from sklearn.metrics import r2_score

    from brainalign.encoding.banded import _r2_over_penalties

    rng = np.random.default_rng(3)
    predictions = rng.standard_normal((4, 12, 5)).astype(np.float32)
    observed = rng.standard_normal((12, 5)).astype(np.float32)
    observed[:, 4] = 2.0
    excluded = np.array([False, False, True, False])
    scores = _r2_over_penalties(predictions.copy(), observed, excluded)
    for penalty in np.flatnonzero(~excluded):
        expected = r2_score(observed[:, :4], predictions[penalty][:, :4], multioutput="raw_values")
        np.testing.assert_allclose(scores[penalty, :4], expected, rtol=1e-5)
    assert np.all(scores[~excluded, 4] == 0) and np.all(scores[excluded] == -1e5)


def planted_sentences(rng: np.random.Generator, n_passages: int = 24, per_passage: int = 4, n_neuroids: int = 30):
    n = n_passages * per_passage
    passages = np.repeat([f"p{g:02d}" for g in range(n_passages)], per_passage)
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"s{i}" for i in range(n)],
            "context_group": passages,
            "position": np.tile(np.arange(per_passage), n_passages),
            "text": "a few words",
            "cv_group": passages,
            "partition": "all",
        }
    )
    features = rng.standard_normal((n, 200))
    responses = features[:, :8] @ rng.standard_normal((8, n_neuroids)) + rng.standard_normal((n, n_neuroids))
    neuroids = pd.DataFrame({"neuroid_id": [f"n{i}" for i in range(n_neuroids)], "subject": "s1", "roi": "lang"})
    return features, responses, stimuli, stimuli[["stimulus_id"]], neuroids


@pytest.mark.parametrize("controls", [[], ["length", "position", "oasm"]])
def test_robust_fits_with_either_solver_agree_within_the_benchmarks_tolerance(controls):
    data = planted_sentences(np.random.default_rng(3))
    before, after = (
        fit_robust(*data, {**FAST, "controls": controls, "solver": solver}) for solver in ("himalaya", "eigh")
    )
    differences = compare_fits(before, after)
    assert all(differences[key] <= limit for key, limit in TOLERANCE.items()), differences
    assert after.score > 0.05  # the planted signal is found, so the comparison is not between two empty fits


def test_torch_backend_gives_the_numpy_fit():
    """The GPU code path (himalaya's torch backend), run on the CPU."""
    pytest.importorskip("torch")
    data = planted_sentences(np.random.default_rng(4))
    options = {**FAST, "controls": ["length", "position", "oasm"]}
    numpy_fit, torch_fit = (fit_robust(*data, {**options, "backend": backend}) for backend in ("numpy", "torch"))
    differences = compare_fits(numpy_fit, torch_fit)
    assert all(differences[key] <= limit for key, limit in TOLERANCE.items()), differences


def test_device_cpu_uses_the_cpu_backend_and_cuda_without_a_gpu_is_refused_with_the_fix(monkeypatch):
    torch = pytest.importorskip("torch")
    assert fit_backend("cpu", "torch") == "torch"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert fit_backend("auto", "numpy") == "numpy"
    with pytest.raises(ConfigError, match="needs a CUDA GPU.*device auto or cpu"):
        fit_backend("cuda", "numpy")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert fit_backend("auto", "numpy") == "torch_cuda"


def test_the_backend_is_restored_after_a_fit():
    from himalaya.backend import get_backend

    before = get_backend().name
    with himalaya_backend("torch"):
        assert get_backend().name == "torch"
    assert get_backend().name == before
