"""GPU extraction: bf16 on CUDA agrees with float32 on the CPU (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from brainalign.io import read_activations, write_stimuli
from brainalign.models.extraction import extract_activations
from brainalign.models.fetch import fetch_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BLOCK = {
    "source": {
        "type": "random",
        "architecture": "llama",
        "seed": 0,
        "config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4},
    },
    "kind": "causal",
    "n_layers": 2,
    "max_length": 48,
}
WORDS = "If you were to journey to the North of England you would come to a valley".split() * 4


@pytest.mark.parametrize("device_map", [None, "auto"])
def test_bf16_gpu_matches_float32_cpu(tmp_path, device_map):
    stimuli = tmp_path / "stimuli.parquet"
    frame = pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(len(WORDS))],
            "context_group": "g",
            "position": range(len(WORDS)),
            "text": WORDS,
            "cv_group": "g",
            "partition": "all",
        }
    )
    write_stimuli(stimuli, frame, {})
    manifest = tmp_path / "model" / "manifest.json"
    fetch_model("tiny", BLOCK, manifest)
    options = {"min_context_tokens": 16}
    extract_activations(
        stimuli, manifest, {**BLOCK, "dtype": "float32"}, {**options, "device": "cpu"}, tmp_path / "cpu.parquet"
    )
    extract_activations(
        stimuli,
        manifest,
        {**BLOCK, "dtype": "bfloat16"},
        {**options, "device": "cuda", "device_map": device_map},
        tmp_path / "gpu.parquet",
    )
    for layer in (1, 2):
        reference = read_activations(tmp_path / "cpu.parquet", layer)[1]
        found = read_activations(tmp_path / "gpu.parquet", layer)[1]
        assert np.abs(found - reference).max() / np.abs(reference).max() < 5e-2
