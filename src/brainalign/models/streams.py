"""Token streams: one context group's units as one tokenized text, and its context windows.

A context group's units (in ``position`` order) are joined with single spaces; each unit
owns the characters of its own text. The stream is tokenized once, with character
offsets, and each unit is mapped to its tokens: unit ``i`` owns the tokens after the last
token of unit ``i - 1`` up to its own last token, the last non-special token that starts
before the unit's end. This works for byte-level BPE (leading-space tokens, several tokens
sharing one character) and SentencePiece (``▁`` tokens) alike; the whitespace between
two units belongs to the later unit, as it does in a per-prefix reading.

The encoding splits into a ``head`` (tokens before the first unit: a BOS token or a chat
template's opening), the ``body`` (the units' tokens) and a ``tail`` (tokens after the
last unit: T5's EOS or a template's closing). Windows and truncation cut the body only;
the head is kept in front of every window so a model that needs its BOS always sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainalign.errors import ConfigError, DataError

PROMPT_POLICIES = ("raw", "template")


@dataclass(frozen=True)
class TokenStream:
    """One context group, tokenized.

    Attributes
    ----------
    head, body, tail : np.ndarray of int64
        Token ids before, of, and after the units.
    first, last : np.ndarray of int64
        Per unit, the index in ``body`` of its first and last token.
    """

    head: np.ndarray
    body: np.ndarray
    tail: np.ndarray
    first: np.ndarray
    last: np.ndarray


@dataclass(frozen=True)
class Window:
    """A slice ``body[start:stop]`` run as one sequence (after the head), and the units read from it."""

    start: int
    stop: int
    units: np.ndarray


def join_units(texts: list[str]) -> tuple[str, np.ndarray]:
    """Join unit texts with single spaces; return the text and each unit's (start, end) characters."""
    spans = np.zeros((len(texts), 2), dtype=np.int64)
    cursor = 0
    for index, text in enumerate(texts):
        spans[index] = cursor, cursor + len(text)
        cursor += len(text) + 1
    return " ".join(texts), spans


def apply_prompt(tokenizer, text: str, policy: str) -> tuple[str, int, bool]:
    """Return (prompted text, character shift of the stream inside it, add_special_tokens).

    ``raw`` leaves the text as is (the tokenizer adds its usual special tokens);
    ``template`` wraps it as one user message with the tokenizer's chat template, which
    already holds the special tokens.
    """
    if policy == "raw":
        return text, 0, True
    if policy != "template":
        raise ConfigError(f"prompt_policy {policy!r} is unknown; use one of {list(PROMPT_POLICIES)}.")
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"prompt_policy 'template' needs a chat template, but the tokenizer "
            f"{type(tokenizer).__name__} has none. Use prompt_policy: raw for this model."
        )
    prompted = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False)
    shift = prompted.find(text)
    if shift < 0:
        raise ConfigError("the chat template altered the stimulus text; use prompt_policy: raw for this model.")
    return prompted, shift, False


def tokenize_stream(tokenizer, texts: list[str], stimulus_ids: list[str], policy: str = "raw") -> TokenStream:
    """Tokenize one context group's units as one stream and map each unit to its tokens.

    Raises
    ------
    DataError
        When a unit has no token of its own (a token spans two units).
    """
    text, spans = join_units(texts)
    prompted, shift, add_special = apply_prompt(tokenizer, text, policy)
    encoding = tokenizer(prompted, add_special_tokens=add_special, return_offsets_mapping=True)
    ids = np.asarray(encoding["input_ids"], dtype=np.int64)
    offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2) - shift
    special = np.asarray(tokenizer.get_special_tokens_mask(ids.tolist(), already_has_special_tokens=True), dtype=bool)
    inside = ~special & (offsets[:, 1] > offsets[:, 0]) & (offsets[:, 1] > 0) & (offsets[:, 0] < len(text))
    positions = np.flatnonzero(inside)
    # Last in-text token starting before each unit's end.
    last = positions[np.searchsorted(offsets[positions, 0], spans[:, 1], side="left") - 1]
    owned_end = offsets[last, 1] > spans[:, 0]
    first = np.concatenate([[positions[0]], last[:-1] + 1])
    if not owned_end.all() or np.any(last < first):
        bad = int(np.flatnonzero(~owned_end | (last < first))[0])
        raise DataError(
            f"unit {stimulus_ids[bad]!r} ({texts[bad]!r}) has no token of its own: the tokenizer "
            "merges it with its neighbour. Split or merge the units in the stimuli table."
        )
    head_end, body_end = positions[0], last[-1] + 1
    return TokenStream(
        head=ids[:head_end],
        body=ids[head_end:body_end],
        tail=ids[body_end:],
        first=first - head_end,
        last=last - head_end,
    )


def plan_windows(stream: TokenStream, max_length: int, min_context_tokens: int) -> list[Window]:
    """Cover a causal stream with windows of at most ``max_length`` tokens (head included).

    A unit is read from the first window that holds all its tokens and at least
    ``min_context_tokens`` body tokens before its first token (or the whole stream before
    it). Consecutive windows overlap by that much context.

    Raises
    ------
    ConfigError
        When a unit plus its minimum context does not fit in one window.
    """
    budget = max_length - len(stream.head)
    n_body = len(stream.body)
    if n_body <= budget:
        return [Window(0, n_body, np.arange(len(stream.first)))]
    needed = stream.last - stream.first + 1 + min_context_tokens
    if budget <= 0 or np.any(needed > budget):
        raise ConfigError(
            f"a unit of {int((stream.last - stream.first + 1).max())} tokens plus min_context_tokens="
            f"{min_context_tokens} does not fit in max_length={max_length} (head: {len(stream.head)} tokens). "
            "Lower extraction.min_context_tokens or raise the model's max_length."
        )
    windows, start, unit = [], 0, 0
    while unit < len(stream.first):
        stop = min(start + budget, n_body)
        end_unit = int(np.searchsorted(stream.last, stop, side="left"))
        windows.append(Window(start, stop, np.arange(unit, end_unit)))
        unit = end_unit
        if unit < len(stream.first):
            start = max(int(stream.first[unit]) - min_context_tokens, 0)
    return windows


def truncated_start(end: int, budget: int) -> int:
    """First body index of a left-truncated sequence ending before ``end`` with ``budget`` tokens."""
    return max(end - budget, 0)
