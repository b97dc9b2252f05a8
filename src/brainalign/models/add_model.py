"""``brainalign add-model``: register a checkpoint in the config from what it states itself.

The kind (causal or seq2seq), the number of layers (the transformer blocks extraction reads,
counted the same way) and the parameter count come from the checkpoint's config: the model is
built on PyTorch's meta device, so no weights are read or allocated. The entry is appended to
the config file's ``models`` section as text, keeping the file's comments, and validated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from brainalign.config import validate_config
from brainalign.errors import ConfigError, ModelError
from brainalign.io import write_text

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass
class CheckpointFacts:
    """What a checkpoint states about itself."""

    kind: str
    n_layers: int
    parameters: int
    family: str


def source_block(source: str, revision: str) -> dict[str, Any]:
    """The config ``source`` of a hub id, a local snapshot folder or a GGUF file."""
    path = Path(source)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(
                f"{source}: no such GGUF file. Give the path of a .gguf file, a snapshot folder or a hub id."
            )
        return {"type": "gguf", "path": str(path.resolve())}
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"{source} is a folder without config.json: give a folder written by save_pretrained or "
                "snapshot_download, a .gguf file, or a hub id (owner/name)."
            )
        return {"type": "local", "path": str(path.resolve())}
    if re.match(r"^[\w.\-]+/[\w.\-]+$", source) and not path.exists():
        return {"type": "hub", "hf_id": source, "revision": revision}
    raise ModelError(f"{source}: not a snapshot folder, a .gguf file or a hub id (owner/name).")


def read_model_config(source: Mapping[str, Any]):
    """The transformers config of a source (the hub's config.json is downloaded, nothing else)."""
    from transformers import AutoConfig

    try:
        if source["type"] == "hub":
            from huggingface_hub import hf_hub_download

            from brainalign.models.revisions import hub_error

            try:
                config_file = hf_hub_download(source["hf_id"], "config.json", revision=source["revision"])
            except Exception as error:  # the hub client raises many kinds; each ends in one message
                raise hub_error(source["hf_id"], source["hf_id"], source["revision"], error) from error
            return AutoConfig.from_pretrained(Path(config_file).parent, local_files_only=True)
        if source["type"] == "gguf":
            path = Path(source["path"])
            return AutoConfig.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        return AutoConfig.from_pretrained(source["path"], local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"cannot read the model config of {source} ({type(error).__name__}: {error}).") from error


def checkpoint_facts(model_config) -> CheckpointFacts:
    """Kind, layers (as extraction counts them, seq2seq under the paper convention) and parameters."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from brainalign.models.loading import find_blocks

    if getattr(model_config, "auto_map", None):
        raise ModelError(
            f"the {model_config.model_type!r} checkpoint needs its own code (its config has auto_map): add it by hand "
            "with `trust_remote_code: true` after reading that code, and set kind, n_layers and parameters."
        )
    seq2seq = bool(getattr(model_config, "is_encoder_decoder", False))
    model_class = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    try:
        with torch.device("meta"):
            model = model_class.from_config(model_config)
    except ValueError as error:
        raise ModelError(
            f"transformers cannot build a {model_config.model_type!r} language model ({error})."
        ) from error
    if seq2seq:
        blocks = find_blocks(model.get_encoder()) + find_blocks(model.get_decoder())
    else:
        blocks = find_blocks(model.base_model)
    return CheckpointFacts(
        kind="seq2seq" if seq2seq else "causal",
        n_layers=len(blocks),
        parameters=sum(p.numel() for p in model.parameters()),
        family=str(model_config.model_type),
    )


def model_entry(
    name: str, source: Mapping[str, Any], facts: CheckpointFacts, origin: str, options: Mapping[str, Any]
) -> str:
    """The YAML text of the config entry, indented for the ``models`` section."""
    block: dict[str, Any] = {
        "source": dict(source),
        "kind": facts.kind,
        "n_layers": facts.n_layers,
        "family": options.get("family") or facts.family,
        "parameters": facts.parameters,
    }
    if options.get("base"):
        block.update(instruction_tuned=True, base=options["base"])
    elif options.get("instruction_tuned"):
        block["instruction_tuned"] = True
    body = yaml.safe_dump({name: block}, sort_keys=False, default_flow_style=None, width=1000)
    comment = (
        f"    # Added by `brainalign add-model {origin}`: kind, n_layers and parameters read from the checkpoint.\n"
    )
    lines = body.splitlines()
    return "".join(["  " + lines[0] + "\n", comment, *("  " + line + "\n" for line in lines[1:])])


def _section_end(lines: list[str], key: str) -> int:
    """Index of the first line after the top-level ``key:`` section (trailing blank and comment lines excluded)."""
    start = next((i for i, line in enumerate(lines) if line.rstrip() == f"{key}:"), None)
    if start is None:
        raise ConfigError(f"the config has no top-level `{key}:` section.")
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ", "#", "\n")), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return end


def _add_to_suite(text: str, suite: str, name: str) -> str:
    """Append ``name`` to the flow-style ``models: [...]`` list of ``suites.<suite>``."""
    suite_start = re.search(rf"(?m)^suites:\s*$[\s\S]*?^  {re.escape(suite)}:\s*$", text)
    if suite_start is None:
        raise ConfigError(f"the config has no suite {suite!r} under `suites:`.")
    models_list = re.compile(r"(?m)^    models:\s*\[([^\]]*)\]")
    match = models_list.search(text, suite_start.end())
    if match is None:
        raise ConfigError(f"suites.{suite}.models is not a `[...]` list; add {name!r} to it by hand.")
    inside = match.group(1).rstrip()
    separator = ", " if inside.strip() else ""
    return text[: match.start(1)] + inside + separator + name + text[match.end(1) :]


def add_model(config_path: str | Path, source: str, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Read a checkpoint's facts and append its entry (and suite membership) to the config file.

    Parameters
    ----------
    config_path : path
        The config YAML, edited in place.
    source : str
        A hub id, a snapshot folder or a GGUF file.
    name : str
        The model's config key.
    options : mapping
        ``revision`` (hub), ``family``, ``base``, ``instruction_tuned``, ``suite``.

    Returns
    -------
    dict
        The added block as validated (defaults filled).
    """
    config_path = Path(config_path)
    text = config_path.read_text()
    config = yaml.safe_load(text)
    if not _NAME.match(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (it becomes part of file paths).")
    if name in config.get("models", {}):
        raise ConfigError(f"{config_path}: a model named {name!r} exists already; choose another --name.")
    base = options.get("base")
    if base and base not in config.get("models", {}):
        raise ConfigError(f"--base {base!r} is not a model of {config_path}; add the base first.")
    block_source = source_block(source, options.get("revision") or "main")
    facts = checkpoint_facts(read_model_config(block_source))
    lines = text.splitlines(keepends=True)
    end = _section_end(lines, "models")
    if lines[end - 1] and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    edited = "".join([*lines[:end], model_entry(name, block_source, facts, source, options), *lines[end:]])
    if options.get("suite"):
        edited = _add_to_suite(edited, options["suite"], name)
    parsed = validate_config(yaml.safe_load(edited))
    write_text(config_path, edited)
    return parsed["models"][name]
