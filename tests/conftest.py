"""Shared fixtures: paths to the real reference data, skipped cleanly where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Folder with the real reference data (``BRAINALIGN_SHARED_DATA`` or ``../shared/data``)."""
    return Path(os.environ.get("BRAINALIGN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real reference data folder; skips the test where it is absent."""
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"real reference data not found at {folder} (set BRAINALIGN_SHARED_DATA)")
    return folder


@pytest.fixture(scope="session")
def naturalstories(shared_data: Path) -> Path:
    """The Natural Stories folder of the reference data."""
    folder = shared_data / "naturalstories"
    if not (folder / "all_stories.tok").exists():
        pytest.skip(f"Natural Stories files not found in {folder}")
    return folder


@pytest.fixture(scope="session")
def pereira_stimuli(shared_data: Path) -> Path:
    """Brain-Score's Pereira2018 stimulus set CSV."""
    path = shared_data / "pereira2018" / "stimulus_set.csv"
    if not path.exists():
        pytest.skip(f"Pereira2018 stimulus set not found at {path}")
    return path


@pytest.fixture(scope="session")
def wehbe_masks(shared_data: Path) -> Path:
    """The Wehbe2014 language-ROI masks (npz, pickle-free)."""
    path = shared_data / "wehbe2014" / "language_roi_masks.npz"
    if not path.exists():
        pytest.skip(f"Wehbe2014 ROI masks not found at {path}")
    return path
