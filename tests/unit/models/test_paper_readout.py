"""The aw2024 readout equals a naive per-part loop written from the paper's code.

The reference (``brainscore_language.model_helpers.huggingface.HuggingfaceSubject``,
commit 91c88b1) tokenizes every part's context afresh with ``truncation=True`` and a
tokenizer built with ``truncation_side='left'``, runs one forward pass per part
(``decoder_input_ids = input_ids`` for T5) and reads the hooked module's output at the last
position; ``estimate_reading_times`` sums the cross-entropy of the tokens it counts as new.
The loops below copy that code (one pass per part, no batching, the tokenizer loaded from
the model folder as the reference loads it); the tokenizers' limit is 64 tokens, so the
long group is left-truncated.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from models_reference import HOOKED, hidden_width, recorded_outputs
from models_reference import PAPER_BLOCKS as BLOCKS
from transformers import AutoTokenizer

from brainalign.io import read_activations, read_metadata, read_table, write_stimuli
from brainalign.models.extraction import extract_activations
from brainalign.models.extraction_options import expected_metadata
from brainalign.models.fetch import fetch_model
from brainalign.models.loading import load_model, read_manifest
from brainalign.models.paper_readout import (
    PaperContexts,
    group_contexts,
    paper_state_sequences,
    plan_sequences,
    state_reads,
)
from brainalign.models.surprisal import compute_surprisal

WORDS = (
    "If you were to journey to the North of England , you would come to a valley café "
    "1,234 that's surrounded by moors as high as mountains . It is in this valley where you "
    "would find the city of Bradford."
).split()
SENTENCES = [
    "Tulips are bright flowers.",
    "The gardener didn't plant them!",
    "They grew anyway.",
    "Numbers: 3.14 (pi).",
]

OPTIONS = {"batch_size": 3, "device": "cpu", "readout": "aw2024"}


def reference_prepare_context(context_parts: list[str]) -> str:
    """``brainscore_language.model_helpers.preprocessing.prepare_context``."""
    context_parts = [part for part in context_parts if part.strip() != ""]
    context = " ".join(context_parts)
    return re.sub(r"\s+([.,!?;:])", r"\1", context)


def reference_tokenize(tokenizer, model, context: str, previous: int):
    """``_tokenize_overflow_aware`` on a fast tokenizer: (model inputs, new tokens, running total)."""
    tokens = tokenizer(context, truncation=True, return_tensors="pt", return_overflowing_tokens=False)
    overflowing = np.array(tokens.encodings).item().overflowing
    n_overflowing = 0 if not overflowing else sum(len(overflow) for overflow in overflowing)
    current = tokens["input_ids"][..., previous - n_overflowing :]
    total = tokens["input_ids"].shape[-1] + n_overflowing
    inputs = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = tokens["input_ids"]
    return inputs, current, total


def reference_reading_time(logits: torch.Tensor, current: torch.Tensor) -> float:
    """``estimate_reading_times``."""
    logits = logits.squeeze(dim=0)
    if logits.shape[0] <= 1:
        return np.nan
    predicted_logits = logits[-current.shape[-1] - 1 : -1, :]
    actual_tokens = current.squeeze(dim=0)
    if actual_tokens.shape[0] == predicted_logits.shape[0] + 1:
        actual_tokens = actual_tokens[1:]
    return float(F.cross_entropy(predicted_logits, actual_tokens, reduction="sum") / np.log(2))


def _groups(stimuli: pd.DataFrame):
    for _, group in stimuli.groupby("context_group", sort=False):
        group = group.sort_values("position")
        yield group.index.to_numpy(), group["text"].tolist()


@torch.inference_mode()
def naive_paper_loop(model, tokenizer, stimuli: pd.DataFrame, hooked: list[str], n_layers: int):
    """Per part: (input ids, hooked outputs at the last position per layer, reading time)."""
    ids, states, bits = {}, np.zeros((n_layers, len(stimuli), hidden_width(model))), np.zeros(len(stimuli))
    with recorded_outputs(model, hooked, n_layers) as (names, captured):
        for rows, texts in _groups(stimuli):
            previous = 0
            for part, row in enumerate(rows):
                inputs, current, previous = reference_tokenize(
                    tokenizer, model, reference_prepare_context(texts[: part + 1]), previous
                )
                output = model(**inputs)
                ids[row] = inputs["input_ids"][0].numpy()
                for layer, name in enumerate(names):
                    states[layer, row] = captured[name][0, -1].float().numpy()
                bits[row] = reference_reading_time(output.logits, current)
    return ids, states, bits


@pytest.fixture(scope="module")
def stimuli_path(tmp_path_factory) -> str:
    long_story = WORDS * 2  # well over the tokenizers' 64-token limit
    rows = [
        {
            "stimulus_id": f"w{i}",
            "context_group": "story",
            "position": i,
            "text": w,
            "cv_group": "a",
            "partition": "all",
        }
        for i, w in enumerate(long_story)
    ]
    order = [2, 0, 3, 1]  # table order differs from position order: outputs follow the table
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
def reference(request, tmp_path_factory, stimuli_path):
    """The fetched model, its loaded form, and the naive loop's results."""
    name = request.param
    manifest = tmp_path_factory.mktemp("models") / name / "manifest.json"
    fetch_model(name, BLOCKS[name], manifest)
    loaded = load_model(read_manifest(manifest), BLOCKS[name], {"device": "cpu", "device_map": None})
    tokenizer = AutoTokenizer.from_pretrained(read_manifest(manifest)["folder"], truncation_side="left")
    assert tokenizer.model_max_length == 64
    stimuli = read_table(stimuli_path)
    ids, states, bits = naive_paper_loop(loaded.model, tokenizer, stimuli, HOOKED[name], BLOCKS[name]["n_layers"])
    return name, manifest, loaded, ids, states, bits


