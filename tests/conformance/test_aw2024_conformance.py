"""``aw2024`` against the code the paper ran, side by side on the same inputs.

The reference (brain-score/language at the paper's commit) runs in its own environment
through :mod:`reference_side`; ``make conformance`` builds that environment and points
``BRAINALIGN_REFERENCE_PYTHON`` at it. Without the variable these tests skip; with it, a
missing interpreter fails. A mismatch names the first differing unit, layer and value.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainalign.encoding.aw2024 import fit_aw2024

HERE = Path(__file__).resolve().parent
REFERENCE_SIDE = HERE / "reference_side.py"


@pytest.fixture(scope="session")
def reference_python() -> Path:
    value = os.environ.get("BRAINALIGN_REFERENCE_PYTHON")
    if not value:
        pytest.skip("the paper's code is not set up: run `make conformance`")
    python = Path(value)
    assert python.exists(), f"BRAINALIGN_REFERENCE_PYTHON={value} does not exist: run tests/conformance/setup_reference.sh"
    return python


def run_reference(python: Path, *args: str | Path) -> None:
    completed = subprocess.run([str(python), str(REFERENCE_SIDE), *map(str, args)], capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, f"reference side {args[0]} failed:\n{completed.stderr[-6000:]}"


def first_difference(ours: np.ndarray, reference: np.ndarray, labels: list[str]) -> str:
    """Where the two arrays differ most, as 'label: ours vs reference'."""
    difference = np.abs(np.nan_to_num(ours - reference, nan=np.inf))
    index = np.unravel_index(np.argmax(difference), difference.shape)
    return f"{labels[index[0]]}, position {index[1:]}: ours {ours[index]!r} vs reference {reference[index]!r}"


# ----------------------------------------------------------------------------- linear_pearsonr
def shuffled_mini_assembly(seed: int = 0, n: int = 60, n_features: int = 80, n_neuroids: int = 30):
    """A planted linear signal; our rows in reading order, the assembly's stored order shuffled."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, n_features)).astype(np.float32)
    responses = features[:, :10] @ rng.standard_normal((10, n_neuroids)) + 3.0 * rng.standard_normal((n, n_neuroids))
    stimuli = pd.DataFrame({
        "stimulus_id": [f"sentence{i:03d}" for i in range(n)],
        "context_group": np.repeat([f"passage{g:02d}" for g in range(n // 4)], 4),
        "position": np.tile(np.arange(4), n // 4),
        "text": "w",
        "partition": "all",
        "assembly_row": rng.permutation(n),
    })
    neuroids = pd.DataFrame({"neuroid_id": [f"n{j:05d}" for j in range(n_neuroids)], "subject": "s1"})
    return features, responses, stimuli, neuroids


def split_r(result, neuroids: pd.DataFrame, n_splits: int) -> np.ndarray:
    """Per-split r of an aw2024 result, shape (n_splits, n_neuroids) in ``neuroids`` order."""
    table = result.neuroids.set_index("neuroid_id").loc[neuroids["neuroid_id"]]
    return np.stack([table[f"r_fold_{k}"].to_numpy() for k in range(n_splits)])


def test_split_scores_equal_the_reference_metric_in_stored_order(reference_python, tmp_path):
    features, responses, stimuli, neuroids = shuffled_mini_assembly()
    stored = np.argsort(stimuli["assembly_row"].to_numpy())
    np.save(tmp_path / "features.npy", features[stored])
    np.save(tmp_path / "responses.npy", responses[stored])
    (tmp_path / "ids.json").write_text(json.dumps(stimuli["stimulus_id"].to_numpy()[stored].tolist()))
    run_reference(reference_python, "metric", tmp_path / "features.npy", tmp_path / "responses.npy", tmp_path / "ids.json",
                  tmp_path / "r.npy")
    reference = np.load(tmp_path / "r.npy", allow_pickle=False)

    result = fit_aw2024(features, responses, stimuli, stimuli[["stimulus_id"]], neuroids)
    ours = split_r(result, neuroids, len(reference))
    assert result.details["split_order"] == "stored" and result.details["fit_precision"] == "float32"
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6,
                               err_msg=first_difference(ours, reference, [f"split {k}" for k in range(len(reference))]))
    # Both choices matter: splits over our reading order, or a float64 fit, give other scores.
    given = fit_aw2024(features, responses, stimuli.drop(columns="assembly_row"), stimuli[["stimulus_id"]], neuroids)
    assert given.details["split_order"] == "given" and np.abs(split_r(given, neuroids, len(reference)) - reference).max() > 0.1
    exact = fit_aw2024(features, responses, stimuli, stimuli[["stimulus_id"]], neuroids, {"fit_precision": "float64"})
    assert np.abs(split_r(exact, neuroids, len(reference)) - reference).max() > 1e-3
