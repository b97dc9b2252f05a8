"""The aw2024 readout of a time series equals a naive per-word loop over word windows.

Toneva & Wehbe's pipeline (the authors' Harry Potter code) feeds each word with the
``W`` words ending with it and averages the hidden states of the last word's tokens. The
loop below runs one unbatched forward pass per word on the window's text, tokenized by the
tokenizer loaded from the model folder, and averages the hooked outputs over the tokens
whose characters reach into the last word (special tokens excluded); it checks that those
tokens decode to the word.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from models_reference import HOOKED, hidden_width, recorded_outputs
from models_reference import PAPER_BLOCKS as BLOCKS
from transformers import AutoTokenizer

from brainalign.errors import ConfigError, DataError, StaleFileError
from brainalign.io import read_activations, read_metadata, read_table, write_stimuli
from brainalign.models.extraction import extract_activations, state_sequences
from brainalign.models.extraction_options import complete_options, expected_metadata
from brainalign.models.fetch import fetch_model
from brainalign.models.loading import load_model, read_manifest

WINDOW = 4
GROUPS = {
    "run1": "Harry looked at Hermione, who was scribbling furiously on her parchment while Ron yawned".split(),
    "run2": "The café's windows glowed orange 1,234 owls".split(),
}
OPTIONS = {"batch_size": 3, "device": "cpu", "readout": "aw2024", "time_series": True, "word_window": WINDOW}


@torch.inference_mode()
def naive_window_loop(model, tokenizer, stimuli: pd.DataFrame, hooked: list[str], n_layers: int):
    """Per word: the hooked outputs averaged over its tokens in its window, and how many tokens it has."""
    states, n_tokens = np.zeros((n_layers, len(stimuli), hidden_width(model))), np.zeros(len(stimuli), dtype=int)
    with recorded_outputs(model, hooked, n_layers) as (names, captured):
        for _, group in stimuli.groupby("context_group"):
            group = group.sort_values("position")
            words = group["text"].tolist()
            for index, row in enumerate(group.index):
                text = " ".join(words[max(0, index - WINDOW + 1) : index + 1])
                tokens = tokenizer(
                    text, return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt"
                )
                word_start = len(text) - len(words[index])
                mine = [
                    position
                    for position, ((_, end), special) in enumerate(
                        zip(tokens["offset_mapping"][0].tolist(), tokens["special_tokens_mask"][0].tolist())
                    )
                    if not special and end > word_start
                ]
                assert tokenizer.decode(tokens["input_ids"][0, mine]).strip() == words[index]
                inputs = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
                if model.config.is_encoder_decoder:
                    inputs["decoder_input_ids"] = tokens["input_ids"]
                model(**inputs)
                for layer, name in enumerate(names):
                    states[layer, row] = captured[name][0, mine].double().mean(dim=0).numpy()
                n_tokens[row] = len(mine)
    return states, n_tokens


def _stimuli_table(groups: dict[str, list[str]]) -> pd.DataFrame:
    rows = [
        {
            "stimulus_id": f"{group}.w{i}",
            "context_group": group,
            "position": i,
            "text": word,
            "cv_group": group,
            "partition": "all",
        }
        for group, words in groups.items()
        for i, word in enumerate(words)
    ]
    return pd.DataFrame(rows[::-1])  # table order differs from position order: outputs follow the table


@pytest.fixture(scope="module")
def stimuli_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("stimuli") / "stimuli.parquet"
    write_stimuli(path, _stimuli_table(GROUPS), {"dataset": "test"})
    return str(path)


@pytest.fixture(scope="module", params=list(BLOCKS))
def reference(request, tmp_path_factory, stimuli_path):
    """The fetched model, its loaded form, and the naive loop's results."""
    name = request.param
    manifest = tmp_path_factory.mktemp("models") / name / "manifest.json"
    fetch_model(name, BLOCKS[name], manifest)
    loaded = load_model(read_manifest(manifest), BLOCKS[name], {"device": "cpu", "device_map": None})
    tokenizer = AutoTokenizer.from_pretrained(read_manifest(manifest)["folder"])
    states, n_tokens = naive_window_loop(
        loaded.model, tokenizer, read_table(stimuli_path), HOOKED[name], BLOCKS[name]["n_layers"]
    )
    return name, manifest, loaded, states, n_tokens


def _relative_error(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(found - expected)) / np.max(np.abs(expected)))


def test_features_equal_the_naive_window_loop(reference, stimuli_path, tmp_path):
    name, manifest, _, naive_states, n_tokens = reference
    assert n_tokens.min() >= 1 and n_tokens.max() > 1  # words of several tokens are averaged
    assert max(len(words) for words in GROUPS.values()) > WINDOW  # windows slide past the group's start
    block = BLOCKS[name]
    out = tmp_path / "activations.parquet"
    extract_activations(stimuli_path, manifest, block, OPTIONS, out)
    expected = expected_metadata(name, block, OPTIONS, stimuli_path, read_manifest(manifest))
    for layer in range(1, block["n_layers"] + 1):
        _, values = read_activations(out, layer, expected=expected)
        assert _relative_error(values, naive_states[layer - 1]) < 1e-5, f"{name} layer {layer}"


def test_metadata_records_the_word_window(reference, stimuli_path, tmp_path):
    name, manifest, _, _, _ = reference
    out = tmp_path / "activations.parquet"
    extract_activations(stimuli_path, manifest, BLOCKS[name], OPTIONS, out)
    metadata = read_metadata(out)
    assert f"the {WINDOW} words of its context group ending with it" in metadata["context_policy"]
    assert "averaged over the tokens of the last word" in metadata["context_policy"]
    assert metadata["pooling"] == "mean of the last word's tokens"
    assert metadata["hooked_modules"] == [pattern.format("{block}") for pattern in HOOKED[name]]
    other_window = expected_metadata(
        name, BLOCKS[name], {**OPTIONS, "word_window": WINDOW + 1}, stimuli_path, read_manifest(manifest)
    )
    with pytest.raises(StaleFileError, match="context_policy"):
        read_activations(out, 1, expected=other_window)


def test_each_word_is_one_sequence_read_at_its_own_tokens(reference, stimuli_path):
    _, _, loaded, _, n_tokens = reference
    stimuli = read_table(stimuli_path)
    sequences = state_sequences(loaded, stimuli, "raw", complete_options(OPTIONS))
    assert len(sequences) == len(stimuli)
    for sequence in sequences:
        assert len(set(sequence.owners)) == 1
        assert len(sequence.positions) == n_tokens[sequence.owners[0]]


def test_a_blank_word_is_refused(reference):
    _, _, loaded, _, _ = reference
    stimuli = _stimuli_table({"run1": ["Harry", " ", "looked"]})
    with pytest.raises(DataError, match=r"unit 'run1\.w1'.*blank.*Remove blank words"):
        state_sequences(loaded, stimuli, "raw", complete_options(OPTIONS))


def test_a_window_over_the_tokenizer_limit_is_refused(reference):
    _, _, loaded, _, _ = reference
    stimuli = _stimuli_table({"run1": GROUPS["run1"] * 4})
    with pytest.raises(ConfigError, match=r"model_max_length=64\. Lower extraction\.word_window \(now 100\)"):
        state_sequences(loaded, stimuli, "raw", complete_options({**OPTIONS, "word_window": 100}))


def test_word_window_must_hold_the_word():
    with pytest.raises(ConfigError, match="word_window must be at least 1"):
        complete_options({"word_window": 0})