def _relative_error(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(found - expected)) / np.max(np.abs(expected)))


def test_each_feature_reads_the_reference_input_ids(reference, stimuli_path):
    name, _, loaded, naive_ids, _, _ = reference
    stimuli = read_table(stimuli_path)
    sequences = paper_state_sequences(loaded, stimuli, "raw")
    read = {}
    for sequence in sequences:
        for position, owner in zip(sequence.positions, sequence.owners):
            # A causal state depends on the ids up to its position; T5's encoder sees them all.
            seen = sequence.input_ids[: position + 1] if loaded.kind == "causal" else sequence.input_ids
            assert position == len(seen) - 1
            read[owner] = seen
    assert sorted(read) == list(range(len(stimuli)))
    for row, ids in naive_ids.items():
        np.testing.assert_array_equal(read[row], ids, err_msg=f"{name}: unit {stimuli['stimulus_id'][row]}")
    assert max(len(ids) for ids in naive_ids.values()) == 64  # the long group is truncated
    if loaded.kind == "causal":  # one shared pass serves the parts whose ids are a prefix
        assert len(sequences) < len(stimuli)


def test_truncated_parts_run_their_own_context(reference, stimuli_path):
    _, _, loaded, _, _, _ = reference
    if loaded.kind == "seq2seq":
        pytest.skip("every T5 part runs its own context (EOS ends each, and the encoder is bidirectional)")
    stimuli = read_table(stimuli_path)
    own = 0
    for contexts, _, _ in group_contexts(stimuli, loaded, "raw"):
        for part, ids in enumerate(contexts.ids):
            # The tiny tokenizers never merge across a part boundary: only truncation breaks the prefix.
            assert contexts.is_prefix(part) or len(ids) == 64
            own += not contexts.is_prefix(part)
    assert own > 0


def test_a_boundary_whose_tokens_differ_runs_its_own_context():
    """Part 1's ids end with a token the whole group's ids split ("flowers" + "," merged)."""
    whole = np.array([1, 10, 11, 12, 13, 14])
    ids = [np.array([1, 10]), np.array([1, 10, 99]), np.array([1, 10, 11, 12, 13, 14])]
    contexts = PaperContexts(ids, np.array([2, 1, 3]), whole)
    reads = state_reads(contexts, ["a", "b", "c"])
    owners = np.array([7, 5, 6])
    shared, own = plan_sequences(contexts, reads, owners, share_prefixes=True)
    np.testing.assert_array_equal(shared.input_ids, whole)
    np.testing.assert_array_equal(shared.positions, [1, 5])
    np.testing.assert_array_equal(shared.owners, [7, 6])
    np.testing.assert_array_equal(own.input_ids, ids[1])
    np.testing.assert_array_equal(own.positions, [2])
    assert len(plan_sequences(contexts, reads, owners, share_prefixes=False)) == 3


def test_features_equal_the_reference(reference, stimuli_path, tmp_path):
    name, manifest, _, _, naive_states, _ = reference
    block = BLOCKS[name]
    out = tmp_path / "activations.parquet"
    extract_activations(stimuli_path, manifest, block, OPTIONS, out)
    expected = expected_metadata(name, block, OPTIONS, stimuli_path, read_manifest(manifest))
    for layer in range(1, block["n_layers"] + 1):
        _, values = read_activations(out, layer, expected=expected)
        assert _relative_error(values, naive_states[layer - 1]) < 1e-5, f"{name} layer {layer}"
    metadata = read_metadata(out)
    assert metadata["readout"] == "aw2024"
    assert metadata["hooked_modules"] == [p.format("{block}") for p in HOOKED[name]]
    assert metadata["truncation"] == "left, at the tokenizer's model_max_length=64 tokens"


def test_surprisal_equals_the_reference(reference, stimuli_path, tmp_path):
    name, manifest, _, _, _, naive_bits = reference
    out = tmp_path / "surprisal.parquet"
    compute_surprisal(stimuli_path, manifest, BLOCKS[name], OPTIONS, out)
    table = read_table(out)
    np.testing.assert_array_equal(table["surprisal_bits"].isna(), np.isnan(naive_bits))
    defined = ~np.isnan(naive_bits)
    assert _relative_error(table["surprisal_bits"].to_numpy()[defined], naive_bits[defined]) < 1e-5
    assert read_metadata(out)["readout"] == "aw2024"


def test_one_load_writes_both_readouts(reference, stimuli_path, tmp_path):
    name, manifest, _, _, naive_states, _ = reference
    outputs = {"aw2024": tmp_path / "a.parquet", "unit": tmp_path / "u.parquet"}
    extract_activations(stimuli_path, manifest, BLOCKS[name], {**OPTIONS, "readout": "unit"}, outputs)
    assert read_metadata(outputs["unit"])["readout"] == "unit"
    assert read_metadata(outputs["unit"])["hooked_module"] == "block"
    _, values = read_activations(outputs["aw2024"], 1)
    assert _relative_error(values, naive_states[0]) < 1e-5
