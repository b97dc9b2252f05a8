"""Batched single-pass extraction and surprisal equal the naive per-prefix computation.

Tiny random GPT-2 (byte-level BPE), LLaMA (SentencePiece-style with BOS) and T5 models;
their tokenizers split most words into several tokens. Long streams exceed the context
(max_length below the stream length) so the sliding windows are exercised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from models_reference import naive_states, naive_surprisal

from brainalign.errors import ConfigError
from brainalign.io import read_activations, read_metadata, read_table, write_stimuli
from brainalign.models.extraction import extract_activations
from brainalign.models.extraction_options import expected_metadata
from brainalign.models.fetch import fetch_model
from brainalign.models.loading import load_model, read_manifest
from brainalign.models.surprisal import compute_surprisal

WORDS = (
    "If you were to journey to the North of England, you would come to a valley café "
    "1,234 that's surrounded by moors as high as mountains. It is in this valley where you "
    "would find the city of Bradford."
).split()
SENTENCES = [
    "Tulips are bright flowers.",
    "The gardener didn't plant them!",
    "They grew anyway.",
    "Numbers: 3.14 (pi).",
]

BLOCKS = {
    "gpt2": {
        "source": {
            "type": "random",
            "architecture": "gpt2",
            "seed": 0,
            "config": {"n_embd": 32, "n_layer": 2, "n_head": 2},
        },
        "kind": "causal",
        "n_layers": 2,
        "max_length": 40,
        "dtype": "float32",
    },
    "llama": {
        "source": {
            "type": "random",
            "architecture": "llama",
            "seed": 1,
            "config": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 3,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            },
        },
        "kind": "causal",
        "n_layers": 3,
        "max_length": 40,
        "dtype": "float32",
    },
    "t5": {
        "source": {
            "type": "random",
            "architecture": "t5",
            "seed": 2,
            "config": {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "d_kv": 8},
        },
        "kind": "seq2seq",
        "n_layers": 4,
        "max_length": 30,
        "dtype": "float32",
    },
}
OPTIONS = {"min_context_tokens": 8, "batch_size": 3, "device": "cpu"}


@pytest.fixture(scope="module")
def stimuli_path(tmp_path_factory) -> str:
    rows = [
        {
            "stimulus_id": f"w{i}",
            "context_group": "story",
            "position": i,
            "text": w,
            "cv_group": "a",
            "partition": "all",
        }
        for i, w in enumerate(WORDS)
    ]
    # Passage rows come first in the table but in shuffled position order: outputs follow table order.
    order = [2, 0, 3, 1]
    rows = [
        {
            "stimulus_id": f"s{i}",
            "context_group": "passage",
            "position": i,
            "text": SENTENCES[i],
            "cv_group": "b",
            "partition": "all",
        }
        for i in order
    ] + rows
    path = tmp_path_factory.mktemp("stimuli") / "stimuli.parquet"
    write_stimuli(path, pd.DataFrame(rows), {"dataset": "test"})
    return str(path)


@pytest.fixture(scope="module", params=list(BLOCKS))
def fetched(request, tmp_path_factory):
    name = request.param
    manifest = tmp_path_factory.mktemp("models") / name / "manifest.json"
    fetch_model(name, BLOCKS[name], manifest)
    loaded = load_model(read_manifest(manifest), BLOCKS[name], {"device": "cpu", "device_map": None})
    return name, manifest, loaded


def _relative_error(found: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(found - reference)) / np.max(np.abs(reference)))


def test_activations_equal_naive_per_prefix(fetched, stimuli_path, tmp_path):
    name, manifest, loaded = fetched
    block = BLOCKS[name]
    out = tmp_path / "activations.parquet"
    extract_activations(stimuli_path, manifest, block, OPTIONS, out)
    stimuli = read_table(stimuli_path)
    seq2seq = block["kind"] == "seq2seq"
    reference = naive_states(
        loaded.model, loaded.tokenizer, stimuli, block["max_length"], OPTIONS["min_context_tokens"], seq2seq
    )
    assert len(WORDS) * 2 > block["max_length"]  # the word stream does not fit in one window
    for layer in range(1, block["n_layers"] + 1):
        ids, values = read_activations(
            out, layer, expected=expected_metadata(name, block, OPTIONS, stimuli_path, read_manifest(manifest))
        )
        assert list(ids) == stimuli["stimulus_id"].tolist()
        assert _relative_error(values, reference[layer - 1]) < 1e-4, f"layer {layer}"


def test_surprisal_equals_naive_per_prefix(fetched, stimuli_path, tmp_path):
    name, manifest, loaded = fetched
    block = BLOCKS[name]
    out = tmp_path / "surprisal.parquet"
    compute_surprisal(stimuli_path, manifest, block, OPTIONS, out)
    table = read_table(out)
    stimuli = read_table(stimuli_path)
    reference = naive_surprisal(
        loaded.model,
        loaded.tokenizer,
        stimuli,
        block["max_length"],
        OPTIONS["min_context_tokens"],
        block["kind"] == "seq2seq",
    )
    assert table["stimulus_id"].tolist() == stimuli["stimulus_id"].tolist()
    first = stimuli["position"].to_numpy() == 0
    assert table["surprisal_bits"][first].isna().all()
    np.testing.assert_allclose(table["surprisal_bits"][~first], reference[~first], rtol=1e-4)
    assert (table["n_tokens"] >= 1).all() and table["n_tokens"].max() > 1  # multi-token units exist
    assert read_metadata(out)["model"] == name


def test_window_context_changes_states(fetched, stimuli_path, tmp_path):
    """Guards the reference: with a wider context the far units' states do change."""
    name, manifest, loaded = fetched
    if BLOCKS[name]["kind"] == "seq2seq":
        pytest.skip("seq2seq prefixes are truncated, not windowed")
    narrow, wide = tmp_path / "narrow.parquet", tmp_path / "wide.parquet"
    extract_activations(stimuli_path, manifest, BLOCKS[name], OPTIONS, narrow)
    extract_activations(stimuli_path, manifest, {**BLOCKS[name], "max_length": 64}, OPTIONS, wide)
    _, a = read_activations(narrow, 1)
    _, b = read_activations(wide, 1)
    assert _relative_error(a, b) > 1e-3


