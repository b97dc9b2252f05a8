"""What the paper suite's encoding stages cost on this CPU: measured unit costs times job counts.

Each unit is timed on random data of the real shapes with one BLAS thread (the fit job's):

- ``fit_encoding`` under ``robust``: one 4,096-feature layer with the control bands and the
  default inference (1,000 permutations, 1,000 bootstrap resamples), reusing the dataset's
  controls-only fit as the workflow does. Pereira2018 (627 sentences, 13,553 neuroids) and
  Wehbe2014 (1,200 TRs, ``--wehbe-neuroids``) are timed at two neuroid counts and
  extrapolated along the line through them (the penalty search and the resampling are
  linear in neuroids; the eigendecompositions do not depend on them); Blank2014 (1,317
  fragments, 60 fROIs) at its full size.
- ``fit_encoding`` under ``aw2024``: one Pereira- and one Blank-sized layer, all neuroids, and
  one Wehbe2014 layer by the Toneva pipeline (1,200 TRs, ``--wehbe-neuroids`` voxels).
- ``compute_ceiling`` under ``aw2024``: one Pereira experiment (384 sentences, 12,155
  neuroids; two per dataset).

The job counts come from the ``paper`` suite in config.yaml (layers of its models x neural
datasets). The feature width hardly matters: the kernels cost n_rows^2 x width, seconds at
any width of the suite. Prints a markdown table (CPU-hours) and the measurements as JSON.

Usage::

    python tests/benchmarks/paper_cost.py [--counts 1000 3000] [--wehbe-neuroids 25000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from bench_aw2024 import layer, time_ceiling  # noqa: E402
from bench_robust import pereira_like, wehbe_like  # noqa: E402

from brainalign.encoding.aw2024 import fit_aw2024  # noqa: E402
from brainalign.encoding.cli import minimal_tables  # noqa: E402
from brainalign.encoding.robust import controls_only_fit, fit_robust  # noqa: E402
from brainalign.encoding.toneva import fit_toneva  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
N_FEATURES = 4096
PEREIRA_NEUROIDS = 13_553


def blank_like(rng, n_features, n_neuroids):
    """Blank2014's shape: 1,317 fragments in 8 stories of unequal length, 60 fROIs."""
    lengths = np.array([171, 158, 185, 160, 170, 164, 152, 157])
    story = np.repeat(np.arange(8), lengths).astype(str)
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"f{i}" for i in range(len(story))],
            "context_group": story,
            "position": pd.Series(story).groupby(story).cumcount().to_numpy(),
            "text": "a fragment",
            "cv_group": story,
            "partition": "all",
        }
    )
    features = rng.standard_normal((len(story), n_features)).astype(np.float32)
    responses = features[:, :20] @ rng.standard_normal((20, n_neuroids)).astype(np.float32) * 0.05
    responses += rng.standard_normal(responses.shape).astype(np.float32)
    flags = {"time_series": False, "permutation": "circular_shift"}
    return features, responses, stimuli, stimuli[["stimulus_id"]], flags


def robust_seconds(make, n_neuroids: int) -> float:
    """Seconds of one robust layer fit (the controls-only fit done beforehand, untimed)."""
    features, responses, stimuli, rows, flags = make(np.random.default_rng(0), N_FEATURES, n_neuroids)
    neuroids = pd.DataFrame(
        {"neuroid_id": np.arange(n_neuroids).astype(str), "subject": np.arange(n_neuroids) % 5, "roi": "x"}
    )
    options = dict(flags)  # the dataset's permutation scheme (config.yaml), else the default per layout
    controls = controls_only_fit(stimuli, responses, rows, neuroids, options)
    start = time.perf_counter()
    fit_robust(features, responses, stimuli, rows, neuroids, options, controls)
    return time.perf_counter() - start


def extrapolated(make, counts: list[int], target: int) -> dict:
    """Robust layer seconds at ``counts`` neuroids and on the line through them at ``target``."""
    seconds = [robust_seconds(make, n) for n in counts]
    slope = (seconds[1] - seconds[0]) / (counts[1] - counts[0])
    return {
        "measured": dict(zip(counts, (round(s, 1) for s in seconds), strict=True)),
        "seconds": seconds[0] + slope * (target - counts[0]),
    }


def toneva_seconds(make, n_neuroids: int) -> float:
    """Seconds of one aw2024 Wehbe2014 layer fit (the Toneva pipeline)."""
    features, responses, stimuli, rows, _ = make(np.random.default_rng(0), N_FEATURES, n_neuroids)
    neuroids = pd.DataFrame({"neuroid_id": np.arange(n_neuroids).astype(str), "subject": np.arange(n_neuroids) % 8})
    start = time.perf_counter()
    fit_toneva(features, responses, stimuli, rows, neuroids, {"time_series": True})
    return time.perf_counter() - start


def aw2024_seconds(n_stimuli: int, n_neuroids: int) -> float:
    features, responses = layer(n_stimuli, N_FEATURES, n_neuroids, seed=0)
    stimuli, rows, neuroids = minimal_tables(n_stimuli, n_neuroids, None)
    start = time.perf_counter()
    fit_aw2024(features, responses, stimuli, rows, neuroids, {})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs=2, default=[1000, 3000], help="neuroid counts timed")
    parser.add_argument("--wehbe-neuroids", type=int, default=25_000, help="voxels of the Wehbe2014 layer")
    parser.add_argument("--only", nargs="+", metavar="WORD", help="time only the units whose name has one of these")
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    n_layers = sum(config["models"][model]["n_layers"] for model in config["suites"]["paper"]["models"])
    measurements = {
        "aw2024 ceiling, Pereira2018 experiment": lambda: {"seconds": time_ceiling(384, 9, 12_155, 100)["seconds"]},
        "aw2024 fit, Pereira2018 layer": lambda: {"seconds": aw2024_seconds(627, PEREIRA_NEUROIDS)},
        "aw2024 fit, Blank2014 layer": lambda: {"seconds": aw2024_seconds(1317, 60)},
        "aw2024 fit, Wehbe2014 layer": lambda: {"seconds": toneva_seconds(wehbe_like, args.wehbe_neuroids)},
        "robust fit, Blank2014 layer": lambda: {"seconds": robust_seconds(blank_like, 60)},
        "robust fit, Pereira2018 layer": lambda: extrapolated(pereira_like, args.counts, PEREIRA_NEUROIDS),
        "robust fit, Wehbe2014 layer": lambda: extrapolated(wehbe_like, args.counts, args.wehbe_neuroids),
    }
    if args.only:
        measurements = {name: m for name, m in measurements.items() if any(word in name for word in args.only)}
    units = {}
    with threadpool_limits(limits=1):
        for name, measure in measurements.items():
            units[name] = measure()
            print(json.dumps({name: units[name]}, default=float), flush=True)  # long runs report as they go
    jobs = {name: n_layers for name in units}
    jobs["aw2024 ceiling, Pereira2018 experiment"] = 2
    print("| unit | seconds (1 core) | jobs in the paper suite | CPU-hours |")
    print("|---|---|---|---|")
    total = 0.0
    for name, unit in units.items():
        hours = unit["seconds"] * jobs[name] / 3600
        total += hours
        print(f"| {name} | {unit['seconds']:.1f} | {jobs[name]:,} | {hours:,.1f} |")
    print(f"| total | | | {total:,.0f} |")
    print(json.dumps({"n_layers": n_layers, "units": units}, default=float))


if __name__ == "__main__":
    main()
