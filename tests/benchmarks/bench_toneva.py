"""Benchmark: the aw2024 Wehbe2014 fit (Toneva pipeline) with the PCA axes from a full SVD
(scikit-learn's ``PCA(svd_solver="full")``, as the original code fits them: the baseline)
and from :func:`brainalign.encoding.toneva.principal_axes`, in the same process, under the
same BLAS thread limit (``--threads``, default 1: the fit_encoding job's).

Size: Wehbe2014's (1,200 TRs in 4 runs, 4 words per TR, ``--n-features`` features,
``--n-neuroids`` voxels), random features and a planted lagged signal (``bench_robust.wehbe_like``).
Prints seconds of each fit, the ratio, and the largest difference of the per-voxel r and of
the score between the two.

Usage::

    python tests/benchmarks/bench_toneva.py [--n-features 4096] [--n-neuroids 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from bench_robust import wehbe_like  # noqa: E402

from brainalign.encoding import toneva  # noqa: E402
from brainalign.encoding.result import EncodingResult  # noqa: E402


def full_svd_axes(samples: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: the original code's PCA."""
    pca = PCA(n_components=n_components, svd_solver="full").fit(samples)
    return pca.mean_, pca.components_


def timed_fit(arguments: tuple) -> tuple[float, EncodingResult]:
    start = time.perf_counter()
    result = toneva.fit_toneva(*arguments, {"time_series": True})
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-features", type=int, default=4096)
    parser.add_argument("--n-neuroids", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (the fit_encoding job has 1)")
    args = parser.parse_args()
    features, responses, stimuli, rows, _ = wehbe_like(np.random.default_rng(0), args.n_features, args.n_neuroids)
    neuroids = pd.DataFrame(
        {"neuroid_id": np.arange(args.n_neuroids).astype(str), "subject": np.arange(args.n_neuroids) % 8}
    )
    arguments = (features, responses, stimuli, rows, neuroids)
    with threadpool_limits(limits=args.threads):
        with mock.patch.object(toneva, "principal_axes", full_svd_axes):
            before, reference = timed_fit(arguments)
        after, result = timed_fit(arguments)
    print(
        json.dumps(
            {
                "n_features": args.n_features,
                "n_neuroids": args.n_neuroids,
                "seconds_full_svd": round(before, 2),
                "seconds_principal_axes": round(after, 2),
                "ratio": round(before / after, 2),
                "max_abs_r_difference": float(np.abs(result.neuroids["r"] - reference.neuroids["r"]).max()),
                "score_difference": float(result.score - reference.score),
            }
        )
    )


if __name__ == "__main__":
    main()
