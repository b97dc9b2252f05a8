"""Time the aw2024 fit against brainscore-language's ``linear_pearsonr`` on identical arrays.

Layers: Pereira-sized (627 stimuli x 4,096 features x 13,553 neuroids) and Blank-sized
(1,317 x 4,096 x 60), random features with a planted linear signal, float64. Each side
runs in its own process (brainscore-language in its venv, see validate_brainscore.py) and
times itself, so peak memory (max RSS) is per side. Brain-Score is run on a neuroid subset
of the Pereira layer (``--brainscore-neuroids``); ours runs on that same subset (the ratio
reported) and on all neuroids. Also times the extrapolation ceiling on a Pereira-sized
experiment (384 stimuli, 9 subjects, 12,155 neuroids).

    python tests/benchmarks/bench_aw2024.py [--venv /tmp/bs-venv] [--brainscore-neuroids 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from validate_brainscore import ensure_venv, run_brainscore  # noqa: E402


def layer(n_stimuli: int, n_features: int, n_neuroids: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random features and responses with a planted low-rank linear signal."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n_stimuli, n_features))
    signal = features[:, :20] @ rng.standard_normal((20, n_neuroids)) / np.sqrt(20)
    return features, signal + 3.0 * rng.standard_normal((n_stimuli, n_neuroids))


def ours_side(features_path: str, responses_path: str) -> None:
    """Run fit_aw2024 on saved arrays; print score, seconds and peak RSS as JSON."""
    from brainalign.encoding.aw2024 import fit_aw2024
    from brainalign.encoding.cli import minimal_tables

    features, responses = np.load(features_path), np.load(responses_path)
    stimuli, rows, neuroids = minimal_tables(len(features), responses.shape[1], None)
    start = time.perf_counter()
    result = fit_aw2024(features, responses, stimuli, rows, neuroids, {})
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "score": result.score,
                "seconds": seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_ours(features_path: Path, responses_path: Path) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--ours", str(features_path), str(responses_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def time_ceiling(n_stimuli: int, n_subjects: int, n_neuroids: int, n_bootstraps: int) -> dict:
    """Seconds of extrapolated_ceiling on a simulated experiment (shared signal + noise)."""
    from brainalign.encoding.ceiling import extrapolated_ceiling

    rng = np.random.default_rng(0)
    signal = rng.standard_normal((n_stimuli, 10)) @ rng.standard_normal((10, n_neuroids))
    responses = signal / signal.std(0) + 2.0 * rng.standard_normal((n_stimuli, n_neuroids))
    stimuli = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(n_stimuli)], "partition": "all"})
    neuroids = pd.DataFrame(
        {
            "neuroid_id": [f"n{i}" for i in range(n_neuroids)],
            "subject": np.sort(rng.integers(0, n_subjects, n_neuroids)).astype(str),
        }
    )
    start = time.perf_counter()
    _, summary = extrapolated_ceiling(
        responses, stimuli, stimuli[["stimulus_id"]], neuroids, {"ceiling": {"n_bootstraps": n_bootstraps}}
    )
    return {"seconds": time.perf_counter() - start, "ceiling": summary["ceiling"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/bs-venv"))
    parser.add_argument("--brainscore-neuroids", type=int, default=2000)
    parser.add_argument("--ceiling-bootstraps", type=int, default=100)
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--ours", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours:
        ours_side(*args.ours)
        return
    python = ensure_venv(args.venv)
    folder = Path(tempfile.mkdtemp(prefix="bench-aw2024-"))
    pereira_x, pereira_y = layer(627, 4096, 13553, seed=0)
    blank_x, blank_y = layer(1317, 4096, 60, seed=1)
    arrays = {
        "pereira_subset": (pereira_x, pereira_y[:, : args.brainscore_neuroids]),
        "pereira_full": (pereira_x, pereira_y),
        "blank": (blank_x, blank_y),
    }
    paths = {}
    for name, (x, y) in arrays.items():
        paths[name] = (folder / f"{name}_X.npy", folder / f"{name}_Y.npy")
        np.save(paths[name][0], x)
        np.save(paths[name][1], y)
    for name in ("pereira_subset", "blank"):
        reference = run_brainscore(python, *paths[name])
        ours = run_ours(*paths[name])
        shape = arrays[name][1].shape
        print(
            f"{name} {arrays[name][0].shape[0]}x{arrays[name][0].shape[1]}x{shape[1]}: "
            f"brainscore {reference['seconds']:.1f} s, {reference['peak_rss_mb']:.0f} MB | "
            f"ours {ours['seconds']:.1f} s, {ours['peak_rss_mb']:.0f} MB | "
            f"speed-up {reference['seconds'] / ours['seconds']:.1f}x | "
            f"|score diff| {abs(reference['score'] - ours['score']):.1e}"
        )
    ours = run_ours(*paths["pereira_full"])
    print(f"pereira_full 627x4096x13553: ours {ours['seconds']:.1f} s, {ours['peak_rss_mb']:.0f} MB")
    if not args.skip_ceiling:
        ceiling = time_ceiling(384, 9, 12155, args.ceiling_bootstraps)
        print(
            f"extrapolation ceiling 384 stimuli x 9 subjects x 12155 neuroids "
            f"({args.ceiling_bootstraps} bootstraps): {ceiling['seconds']:.1f} s (ceiling {ceiling['ceiling']:.3f})"
        )


if __name__ == "__main__":
    main()
