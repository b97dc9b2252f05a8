"""Naive references for the model tests: one float32 forward pass per prefix, no batching.

Prefixes are tokenized on their own (not cut from the stream's tokenization), states are
read at the prefix's last text token, and log-probabilities come from the full model's
logits, so these share nothing with the batched code but the window plan of long streams.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from brainalign.models.streams import plan_windows, tokenize_stream

# Tiny random models of the three families, and the modules the paper's code hooks in each.
PAPER_BLOCKS = {
    "gpt2": {
        "source": {
            "type": "random",
            "architecture": "gpt2",
            "seed": 0,
            "config": {"n_embd": 32, "n_layer": 2, "n_head": 2},
        },
        "kind": "causal",
        "n_layers": 2,
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
        "dtype": "float32",
        "aw2024_module": "post_attention_layernorm",
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
        "dtype": "float32",
    },
}
HOOKED = {
    "gpt2": ["transformer.h.{}"],
    "llama": ["model.layers.{}.post_attention_layernorm"],
    "t5": ["encoder.block.{}", "decoder.block.{}"],
}


@contextlib.contextmanager
def recorded_outputs(model, hooked: list[str], n_layers: int) -> Iterator[tuple[list[str], dict[str, torch.Tensor]]]:
    """Hook the paper's module names of every layer; yield (names in layer order, latest output by name)."""
    names = [pattern.format(i) for pattern in hooked for i in range(n_layers // len(hooked))]
    captured: dict[str, torch.Tensor] = {}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _a, output, name=name: captured.__setitem__(
                name, output[0] if isinstance(output, tuple) else output
            )
        )
        for name in names
    ]
    try:
        yield names, captured
    finally:
        for handle in handles:
            handle.remove()


def hidden_width(model) -> int:
    """Width of the model's hidden states (T5: d_model)."""
    return model.config.d_model if model.config.is_encoder_decoder else model.config.hidden_size


def _blocks(model) -> list[torch.nn.Module]:
    if hasattr(model, "encoder"):
        return list(model.encoder.block) + list(model.decoder.block)
    if hasattr(model, "transformer"):
        return list(model.transformer.h)
    return list(model.model.layers)


def _prefix_ids(tokenizer, texts: list[str]) -> list[int]:
    return tokenizer(" ".join(texts))["input_ids"]


def _window_starts(tokenizer, texts: list[str], max_length: int | None, min_context: int) -> tuple[int, np.ndarray]:
    """Per unit, the first stream token of its context (0 unless the stream is cut into windows)."""
    starts = np.zeros(len(texts), dtype=int)
    stream = tokenize_stream(tokenizer, texts, [str(i) for i in range(len(texts))])
    if max_length is None:
        return len(stream.head), starts
    for window in plan_windows(stream, max_length, min_context):
        starts[window.units] = window.start
    return len(stream.head), starts


@torch.inference_mode()
def naive_states(model, tokenizer, stimuli: pd.DataFrame, max_length=None, min_context=1, seq2seq=False) -> np.ndarray:
    """(n_layers, n_units, width) block outputs at each unit's last token, per prefix."""
    blocks = _blocks(model)
    out = np.zeros(
        (len(blocks), len(stimuli), model.config.d_model if seq2seq else model.config.hidden_size), np.float32
    )
    captured: list[torch.Tensor] = []
    hooks = [
        b.register_forward_hook(lambda m, a, o: captured.append(o[0] if isinstance(o, tuple) else o)) for b in blocks
    ]
    try:
        for _, group in stimuli.groupby("context_group", sort=False):
            group = group.sort_values("position")
            texts = group["text"].tolist()
            n_head, starts = _window_starts(tokenizer, texts, None if seq2seq else max_length, min_context)
            for unit, row in enumerate(group.index):
                ids = _prefix_ids(tokenizer, texts[: unit + 1])
                if seq2seq:
                    if max_length and len(ids) > max_length:  # left-truncate the text, keep T5's EOS
                        ids = ids[:-1][-(max_length - 1) :] + ids[-1:]
                    read = -2  # the last text token, before EOS
                    tensor = torch.tensor([ids])
                    captured.clear()
                    model(input_ids=tensor, decoder_input_ids=tensor)
                else:
                    ids = ids[:n_head] + ids[n_head + starts[unit] :]
                    read = -1
                    captured.clear()
                    model(input_ids=torch.tensor([ids]))
                for layer, hidden in enumerate(captured):
                    out[layer, row] = hidden[0, read].float().numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return out


@torch.inference_mode()
def naive_surprisal(
    model, tokenizer, stimuli: pd.DataFrame, max_length=None, min_context=1, seq2seq=False
) -> np.ndarray:
    """Per unit: bits of its tokens given the preceding units (NaN for a group's first unit)."""
    bits = np.full(len(stimuli), np.nan)
    for _, group in stimuli.groupby("context_group", sort=False):
        group = group.sort_values("position")
        texts = group["text"].tolist()
        n_head, starts = _window_starts(tokenizer, texts, None if seq2seq else max_length, min_context)
        for unit, row in enumerate(group.index[1:], start=1):
            if seq2seq:
                context = tokenizer(" ".join(texts[:unit]), add_special_tokens=False)["input_ids"]
                full = tokenizer(" ".join(texts[: unit + 1]), add_special_tokens=False)["input_ids"]
                targets = full[len(context) :]
                sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
                if max_length:
                    context = context[max(len(context) - (max_length - 2), 0) :]
                encoder = context + [sentinel, tokenizer.eos_token_id]
                decoder = [model.config.decoder_start_token_id, sentinel] + targets[:-1]
                logits = model(input_ids=torch.tensor([encoder]), decoder_input_ids=torch.tensor([decoder])).logits[
                    0, 1:
                ]
            else:
                context = _prefix_ids(tokenizer, texts[:unit])
                full = _prefix_ids(tokenizer, texts[: unit + 1])
                targets = full[len(context) :]
                ids = full[:n_head] + full[n_head + starts[unit] :]
                logits = model(input_ids=torch.tensor([ids])).logits[0, -len(targets) - 1 : -1]
            log_probs = torch.log_softmax(logits.float(), -1)[torch.arange(len(targets)), torch.tensor(targets)]
            bits[row] = float(-log_probs.sum()) / math.log(2)
    return bits
