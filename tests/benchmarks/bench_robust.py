"""Benchmark: the robust fit before and after the shared-eigendecomposition solver, and
against scikit-learn's RidgeCV on the same folds and grid.

Sizes: Pereira2018 (627 sentences x 4,096 features x 13,553 neuroids, 2 partitions of
passages) and Wehbe2014 (1,200 TRs in 4 runs x 4,096 features x 25,000 voxels, words
averaged per TR, 4 FIR delays). Data are random with a planted linear signal.

Before/after: the same fit with ``solver: himalaya`` (himalaya's random search, which
refits at every improving band-weight candidate: the implementation before) and
``solver: eigh`` (:func:`brainalign.encoding.banded.solve_banded_dual`), in the same run,
under the same BLAS thread limit (``--threads``, default 1: the fit_encoding job's).
With ``--controls`` both time one layer's fit as the workflow runs it, reusing the
dataset's controls-only fit (each solver's own, timed apart). The results must agree to
``TOLERANCE`` (the same as tests/unit/encoding/test_banded.py and tests/gpu/test_gpu_robust.py);
the differences are printed.

Baseline: scikit-learn cannot choose one penalty per target with explicit folds
(``RidgeCV(alpha_per_target=True)`` requires ``cv=None``), so the baseline fits
``RidgeCV(alphas=grid, cv=<the same inner folds>)`` per neuroid on the same outer
folds and standardised features, timed on ``--sklearn-neuroids`` neuroids and
scaled linearly to all neuroids. Peak memory is the tracemalloc peak (numpy buffers).

Usage::

    python tests/benchmarks/bench_robust.py --dataset pereira --n-neuroids 2000 [--controls] [--skip-sklearn]
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from threadpoolctl import threadpool_limits

from brainalign.encoding.cv import protocol_splits
from brainalign.encoding.robust import (
    alpha_grid,
    controls_only_fit,
    fit_robust,
    resolve_robust_options,
    sentence_design,
    time_series_design,
)

TOLERANCE = {"score": 1e-3, "fold_score": 1e-3, "fraction_neuroid_scores_differing": 0.01}
"""Largest allowed differences between two fits of the same data: the layer score and every
fold's scores (absolute, R^2 units), and the fraction of per-neuroid fold scores that differ by
more than ``NEUROID_SCORE_DIFFERENCE`` (neuroids whose penalty or band weights are a near-tie
that float32 round-off breaks either way; their own scores can then differ a lot)."""
NEUROID_SCORE_DIFFERENCE = 1e-3


def compare_fits(before, after) -> dict[str, float]:
    """Differences between two fits of the same data (the ``TOLERANCE`` keys, and the largest
    per-neuroid difference for the record)."""
    folds = [column for column in before.folds if column.startswith("test_")]
    measures = [column for column in before.neuroids if "_fold_" in column]
    neuroid_differences = np.nan_to_num((before.neuroids[measures] - after.neuroids[measures]).abs().to_numpy())
    return {
        "score": abs(before.score - after.score),
        "fold_score": float((before.folds[folds] - after.folds[folds]).abs().max().max()),
        "fraction_neuroid_scores_differing": float((neuroid_differences > NEUROID_SCORE_DIFFERENCE).mean()),
        "largest_neuroid_score_difference": float(neuroid_differences.max()),
    }


def pereira_like(rng, n_features, n_neuroids):
    passages = np.repeat(np.arange(168), 4)[:627]
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"s{i}" for i in range(627)],
            "context_group": passages.astype(str),
            "position": pd.Series(passages).groupby(passages).cumcount().to_numpy(),
            "text": "a few words here",
            "cv_group": passages.astype(str),
            "partition": np.where(np.arange(627) < 384, "384sentences", "243sentences"),
        }
    )
    features = rng.standard_normal((627, n_features)).astype(np.float32)
    responses = features[:, :50] @ rng.standard_normal((50, n_neuroids)).astype(np.float32) * 0.05
    responses += rng.standard_normal((627, n_neuroids)).astype(np.float32)
    return features, responses, stimuli, stimuli[["stimulus_id"]], {"time_series": False}


def wehbe_like(rng, n_features, n_neuroids, n_trs=1200, words_per_tr=4):
    rows = pd.DataFrame(
        {
            "stimulus_id": [f"tr{i}" for i in range(n_trs)],
            "run": np.repeat(np.arange(4), n_trs // 4),
            "time": np.tile(np.arange(n_trs // 4) * 2.0, 4),
        }
    )
    response_id = np.repeat(rows["stimulus_id"].to_numpy(), words_per_tr)
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(len(response_id))],
            "context_group": "book",
            "position": np.arange(len(response_id)),
            "text": "w",
            "cv_group": "book",
            "partition": "all",
            "response_id": response_id,
        }
    )
    features = rng.standard_normal((len(stimuli), n_features)).astype(np.float32)
    responses = rng.standard_normal((n_trs, n_neuroids)).astype(np.float32)
    responses[2:] += (
        features.reshape(n_trs, words_per_tr, -1).mean(1)[:-2, :50]
        @ rng.standard_normal((50, n_neuroids)).astype(np.float32)
        * 0.1
    )
    return features, responses, stimuli, rows, {"time_series": True}


def measure(function):
    tracemalloc.start()
    start = time.perf_counter()
    value = function()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, elapsed, peak / 2**30


def sklearn_per_neuroid(features, responses, stimuli, rows, options, neuroid_index):
    """RidgeCV per neuroid on the robust protocol's outer/inner folds and standardised features."""
    options = resolve_robust_options(options)
    options["controls"] = []
    design = (
        time_series_design(features, stimuli, rows, options)
        if options["time_series"]
        else sentence_design(features, stimuli, options)
    )
    grid = alpha_grid(options["alphas"])
    for partition in pd.unique(design["partitions"]):
        part = np.flatnonzero(design["partitions"] == partition)
        X, groups = design["llm"][part], design["cv_groups"][part]
        for train, test in protocol_splits(
            groups, options["n_outer_folds"], options["time_series"], options["trim_trs"]
        ):
            inner = protocol_splits(
                groups[train], options["n_inner_folds"], options["time_series"], options["trim_trs"]
            )
            mean, scale = X[train].mean(0), X[train].std(0) * np.sqrt(X.shape[1])
            X_train, X_test = (X[train] - mean) / scale, (X[test] - mean) / scale
            for neuroid in neuroid_index:
                RidgeCV(alphas=grid, cv=inner).fit(X_train, responses[part][train, neuroid]).predict(X_test)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["pereira", "wehbe"], default="pereira")
    parser.add_argument("--n-features", type=int, default=4096)
    parser.add_argument("--n-neuroids", type=int)
    parser.add_argument("--sklearn-neuroids", type=int, default=2)
    parser.add_argument(
        "--controls",
        action="store_true",
        help="fit the banded model with length/position/oasm (else the LLM band alone)",
    )
    parser.add_argument("--backend", default="numpy", choices=["numpy", "torch"])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (the fit_encoding job has 1)")
    parser.add_argument("--neuroid-batch", type=int, default=5000)
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_neuroids = args.n_neuroids or (13_553 if args.dataset == "pereira" else 25_000)
    make = pereira_like if args.dataset == "pereira" else wehbe_like
    features, responses, stimuli, rows, flags = make(rng, args.n_features, n_neuroids)
    neuroids = pd.DataFrame({"neuroid_id": np.arange(n_neuroids).astype(str), "subject": "s", "roi": "x"})
    options = {
        **flags,
        "controls": ["length", "position", "oasm"] if args.controls else [],
        "n_bootstrap": 0,
        "n_permutations": 0,
        "backend": args.backend,
        "neuroid_batch": args.neuroid_batch,
    }
    report = {
        "dataset": args.dataset,
        "shape": [len(stimuli), args.n_features, n_neuroids],
        "controls": args.controls,
        "backend": args.backend,
        "threads": args.threads,
    }
    fits = {}
    with threadpool_limits(limits=args.threads):
        for when, solver in (("before", "himalaya"), ("after", "eigh")):
            solver_options = {**options, "solver": solver}
            controls = None
            if args.controls:
                # The workflow fits the controls-only model once per dataset and every layer reuses it.
                controls, seconds, _ = measure(
                    lambda options=solver_options: controls_only_fit(stimuli, responses, rows, neuroids, options)
                )
                report[f"controls_fit_seconds_{when}"] = round(seconds, 1)
            fits[when], seconds, peak = measure(
                lambda options=solver_options, controls=controls: fit_robust(
                    features, responses, stimuli, rows, neuroids, options, controls
                )
            )
            report.update(
                {
                    f"layer_seconds_{when}": round(seconds, 1),
                    f"layer_peak_gib_{when}": round(peak, 2),
                    f"score_{when}": round(fits[when].score, 4),
                }
            )
    differences = compare_fits(fits["before"], fits["after"])
    report.update(
        {
            "layer_speedup": round(report["layer_seconds_before"] / report["layer_seconds_after"], 2),
            "largest_differences": differences,
            "tolerance": TOLERANCE,
            "within_tolerance": all(differences[key] <= limit for key, limit in TOLERANCE.items()),
        }
    )
    if args.controls:
        report["controls_fit_speedup"] = round(
            report["controls_fit_seconds_before"] / report["controls_fit_seconds_after"], 2
        )
    ours = report["layer_seconds_after"]
    if not args.skip_sklearn:
        subset = np.arange(args.sklearn_neuroids)
        _, baseline, baseline_peak = measure(
            lambda: sklearn_per_neuroid(features, responses, stimuli, rows, flags, subset)
        )
        scaled = baseline * n_neuroids / len(subset)
        report.update(
            {
                "sklearn_neuroids_timed": len(subset),
                "sklearn_seconds_timed": round(baseline, 1),
                "sklearn_seconds_scaled": round(scaled, 0),
                "sklearn_peak_gib": round(baseline_peak, 2),
                "speedup": round(scaled / ours, 1),
            }
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
