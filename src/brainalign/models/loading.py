"""Load a fetched model offline: dtype, device, context length and transformer blocks.

Models load with ``local_files_only=True`` from the folder (and GGUF file) recorded by
:func:`brainalign.models.fetch.fetch_model`; ``trust_remote_code`` is passed only when the
model's config block sets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brainalign.errors import ConfigError, ModelError
from brainalign.io import read_json

KINDS = ("causal", "seq2seq")
SEQ2SEQ_LAYERS = ("paper", "encoder")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_BLOCK_LIST_NAMES = ("layers", "h", "block", "blocks", "layer")
_UNBOUNDED_LENGTH = 1_000_000


@dataclass
class LoadedModel:
    """A model ready to run, with the facts recorded in output metadata."""

    name: str
    model: nn.Module
    tokenizer: Any
    kind: str
    max_length: int
    blocks: list[nn.Module]
    n_encoder_layers: int = 0
    tokenizer_max_length: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def input_device(self) -> torch.device:
        """The device that input ids go to (the embedding's device under ``device_map``)."""
        return self.model.get_input_embeddings().weight.device


def resolve_device(option: str) -> torch.device:
    """Return the device for ``extraction.device`` (auto: CUDA when available)."""
    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if option == "cuda" and not torch.cuda.is_available():
        raise ConfigError("extraction.device is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'.")
    return torch.device(option)


def resolve_dtype(name: str, dtype: str, device: torch.device) -> torch.dtype:
    """Return the compute dtype: ``auto`` is float32 on CPU and bfloat16 on GPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"models.{name}.dtype is {dtype!r}; use one of {['auto', *DTYPES]}.")
    return DTYPES[dtype]


def read_manifest(manifest_path: str | Path) -> dict[str, Any]:
    """Return a fetched model's manifest."""
    path = Path(manifest_path)
    if not path.is_file():
        raise ModelError(
            f"model manifest {path} does not exist. Run the workflow's fetch_model rule first (`snakemake {path}`)."
        )
    return read_json(path)


def load_model(manifest: dict[str, Any], block: dict[str, Any], options: dict[str, Any]) -> LoadedModel:
    """Load the model and tokenizer that a manifest points to.

    Parameters
    ----------
    manifest : dict
        As written by :func:`~brainalign.models.fetch.fetch_model` (``folder``, ``gguf_file``;
        ``local_files_only`` False lets the CLI load a hub id).
    block : dict
        The model's config block (kind, dtype, n_layers, trust_remote_code, max_length).
    options : dict
        Extraction options (device, device_map), already completed with defaults.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    name = manifest["name"]
    kind = block.get("kind", "causal")
    if kind not in KINDS:
        raise ConfigError(f"models.{name}.kind is {kind!r}; use one of {list(KINDS)}.")
    device = resolve_device(options["device"])
    dtype = resolve_dtype(name, block.get("dtype", "auto"), device)
    kwargs: dict[str, Any] = {
        "local_files_only": manifest.get("local_files_only", True),
        "trust_remote_code": bool(block.get("trust_remote_code", False)),
    }
    model_kwargs: dict[str, Any] = {}
    if manifest.get("gguf_file"):
        from transformers import GgufConfig

        kwargs["gguf_file"] = manifest["gguf_file"]
        # dense weights everywhere: a GPU matmul kernel would otherwise keep (and compute with) GGUF blocks
        model_kwargs["quantization_config"] = GgufConfig(dequantize=True)
    model_class = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    folder = manifest["folder"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        if options.get("device_map"):
            model = model_class.from_pretrained(
                folder, dtype=dtype, device_map=options["device_map"], **kwargs, **model_kwargs
            )
        else:
            model = model_class.from_pretrained(folder, dtype=dtype, **kwargs, **model_kwargs).to(device)
    except (OSError, ValueError) as error:
        raise ModelError(
            f"model {name}: cannot load from {folder} ({type(error).__name__}: {error}). "
            f"Check models.{name}.kind ({kind}) and rerun the fetch_model stage."
        ) from error
    model.eval()
    loaded = _with_blocks(name, model, tokenizer, kind, block)
    # The aw2024 readout truncates at the tokenizer's own limit, on the left as the paper's
    # code builds every tokenizer; the unit readout cuts its own windows, so the tokenizer
    # itself must never truncate.
    limit = getattr(tokenizer, "model_max_length", None)
    loaded.tokenizer_max_length = int(limit) if limit and limit < _UNBOUNDED_LENGTH else None
    tokenizer.truncation_side = "left"
    tokenizer.model_max_length = _UNBOUNDED_LENGTH**2
    loaded.facts = {
        "tokenizer": type(tokenizer).__name__,
        "tokenizer_max_length": loaded.tokenizer_max_length,
        "model_class": type(model).__name__,
        "compute_dtype": str(dtype).removeprefix("torch."),
        "device": str(device) if not options.get("device_map") else f"device_map={options['device_map']}",
    }
    return loaded


def _with_blocks(name: str, model: nn.Module, tokenizer: Any, kind: str, block: dict[str, Any]) -> LoadedModel:
    """Find the transformer blocks, check their count and the context length."""
    max_length = context_length(name, model, tokenizer, block)
    if kind == "causal":
        blocks, n_encoder = find_blocks(model.base_model), 0
    else:
        policy = block.get("seq2seq_layers", "paper")
        if policy not in SEQ2SEQ_LAYERS:
            raise ConfigError(f"models.{name}.seq2seq_layers is {policy!r}; use one of {list(SEQ2SEQ_LAYERS)}.")
        encoder = find_blocks(model.get_encoder())
        blocks = encoder + (find_blocks(model.get_decoder()) if policy == "paper" else [])
        n_encoder = len(encoder)
    expected = block.get("n_layers", len(blocks))  # the CLI, which has no config block, takes the model's
    if expected != len(blocks):
        detail = (
            ""
            if kind == "causal"
            else f" ({n_encoder} encoder blocks{' + decoder blocks' if len(blocks) > n_encoder else ''}, "
            f"seq2seq_layers={block.get('seq2seq_layers', 'paper')})"
        )
        raise ConfigError(
            f"models.{name}.n_layers is {expected}, but the model has {len(blocks)} transformer blocks"
            f"{detail}. Set n_layers: {len(blocks)}."
        )
    return LoadedModel(name, model, tokenizer, kind, max_length, blocks, n_encoder)


def find_blocks(module: nn.Module) -> list[nn.Module]:
    """Return the transformer blocks of a (sub)model: its list named layers, h, block or blocks."""
    for child_name, child in module.named_modules():
        if isinstance(child, nn.ModuleList) and child_name.split(".")[-1] in _BLOCK_LIST_NAMES and len(child):
            return list(child)
    raise ModelError(f"cannot find the transformer blocks of {type(module).__name__} (no layers/h/block list).")


def context_length(name: str, model: nn.Module, tokenizer: Any, block: dict[str, Any]) -> int:
    """Return the longest sequence to run: the block's max_length, else the model's own limit."""
    if block.get("max_length"):
        return int(block["max_length"])
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for key in ("max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if value:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    if limit and limit < _UNBOUNDED_LENGTH:
        return int(limit)
    raise ConfigError(f"model {name} declares no maximum length; set models.{name}.max_length (tokens).")
