"""Benchmark: the aw2024 noise ceiling (Brain-Score's subject-pool extrapolation) before and
after the shared-pool solver and the grid-and-root curve fit.

Size: Pereira2018's 384-sentence experiment, 384 sentences x 12,155 neuroids in the real
subject structure (8 subjects: 5 x 1,105, 1 x 1,108 and 2 x 2,761 voxels, as in
``brainalign.rehearsal.SIZES``). Each voxel is a random mix of 20 latent signals shared by
all subjects plus its own noise.

Before/after: the ceiling of the whole ``src/`` tree as it stood at ``--baseline`` (exported
with ``git archive``) and of this checkout, each timed in a worker process of this script that
imports that tree, on the same data (passed as an npz), settings, random draws and splits,
under the same BLAS thread limit (``--threads``; the compute_ceiling job has 1). The
per-neuroid and dataset ceilings must agree to ``TOLERANCE``; with ``--compare-scores`` the
held-out r values of every (pool, subject, split, neuroid) are compared too (this runs the
baseline's pool regressions a second time). Peak memory is the tracemalloc peak (numpy
buffers).

Usage::

    python tests/benchmarks/bench_ceiling.py [--n-subsamples 10] [--n-bootstraps 100] [--threads 1] [--compare-scores]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

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
PEREIRA_384_VOXELS = [1105] * 5 + [1108] + [2761] * 2
"""Voxels per subject of the 384-sentence experiment (``brainalign.rehearsal.SIZES``)."""


def pereira384_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Responses (384 sentences x 12,155 neuroids) and each neuroid's subject."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((384, 20))
    responses = np.hstack(
        [latent @ rng.standard_normal((20, n)) * 0.3 + rng.standard_normal((384, n)) for n in PEREIRA_384_VOXELS]
    )
    subject = np.repeat([f"{index + 1:03d}" for index in range(len(PEREIRA_384_VOXELS))], PEREIRA_384_VOXELS)
    return responses, subject


def export_source(commit: str, destination: Path) -> Path:
    """The ``src`` tree of ``commit`` under ``destination``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return destination / "src"


def held_out_scores(module, aw2024, responses, stimuli, neuroids, settings) -> np.ndarray:
    """Every held-out r of the partition, by ``module``'s pool regressions, flattened in draw order."""
    resolve = getattr(aw2024, "resolve_aw2024_options", None) or aw2024.resolve_options
    splits = aw2024.partition_splits(stimuli, np.arange(len(responses)), resolve({}))
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


def worker(source: str, data: str, out: str, options: str, threads: int, compare_scores: bool) -> None:
    """Time the ceiling of the tree at ``source`` on the npz ``data``; write the results to ``out``."""
    sys.path.insert(0, source)
    from threadpoolctl import threadpool_limits

    from brainalign.encoding import aw2024, ceiling

    with np.load(data, allow_pickle=False) as stored:
        responses, subject = stored["responses"], stored["subject"]
    neuroids = pd.DataFrame({"neuroid_id": [f"{s}.{i}" for i, s in enumerate(subject)], "subject": subject})
    stimuli = pd.DataFrame({"stimulus_id": [f"s{i:03d}" for i in range(len(responses))], "partition": "384sentences"})
    rows, options = stimuli[["stimulus_id"]], json.loads(options)
    fit = getattr(ceiling, "extrapolated_ceiling", None) or ceiling.compute_ceiling
    with threadpool_limits(limits=threads):
        tracemalloc.start()
        start = time.perf_counter()
        table, summary = fit(responses, stimuli, rows, neuroids, options)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**30
        tracemalloc.stop()
        scores = np.zeros(0)
        if compare_scores:
            settings = summary["settings"].get("ceiling", summary["settings"])
            scores = held_out_scores(ceiling, aw2024, responses, stimuli, neuroids, settings)
    np.savez(
        out,
        ceiling=table["ceiling"].to_numpy(),
        dataset_ceiling=summary["ceiling"],
        seconds=seconds,
        peak_gib=peak,
        held_out_r=scores,
    )


def run_worker(source: Path, data: Path, out: Path, options: dict, args) -> dict[str, np.ndarray]:
    command = [sys.executable, __file__, "--worker", str(source), str(data), str(out), json.dumps(options)]
    command += ["--threads", str(args.threads)] + (["--compare-scores"] if args.compare_scores else [])
    subprocess.run(command, check=True)
    with np.load(out, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-subsamples", type=int, default=10)
    parser.add_argument("--n-bootstraps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (the compute_ceiling job has 1)")
    parser.add_argument("--baseline", default=BASELINE, help="commit of the implementation timed as 'before'")
    parser.add_argument("--compare-scores", action="store_true", help="also compare every held-out r")
    parser.add_argument("--worker", nargs=4, metavar=("SOURCE", "DATA", "OUT", "OPTIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, threads=args.threads, compare_scores=args.compare_scores)
        return
    options = {"ceiling": {"n_subsamples": args.n_subsamples, "n_bootstraps": args.n_bootstraps}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        responses, subject = pereira384_like()
        np.savez(scratch / "data.npz", responses=responses, subject=subject)
        sources = {"before": export_source(args.baseline, scratch / "baseline"), "after": ROOT / "src"}
        results = {
            when: run_worker(source, scratch / "data.npz", scratch / f"{when}.npz", options, args)
            for when, source in sources.items()
        }
    before, after = results["before"], results["after"]
    neuroid_differences = np.abs(before["ceiling"] - after["ceiling"])
    differences = {
        "dataset_ceiling": float(abs(before["dataset_ceiling"] - after["dataset_ceiling"])),
        "neuroid_ceiling": float(np.nanmax(neuroid_differences)),
    }
    report = {
        "shape": list(responses.shape),
        "subjects": len(PEREIRA_384_VOXELS),
        "options": options,
        "threads": args.threads,
        "baseline": args.baseline,
        "same_failed_fits": bool(np.array_equal(np.isnan(before["ceiling"]), np.isnan(after["ceiling"]))),
    }
    for when, values in results.items():
        report.update(
            {
                f"seconds_{when}": round(float(values["seconds"]), 2),
                f"peak_gib_{when}": round(float(values["peak_gib"]), 3),
                f"ceiling_{when}": float(values["dataset_ceiling"]),
            }
        )
    if args.compare_scores:
        differences["held_out_r"] = float(np.nanmax(np.abs(before["held_out_r"] - after["held_out_r"])))
        report["same_nan_scores"] = bool(np.array_equal(np.isnan(before["held_out_r"]), np.isnan(after["held_out_r"])))
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
