"""Compare the aw2024 encoding scores with brainscore-language's ``linear_pearsonr`` on the same arrays.

brainscore-language pins older numpy/pandas/xarray than this project, so it runs in its
own virtual environment (created on first use with ``pip install brainscore-language``),
through a subprocess that loads the same ``.npy`` files (float64) and reports its score,
its per-split per-neuroid r, its own wall time and its peak memory.

    python tests/benchmarks/validate_brainscore.py [--venv /tmp/bs-venv] [--workdir DIR]

Exit status 0 when every case agrees to the tolerance (default 1e-6) with the ``svd``
solver where the OLS problem is well defined, and with the ``sklearn`` solver everywhere.
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

from brainalign.encoding.aw2024 import fit_aw2024
from brainalign.encoding.cli import minimal_tables

BRAINSCORE_SIDE = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly
from brainscore_language import load_metric

features, responses = np.load(sys.argv[1]), np.load(sys.argv[2])
ids = [f"s{i:06d}" for i in range(len(features))]

def assembly(values, prefix):
    return NeuroidAssembly(values, dims=["presentation", "neuroid"], coords={
        "stimulus_id": ("presentation", ids), "stimulus_num": ("presentation", np.arange(len(ids))),
        "neuroid_id": ("neuroid", [f"{prefix}{j:06d}" for j in range(values.shape[1])]),
        "subject": ("neuroid", ["subject"] * values.shape[1])})

metric = load_metric("linear_pearsonr")
start = time.perf_counter()
score = metric(assembly(features, "f"), assembly(responses, "n"))
seconds = time.perf_counter() - start
raw = score.attrs["raw"].transpose("split", "neuroid")
center = score.sel(aggregation="center") if "aggregation" in score.dims else score
print(json.dumps({"score": float(center), "r": raw.values.tolist(), "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def ensure_venv(venv: Path) -> Path:
    """Return the venv's python, creating the venv with brainscore-language if needed."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "brainscore-language"], check=True)
    return python


def run_brainscore(python: Path, features_path: Path, responses_path: Path) -> dict:
    """Score saved arrays with brainscore-language in its venv; return its JSON report."""
    completed = subprocess.run(
        [str(python), "-c", BRAINSCORE_SIDE, str(features_path), str(responses_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_ours(features: np.ndarray, responses: np.ndarray, solver: str = "svd") -> dict:
    """Score arrays with fit_aw2024 in float64 (the arrays Brain-Score gets); return score,
    r (split x neuroid) and wall time."""
    stimuli, rows, neuroids = minimal_tables(len(features), responses.shape[1], None)
    start = time.perf_counter()
    result = fit_aw2024(features, responses, stimuli, rows, neuroids, {"solver": solver, "fit_precision": "float64"})
    seconds = time.perf_counter() - start
    r = result.neuroids[[c for c in result.neuroids.columns if c.startswith("r_fold_")]].to_numpy().T
    return {
        "score": result.score,
        "r": r,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def save_case(folder: Path, name: str, features: np.ndarray, responses: np.ndarray) -> tuple[Path, Path]:
    """Save a case's arrays as float64 .npy files."""
    paths = folder / f"{name}_X.npy", folder / f"{name}_Y.npy"
    np.save(paths[0], features.astype(np.float64))
    np.save(paths[1], responses.astype(np.float64))
    return paths


def cases(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """Named (features, responses, well_posed) cases: planted signal, noise, features > samples."""
    rng = np.random.default_rng(seed)

    def planted(n, p, k, noise, offset=0.0):
        x = rng.standard_normal((n, p))
        y = x @ rng.standard_normal((p, k)) / np.sqrt(p) + noise * rng.standard_normal((n, k))
        return x + offset, y

    return {
        "planted_n300_p50": (*planted(300, 50, 60, 1.0), True),
        "noise_n300_p50": (*planted(300, 50, 60, 50.0), True),
        "planted_n200_p400": (*planted(200, 400, 60, 1.0), True),
        "offset_n200_p400": (*planted(200, 400, 60, 1.0, offset=10.0), False),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/bs-venv"))
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args()
    python = ensure_venv(args.venv)
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="bs-validate-"))
    folder.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name, (features, responses, well_posed) in cases().items():
        reference = run_brainscore(python, *save_case(folder, name, features, responses))
        for solver in ("svd", "sklearn"):
            ours = run_ours(features, responses, solver)
            score_diff = abs(ours["score"] - reference["score"])
            r_diff = float(np.nanmax(np.abs(ours["r"] - np.asarray(reference["r"]))))
            required = solver == "sklearn" or well_posed
            ok = score_diff <= args.tolerance and r_diff <= args.tolerance
            failures += required and not ok
            print(
                f"{name:20s} solver={solver:7s} score ours={ours['score']:.8f} brainscore={reference['score']:.8f} "
                f"|diff|={score_diff:.2e} max|r diff|={r_diff:.2e} "
                f"{'OK' if ok else ('MISMATCH' if required else 'differs (ill-posed lstsq)')}"
            )
    print("all required cases agree" if not failures else f"{failures} required case(s) disagree")
    return int(failures > 0)


if __name__ == "__main__":
    sys.exit(main())
