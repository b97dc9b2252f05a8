"""Tiny randomly initialised models built locally, for tests and offline demos.

A ``random`` source builds a GPT-2, LLaMA or T5 model from a small config and a seed,
together with a tokenizer trained on a fixed built-in text, so that nothing is fetched
from the hub and two builds with the same seed are identical. The tokenizers mimic the
real ones: byte-level BPE for GPT-2, a SentencePiece-style (``▁``) BPE that prepends a
BOS token for LLaMA, and a SentencePiece-style BPE that appends EOS and has a sentinel
``<extra_id_0>`` for T5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from brainalign.errors import ConfigError

ARCHITECTURES = ("gpt2", "llama", "t5")

TRAINING_TEXT = """\
If you were to journey to the North of England, you would come to a valley that is
surrounded by moors as high as mountains. It is in this valley where you would find the
city of Bradford, where once a thousand spinning jennies hummed and clattered. Tulips are
bright, colourful flowers; the gardener didn't plant them, but they grew anyway! Numbers
such as 1,234 and 3.14 appear too, with quotes "like this" and brackets (like these).
The boy's grandmother, who had lived in the town for ninety-two years, said: nothing.
"""

_VOCAB_SIZE = 320
DEFAULT_TOKENIZER_MAX_LENGTH = 64
"""The tokenizers' ``model_max_length`` unless a source sets ``tokenizer_max_length``."""


def _train(tokenizer: Tokenizer, special_tokens: list[str]) -> Tokenizer:
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([TRAINING_TEXT] * 4, trainer=trainer)
    return tokenizer


def _byte_level_tokenizer(max_length: int = DEFAULT_TOKENIZER_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """GPT-2 style: byte-level BPE, no special tokens added around the text."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    _train(tokenizer, ["<|endoftext|>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>", model_max_length=max_length
    )


def _metaspace_tokenizer(
    bos: bool, eos: bool, max_length: int = DEFAULT_TOKENIZER_MAX_LENGTH
) -> PreTrainedTokenizerFast:
    """SentencePiece style (``▁`` marks a preceding space), byte fallback via the byte alphabet."""
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<extra_id_0>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    _train(tokenizer, specials)
    ids = {token: tokenizer.token_to_id(token) for token in specials}
    single = (["<s>"] if bos else []) + ["$A"] + (["</s>"] if eos else [])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=" ".join(single), special_tokens=[(t, ids[t]) for t in ("<s>", "</s>")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<extra_id_0>"],
        model_max_length=max_length,
    )


def build_random_model(
    architecture: str, seed: int, config: dict[str, Any], tokenizer_max_length: int = DEFAULT_TOKENIZER_MAX_LENGTH
) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """Return a deterministic randomly initialised model and its tokenizer.

    Parameters
    ----------
    architecture : {"gpt2", "llama", "t5"}
    seed : int
        Seed of the weight initialisation.
    config : dict
        Keyword arguments of the transformers config class (sizes, number of layers); they
        override the defaults (vocabulary of the tokenizer, 64 positions).
    tokenizer_max_length : int
        The tokenizer's ``model_max_length``: where the aw2024 readout left-truncates contexts
        and the longest word window it accepts.

    Returns
    -------
    model, tokenizer
    """
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"source.architecture {architecture!r} is not a known random architecture; "
            f"use one of {list(ARCHITECTURES)}."
        )
    if architecture == "gpt2":
        tokenizer = _byte_level_tokenizer(tokenizer_max_length)
        defaults = {
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "n_positions": 64,
        }
        model_config = GPT2Config(**{**defaults, **config})
        model_class = GPT2LMHeadModel
    elif architecture == "llama":
        tokenizer = _metaspace_tokenizer(bos=True, eos=False, max_length=tokenizer_max_length)
        defaults = {
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "max_position_embeddings": 64,
        }
        model_config = LlamaConfig(**{**defaults, **config})
        model_class = LlamaForCausalLM
    else:
        tokenizer = _metaspace_tokenizer(bos=False, eos=True, max_length=tokenizer_max_length)
        defaults = {
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "decoder_start_token_id": tokenizer.pad_token_id,
            "feed_forward_proj": "gated-gelu",
        }
        model_config = T5Config(**{**defaults, **config})
        model_class = T5ForConditionalGeneration
    torch.manual_seed(seed)
    model = model_class(model_config).eval()
    return model, tokenizer


def save_random_model(
    folder: str | Path,
    architecture: str,
    seed: int,
    config: dict[str, Any],
    tokenizer_max_length: int = DEFAULT_TOKENIZER_MAX_LENGTH,
) -> list[str]:
    """Build a random model and save it (safetensors) with its tokenizer; return the files written."""
    model, tokenizer = build_random_model(architecture, seed, config, tokenizer_max_length)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
