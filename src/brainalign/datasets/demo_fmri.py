"""Demo sentence-level fMRI: project-written passages and simulated voxels with a planted signal.

Generative model (all draws from one seeded generator; ``block['simulation']``):

1. ``A`` = the source model's activations at ``source_layer`` for every sentence (read from
   the activation file the pipeline itself extracted), columns z-scored.
2. ``Z`` = the first ``n_components`` principal components of ``A``, each scaled to unit
   variance; ``C`` = z-scored controls: sentence length in words and position in passage.
3. For each of ``n_subjects`` subjects and ``n_voxels`` voxels, with weights drawn from a
   standard normal and each term scaled to unit variance over sentences::

       y = sqrt(signal_fraction) * Z w + sqrt(control_fraction) * C u
           + sqrt(1 - signal_fraction - control_fraction) * e,    e ~ N(0, 1)

So every voxel has unit variance, ``signal_fraction`` of it comes from the planted layer,
``control_fraction`` from the controls, and the rest is noise. The expected outcome is known
in advance: the source model ranks first, its best layers lie at or near ``source_layer``,
and no model can exceed r = sqrt(signal_fraction + control_fraction) on held-out data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign import io
from brainalign.errors import DataError

DEMO_LABEL = "DEMO DATA (simulated responses; not human fMRI)"


def read_passages(path: str | Path) -> pd.DataFrame:
    """Read the demo passages TSV (passage_id, topic, sentence_index, sentence)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist: the demo passages ship with the repository (resources/demo/).")
    frame = pd.read_csv(path, sep="\t", dtype={"passage_id": str, "topic": str, "sentence": str})
    required = {"passage_id", "topic", "sentence_index", "sentence"}
    if not required <= set(frame.columns):
        raise DataError(f"{path}: needs columns {sorted(required)}, found {list(frame.columns)}.")
    return frame


def prepare_stimuli(block: dict[str, Any], out_path: str | Path) -> None:
    """Write one stimulus per sentence; the passage is the context group and the CV group."""
    passages = read_passages(block["files"]["passages"])
    stimuli = pd.DataFrame(
        {
            "stimulus_id": passages["passage_id"] + "." + passages["sentence_index"].astype(str),
            "context_group": passages["passage_id"],
            "position": passages["sentence_index"].astype(int),
            "text": passages["sentence"].str.strip(),
            "cv_group": passages["passage_id"],
            "partition": "all",
            "topic": passages["topic"],
            "n_words": passages["sentence"].str.split().str.len(),
        }
    )
    io.write_stimuli(out_path, stimuli, {"dataset_kind": "demo_fmri", "demo": True, "label": DEMO_LABEL})


def unit_variance(matrix: np.ndarray) -> np.ndarray:
    """Center each column and scale it to unit (population) variance."""
    centered = matrix - matrix.mean(axis=0)
    return centered / centered.std(axis=0)


def principal_components(activations: np.ndarray, n_components: int) -> np.ndarray:
    """The first ``n_components`` principal components of the z-scored activations, each of unit variance.

    Constant activation columns (which z-score to NaN) are left out.
    """
    standardized = unit_variance(activations)
    standardized = standardized[:, np.isfinite(standardized).all(axis=0)]
    left, singular, _ = np.linalg.svd(standardized, full_matrices=False)
    n_components = min(n_components, left.shape[1])
    return unit_variance(left[:, :n_components] * singular[:n_components])


def random_mixture(features: np.ndarray, n_outputs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_outputs`` random linear maps of ``features`` (standard normal weights), each of unit variance."""
    return unit_variance(features @ rng.standard_normal((features.shape[1], n_outputs)))


def simulate_voxels(
    activations: np.ndarray, controls: np.ndarray, simulation: dict[str, Any]
) -> tuple[np.ndarray, pd.DataFrame]:
    """Simulate voxels from activations and controls (see the module docstring)."""
    signal_fraction = simulation["signal_fraction"]
    control_fraction = simulation["control_fraction"]
    if signal_fraction + control_fraction > 1:
        raise DataError("simulation: signal_fraction + control_fraction must not exceed 1.")
    rng = np.random.default_rng(simulation["seed"])
    components = principal_components(activations, simulation["n_components"])
    n_total = simulation["n_subjects"] * simulation["n_voxels"]
    signal = random_mixture(components, n_total, rng)
    control = random_mixture(unit_variance(controls), n_total, rng)
    noise = rng.standard_normal((len(activations), n_total))
    voxels = (
        np.sqrt(signal_fraction) * signal
        + np.sqrt(control_fraction) * control
        + np.sqrt(1 - signal_fraction - control_fraction) * noise
    )
    subjects = np.repeat([f"sim-{s + 1:02d}" for s in range(simulation["n_subjects"])], simulation["n_voxels"])
    voxel_index = np.tile(np.arange(simulation["n_voxels"]), simulation["n_subjects"])
    neuroids = pd.DataFrame(
        {
            "neuroid_id": [f"{subject}.v{index:04d}" for subject, index in zip(subjects, voxel_index)],
            "subject": subjects,
            "roi": "simulated",
        }
    )
    return voxels.astype(np.float32), neuroids


def simulate_responses(
    block: dict[str, Any], stimuli_path: str | Path, out_path: str | Path, simulation_source: str | Path
) -> None:
    """Simulate the voxel responses from the source model's extracted activations."""
    simulation = block["simulation"]
    stimuli = io.read_stimuli(stimuli_path)
    ids, activations = io.read_activations(
        simulation_source, simulation["source_layer"], expected={"stimuli_sha256": io.stimuli_checksum(stimuli_path)}
    )
    activations = activations[
        io.align_rows(pd.Index(stimuli["stimulus_id"]), ids, "activations", str(simulation_source))
    ]
    controls = stimuli[["n_words", "position"]].to_numpy(dtype=np.float64)
    voxels, neuroids = simulate_voxels(activations.astype(np.float64), controls, simulation)
    io.write_responses(
        out_path,
        stimuli["stimulus_id"],
        voxels,
        neuroids,
        {
            "dataset_kind": "demo_fmri",
            "demo": True,
            "label": DEMO_LABEL,
            "simulation": simulation,
            "max_expected_r": float(np.sqrt(simulation["signal_fraction"] + simulation["control_fraction"])),
        },
    )