def test_encoder_only_layers(stimuli_path, tmp_path):
    block = {**BLOCKS["t5"], "seq2seq_layers": "encoder", "n_layers": 2}
    manifest = tmp_path / "t5" / "manifest.json"
    fetch_model("t5", block, manifest)
    out = tmp_path / "activations.parquet"
    extract_activations(stimuli_path, manifest, block, OPTIONS, out)
    paper = tmp_path / "paper.parquet"
    extract_activations(stimuli_path, manifest, BLOCKS["t5"], OPTIONS, paper)
    for layer in (1, 2):  # the encoder blocks are the paper convention's first layers
        np.testing.assert_array_equal(read_activations(out, layer)[1], read_activations(paper, layer)[1])
    with pytest.raises(Exception, match="no layer 3"):
        read_activations(out, 3)


def test_n_layers_mismatch_names_the_right_value(stimuli_path, tmp_path):
    block = {**BLOCKS["llama"], "n_layers": 30}
    manifest = tmp_path / "llama" / "manifest.json"
    fetch_model("llama", block, manifest)
    with pytest.raises(ConfigError, match="Set n_layers: 3"):
        extract_activations(stimuli_path, manifest, block, OPTIONS, tmp_path / "a.parquet")
    assert not (tmp_path / "a.parquet").exists()


def test_stale_file_is_refused(fetched, stimuli_path, tmp_path):
    name, manifest, _ = fetched
    out = tmp_path / "activations.parquet"
    extract_activations(stimuli_path, manifest, BLOCKS[name], OPTIONS, out)
    other = expected_metadata(
        name, {**BLOCKS[name], "prompt_policy": "template"}, OPTIONS, stimuli_path, read_manifest(manifest)
    )
    with pytest.raises(Exception, match="prompt_policy"):
        read_activations(out, 1, expected=other)
