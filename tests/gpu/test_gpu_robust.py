"""GPU robust fits: a Pereira- and a Wehbe-sized layer on CUDA (himalaya's torch_cuda backend)
give the CPU fit's scores; the times of both are printed (skipped without CUDA).

Run with ``pytest tests/gpu/test_gpu_robust.py -s`` to see the timings."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brainalign.encoding.robust import controls_only_fit, fit_robust

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_robust import TOLERANCE, compare_fits, pereira_like, wehbe_like  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

N_NEUROIDS = 2000
"""Neuroids per layer: enough for the GPU to pay off, few enough for the CPU side to take minutes."""


@pytest.mark.parametrize("make", [pereira_like, wehbe_like], ids=["pereira", "wehbe"])
def test_a_gpu_layer_fit_gives_the_cpu_fit(make):
    features, responses, stimuli, rows, flags = make(np.random.default_rng(0), 4096, N_NEUROIDS)
    neuroids = pd.DataFrame({"neuroid_id": np.arange(N_NEUROIDS).astype(str), "subject": "s", "roi": "x"})
    options = {**flags, "n_bootstrap": 0, "n_permutations": 0}
    fits, seconds = {}, {}
    for device in ("cpu", "cuda"):
        controls = controls_only_fit(stimuli, responses, rows, neuroids, {**options, "device": device})
        start = time.perf_counter()
        fits[device] = fit_robust(features, responses, stimuli, rows, neuroids, {**options, "device": device}, controls)
        seconds[device] = time.perf_counter() - start
    differences = compare_fits(fits["cpu"], fits["cuda"])
    print(
        f"{make.__name__}: layer fit {seconds['cpu']:.1f} s on the CPU, {seconds['cuda']:.1f} s on the GPU; "
        f"{differences}"
    )
    assert all(differences[key] <= limit for key, limit in TOLERANCE.items()), differences
