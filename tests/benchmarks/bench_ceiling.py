"""Benchmark: the aw2024 noise ceiling (Brain-Score's subject-pool extrapolation) before and
after the shared-pool solver and the grid-and-root curve fit.

Size: Pereira2018's 384-sentence experiment, 384 sentences x 12,155 neuroids in the real
subject structure (8 subjects: 5 x 1,105, 1 x 1,108 and 2 x 2,761 voxels, as in
``brainalign.rehearsal.SIZES``). Each voxel is a random mix of 20 latent signals shared by
all subjects plus its own noise.

Before/after: ``compute_ceiling`` of ``src/brainalign/encoding/ceiling.py`` as it stood at
``--baseline`` (read with ``git show`` and imported in this process; its other imports come
from this checkout, unchanged by the speed-up) and of this checkout, on the same data,
settings, random draws and splits, under the same BLAS thread limit (``--threads``; the
compute_ceiling job has 2). The per-neuroid and dataset ceilings must agree to
``TOLERANCE``; with ``--compare-scores`` the held-out r values of every (pool, subject,
split, neuroid) are compared too (this runs the baseline's pool regressions a second
time). Peak memory is the tracemalloc peak (numpy buffers).

Usage::

    python tests/benchmarks/bench_ceiling.py [--n-subsamples 10] [--n-bootstraps 100] [--threads 2] [--compare-scores]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from brainalign.encoding import ceiling
from brainalign.encoding.aw2024 import partition_splits, resolve_options
from brainalign.rehearsal import SIZES

BASELINE = "a58c712"
"""The last commit whose ceiling fit every split by its own eigendecomposition and the curve
by golden-section search."""

TOLERANCE = {"dataset_ceiling": 1e-9, "neuroid_ceiling": 1e-6, "held_out_r": 1e-10}
"""Largest allowed absolute differences between the two implementations: the dataset ceiling,
every neuroid's ceiling and (with ``--compare-scores``) every held-out r. The r values differ
by float rounding only; the curve fits locate the same minimum, the baseline's golden-section
search to about 1e-9 in log(tau), so single bootstrap fits differ by up to about 1e-9 times
the fit's sensitivity to tau, and a neuroid's median over bootstraps by as much."""

ROOT = Path(__file__).resolve().parents[2]


def pereira384_like(seed: int = 0) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Responses, stimuli, rows and neuroids of the 384-sentence experiment's size and subjects."""
    rng = np.random.default_rng(seed)
    counts = [n for experiments, n in SIZES["full"]["pereira2018"] if "384sentences" in experiments]
    n_sentences = 384
    latent = rng.standard_normal((n_sentences, 20))
    responses = np.hstack(
        [latent @ rng.standard_normal((20, n)) * 0.3 + rng.standard_normal((n_sentences, n)) for n in counts]
    )
    subject = np.repeat([f"{index + 1:03d}" for index in range(len(counts))], counts)
    neuroids = pd.DataFrame({"neuroid_id": [f"{s}.{i}" for i, s in enumerate(subject)], "subject": subject})
    stimuli = pd.DataFrame({"stimulus_id": [f"s{i:03d}" for i in range(n_sentences)], "partition": "384sentences"})
    return responses, stimuli, stimuli[["stimulus_id"]], neuroids


def baseline_module(commit: str):
    """``brainalign.encoding.ceiling`` as it stood at ``commit``, imported under another name."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:src/brainalign/encoding/ceiling.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "ceiling_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("ceiling_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(function):
    tracemalloc.start()
    start = time.perf_counter()
    value = function()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, elapsed, peak / 2**30


def held_out_scores(module, responses, stimuli, neuroids, settings):
    """Every held-out r of the partition, by ``module``'s pool regressions, flattened in draw order."""
    rows = np.arange(len(responses))
    splits = partition_splits(stimuli, rows, resolve_options({}))
    subject_of = neuroids["subject"].to_numpy()
    subjects = sorted(pd.unique(subject_of))
    if hasattr(module, "pool_correlation_scorer"):
        collected = module.holdout_scores(
            subjects, settings, module.pool_correlation_scorer(responses, subject_of, splits)
        )
    else:
        grams = {s: responses[:, subject_of == s] @ responses[:, subject_of == s].T for s in subjects}
        collected = module.holdout_correlations(responses, subject_of, grams, splits, settings)
    return np.concatenate(
        [a.ravel() for size in sorted(collected) for s in sorted(collected[size]) for a in collected[size][s]]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-subsamples", type=int, default=10)
    parser.add_argument("--n-bootstraps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads (the compute_ceiling job has 2)")
    parser.add_argument("--baseline", default=BASELINE, help="commit of the implementation timed as 'before'")
    parser.add_argument("--compare-scores", action="store_true", help="also compare every held-out r")
    args = parser.parse_args()
    responses, stimuli, rows, neuroids = pereira384_like()
    options = {"ceiling": {"n_subsamples": args.n_subsamples, "n_bootstraps": args.n_bootstraps}}
    report = {
        "shape": list(responses.shape),
        "subjects": int(neuroids["subject"].nunique()),
        "settings": ceiling.resolve_ceiling_options(options),
        "threads": args.threads,
        "baseline": args.baseline,
    }
    modules = {"before": baseline_module(args.baseline), "after": ceiling}
    results = {}
    with threadpool_limits(limits=args.threads):
        for when, module in modules.items():
            results[when], seconds, peak = measure(
                lambda module=module: module.compute_ceiling(responses, stimuli, rows, neuroids, options)
            )
            report.update(
                {
                    f"seconds_{when}": round(seconds, 2),
                    f"peak_gib_{when}": round(peak, 3),
                    f"ceiling_{when}": results[when][1]["ceiling"],
                }
            )
        differences = {
            "dataset_ceiling": abs(results["before"][1]["ceiling"] - results["after"][1]["ceiling"]),
            "neuroid_ceiling": float(
                np.nanmax(np.abs(results["before"][0]["ceiling"] - results["after"][0]["ceiling"]))
            ),
        }
        failed = [table["ceiling"].isna().to_numpy() for table, _ in results.values()]
        report["same_failed_fits"] = bool(np.array_equal(*failed))
        if args.compare_scores:
            settings = report["settings"]
            before, after = (held_out_scores(m, responses, stimuli, neuroids, settings) for m in modules.values())
            differences["held_out_r"] = float(np.nanmax(np.abs(before - after)))
            report["same_nan_scores"] = bool(np.array_equal(np.isnan(before), np.isnan(after)))
    neuroid_differences = np.abs(results["before"][0]["ceiling"] - results["after"][0]["ceiling"])
    report.update(
        {
            "speedup": round(report["seconds_before"] / report["seconds_after"], 1),
            "largest_differences": differences,
            "neuroids_differing_over_1e-10": int((neuroid_differences > 1e-10).sum()),
            "tolerance": TOLERANCE,
            "within_tolerance": all(value <= TOLERANCE[key] for key, value in differences.items()),
        }
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
