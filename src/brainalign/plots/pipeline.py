"""The figure stage on files: score and analysis tables in, every figure (PNG and PDF) out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from brainalign import io
from brainalign.errors import DataError
from brainalign.plots.figures import draw_figures


def plot_figures(
    brain_path: str | Path,
    layers_path: str | Path,
    behavior_path: str | Path,
    effect_path: str | Path,
    models: Mapping[str, Any],
    demo: bool,
    figure_paths: Sequence[str | Path],
) -> None:
    """Draw every figure into the folder of ``figure_paths`` (PNG and PDF); refuse a missing one."""
    out_dir = Path(figure_paths[0]).parent
    written = draw_figures(
        io.read_tsv(brain_path),
        io.read_tsv(layers_path),
        io.read_tsv(behavior_path),
        Path(effect_path).parent,
        dict(models),
        out_dir,
        demo,
    )
    missing = [str(p) for p in figure_paths if Path(p) not in {Path(w) for w in written}]
    if missing:
        raise DataError(f"figures not drawn: {missing}")
