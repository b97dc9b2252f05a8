"""The extract and surprisal subcommands on a local model folder."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from brainalign.io import read_activations, read_metadata, read_table, write_stimuli
from brainalign.models import cli
from brainalign.models.fetch import fetch_model, locate_model
from brainalign.models.loading import load_model, read_manifest
from brainalign.models.surprisal import surprisal_table

WORDS = ["The", "gardener", "didn't", "plant", "tulips,", "but", "they", "grew."]
BLOCK = {
    "source": {
        "type": "random",
        "architecture": "llama",
        "seed": 3,
        "config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2},
    },
    "kind": "causal",
    "n_layers": 2,
}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    manifest = tmp_path_factory.mktemp("model") / "manifest.json"
    fetch_model("tiny", BLOCK, manifest)
    return manifest.parent


def _run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


@pytest.mark.parametrize("readout", ["unit", "aw2024"])
def test_surprisal_command_matches_library(model_folder, tmp_path, readout):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n")
    out = tmp_path / "surprisal.parquet"
    _run(
        [
            "surprisal",
            "--model",
            str(model_folder),
            "--words",
            str(words),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--readout",
            readout,
        ]
    )
    table = read_table(out)
    assert table["word"].tolist() == WORDS
    assert read_metadata(out)["readout"] == readout
    loaded = load_model(read_manifest(model_folder / "manifest.json"), BLOCK, {"device": "cpu"})
    stimuli = cli.read_words(words)
    options = {"readout": readout, "batch_size": 8, "min_context_tokens": None, "show_progress": False}
    expected = surprisal_table(loaded, stimuli, "raw", options)
    np.testing.assert_allclose(table["surprisal_bits"], expected["surprisal_bits"], rtol=1e-5)
    # The unit readout has no context for the first word; LLaMA's BOS gives the paper's one.
    assert np.isnan(table["surprisal_bits"][0]) == (readout == "unit")
    assert np.isfinite(table["surprisal_bits"][1:]).all()


@pytest.mark.parametrize("readout", ["unit", "aw2024"])
def test_extract_command_writes_every_layer(model_folder, tmp_path, readout):
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
    out = tmp_path / "activations.parquet"
    _run(
        [
            "extract",
            "--model",
            str(model_folder),
            "--stimuli",
            str(stimuli),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--readout",
            readout,
        ]
    )
    for layer in (1, 2):
        ids, values = read_activations(out, layer)
        assert values.shape == (len(WORDS), 16) and list(ids) == frame["stimulus_id"].tolist()
    assert read_metadata(out)["readout"] == readout


def test_extract_command_reads_word_windows_of_a_time_series(model_folder, tmp_path):
    stimuli = tmp_path / "stimuli.parquet"
    frame = pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(len(WORDS))],
            "context_group": "run1",
            "position": range(len(WORDS)),
            "text": WORDS,
            "cv_group": "run1",
            "partition": "all",
        }
    )
    write_stimuli(stimuli, frame, {})
    out = tmp_path / "activations.parquet"
    _run(
        [
            "extract",
            "--model",
            str(model_folder),
            "--stimuli",
            str(stimuli),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--readout",
            "aw2024",
            "--time-series",
            "--word-window",
            "3",
        ]
    )
    metadata = read_metadata(out)
    assert "the 3 words of its context group ending with it" in metadata["context_policy"]
    assert metadata["pooling"] == "mean of the last word's tokens"


def test_missing_words_file(tmp_path):
    with pytest.raises(Exception, match="one word per line"):
        cli.read_words(tmp_path / "none.txt")


def test_a_gguf_file_is_located_as_the_workflow_locates_it(tmp_path):
    gguf = tmp_path / "model.Q4.gguf"
    gguf.write_bytes(b"GGUF not really")
    manifest, source = cli.model_location(str(gguf), None)
    # the workflow's fetch_model locates it so, then converts it to a snapshot
    workflow_manifest = locate_model("model.Q4", source, tmp_path / "fetched")
    assert source == {"type": "gguf", "path": str(gguf)}
    for key in ("folder", "gguf_file", "revision", "sha256"):
        assert manifest[key] == workflow_manifest[key]
    assert manifest["sha256"] is not None
