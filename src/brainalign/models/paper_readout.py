"""The ``aw2024`` readout: features and surprisal exactly as the paper's code computes them.

Brain-Score's ``HuggingfaceSubject.digest_text`` (the code Aw et al. 2024 ran) reads text
part ``i`` of a context group from a forward pass over the context string
``prepare_context(parts[0..i])``, tokenized afresh with the tokenizer's special tokens
(LLaMA's ``<s>``, T5's ``</s>``) and truncated on the left at the tokenizer's
``model_max_length``. The feature is the hooked module's output at the last position of that
tokenized context; T5 gets ``decoder_input_ids = input_ids``. The surprisal of part ``i``
(``estimate_reading_times``) sums, over the tokens that the reference counts as new in part
``i``, the cross-entropy (bits) from the logits one position earlier.

One pass per part is quadratic in the group's length. A causal model's state at a position
depends only on the ids up to it, so when part ``i``'s ids equal a prefix of the whole
group's ids (checked exactly, for every part), its reads come from ONE pass over the group;
every other part (a tokenization that differs at the boundary, a left-truncated context)
and every T5 part (its encoder is bidirectional) runs its own context. All passes are
batched by :mod:`brainalign.models.forward`.

Time series (Wehbe2014) were not scored by that code: the authors' Harry Potter pipeline
(Toneva & Wehbe 2019) feeds each word with a fixed-length window of the words before it
(the word included) and averages the hooked output over the tokens of the window's last
word. :func:`word_window_sequences` builds those windows, joined as ``prepare_context``
joins parts and tokenized with the same special tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainalign.errors import ConfigError, DataError
from brainalign.models.forward import Sequence
from brainalign.models.loading import LoadedModel

_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,!?;:])")
_TOKENIZE_CHUNK = 128
"""Contexts tokenized per call: bounds the memory of long groups' growing contexts."""


def prepare_context(parts: list[str]) -> str:
    """Join text parts as Brain-Score's ``prepare_context`` does.

    Blank parts are dropped, the rest joined with single spaces, and whitespace before
    ``. , ! ? ; :`` removed.
    """
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(part for part in parts if part.strip() != ""))


@dataclass(frozen=True)
class PaperContexts:
    """One context group's inputs as the paper's code builds them.

    Attributes
    ----------
    ids : list of np.ndarray
        Per part, the token ids of its (possibly left-truncated) context.
    new_tokens : np.ndarray of int64
        Per part, how many trailing ids of its context the reference counts as new.
    whole : np.ndarray
        The token ids of the whole group's context, untruncated.
    """

    ids: list[np.ndarray]
    new_tokens: np.ndarray
    whole: np.ndarray

    def is_prefix(self, part: int) -> bool:
        """Whether part ``part``'s ids are exactly the first ids of the whole group's."""
        ids = self.ids[part]
        return len(ids) <= len(self.whole) and np.array_equal(ids, self.whole[: len(ids)])


def _growing_contexts(parts: list[str]) -> Iterator[list[str]]:
    """Yield the parts' context strings in chunks of :data:`_TOKENIZE_CHUNK`."""
    for start in range(0, len(parts), _TOKENIZE_CHUNK):
        stop = min(start + _TOKENIZE_CHUNK, len(parts))
        yield [prepare_context(parts[: index + 1]) for index in range(start, stop)]


def fast_encodings(tokenizer, encoded, purpose: str) -> list:
    """The Rust ``Encoding`` of each text in ``encoded`` (a fast tokenizer's output).

    Raises
    ------
    ConfigError
        When the tokenizer is a slow one (no encodings); ``purpose`` says what needs them.
    """
    if encoded.encodings is None:
        raise ConfigError(
            f"readout aw2024 {purpose}, but {type(tokenizer).__name__} is a slow tokenizer. "
            "Use a model whose tokenizer.json is available."
        )
    return encoded.encodings


def reference_new_tokens(lengths: np.ndarray, overflows: np.ndarray) -> np.ndarray:
    """Per part, the number of new tokens as ``_tokenize_overflow_aware`` counts them.

    The reference keeps a running total ``previous`` (ids plus overflowing tokens of the
    last context) and takes ``ids[previous - overflow:]`` as the new tokens, with Python's
    slicing (a negative start counts from the end). Overflowing chunks repeat the
    tokenizer's special tokens, so the total drifts once a context is truncated; this
    reproduces that drift.
    """
    counts = np.zeros(len(lengths), dtype=np.int64)
    previous = 0
    for part, (length, overflow) in enumerate(zip(lengths, overflows)):
        counts[part] = len(range(int(length))[previous - int(overflow) :])
        previous = int(length) + int(overflow)
    return counts


def paper_contexts(tokenizer, parts: list[str], limit: int | None) -> PaperContexts:
    """Tokenize every part's context as ``digest_text`` does (special tokens, left truncation).

    Parameters
    ----------
    tokenizer
        A fast (Rust-backed) tokenizer with ``truncation_side == 'left'``.
    parts : list of str
        The group's text parts in order.
    limit : int or None
        The tokenizer's own ``model_max_length`` (None: unbounded, no truncation).
    """
    ids, lengths, overflows = [], [], []
    for contexts in _growing_contexts(parts):
        encoded = tokenizer(contexts, truncation=limit is not None, max_length=limit)
        for encoding in fast_encodings(tokenizer, encoded, "counts new tokens from a fast tokenizer's overflow"):
            ids.append(np.asarray(encoding.ids, dtype=np.int64))
            lengths.append(len(encoding.ids))
            overflows.append(sum(len(chunk) for chunk in encoding.overflowing))
    whole = np.asarray(tokenizer(prepare_context(parts))["input_ids"], dtype=np.int64)
    return PaperContexts(ids, reference_new_tokens(np.array(lengths), np.array(overflows)), whole)


@dataclass(frozen=True)
class Reads:
    """What to read from one part's context: positions in its ids, and their targets."""

    positions: np.ndarray
    targets: np.ndarray | None = None


def state_reads(contexts: PaperContexts, stimulus_ids: list[str]) -> list[Reads]:
    """Per part, the last position of its tokenized context.

    Raises
    ------
    DataError
        When a part's context has no token (the group starts with empty parts).
    """
    reads = []
    for part, ids in enumerate(contexts.ids):
        if not len(ids):
            raise DataError(
                f"unit {stimulus_ids[part]!r}: its context is empty, so the paper's readout has no last token. "
                "Remove the empty units at the start of its context group from the stimuli table."
            )
        reads.append(Reads(np.array([len(ids) - 1])))
    return reads


def surprisal_reads(contexts: PaperContexts) -> list[Reads]:
    """Per part, the positions whose logits predict its new tokens (``estimate_reading_times``).

    The new tokens are the last ``new_tokens`` ids of the context; a context of one token
    has no prediction (no reads: NaN), and when every id is new the first one is skipped
    (nothing predicts it).
    """
    reads = []
    for ids, new in zip(contexts.ids, contexts.new_tokens):
        predicted = np.arange(max(len(ids) - int(new), 1), len(ids)) if len(ids) > 1 else np.array([], dtype=np.int64)
        reads.append(Reads(predicted - 1, ids[predicted]))
    return reads


def plan_sequences(
    contexts: PaperContexts, reads: list[Reads], owners: np.ndarray, share_prefixes: bool
) -> list[Sequence]:
    """The forward passes of one group: one shared pass for prefix parts, one per other part.

    Parameters
    ----------
    contexts : PaperContexts
    reads : list of Reads
        Per part, what to read from its own context.
    owners : np.ndarray
        Per part, its row in the output.
    share_prefixes : bool
        True for causal models: parts whose ids are a prefix of the whole group's are read
        from one pass over the whole group's ids, cut after the longest such part.
    """
    shared = [part for part in range(len(reads)) if share_prefixes and contexts.is_prefix(part)]
    sequences = []
    if shared:
        end = max(len(contexts.ids[part]) for part in shared)
        sequences.append(_merged(contexts.whole[:end], [reads[p] for p in shared], owners[shared]))
    for part in sorted(set(range(len(reads))) - set(shared)):
        sequences.append(_merged(contexts.ids[part], [reads[part]], owners[[part]]))
    return [sequence for sequence in sequences if len(sequence.positions)]


def _merged(ids: np.ndarray, reads: list[Reads], owners: np.ndarray) -> Sequence:
    """One sequence over ``ids`` holding several parts' reads."""
    positions = np.concatenate([r.positions for r in reads]).astype(np.int64)
    read_owners = np.concatenate([np.full(len(r.positions), owner) for r, owner in zip(reads, owners)]).astype(np.int64)
    targets = None if reads[0].targets is None else np.concatenate([r.targets for r in reads]).astype(np.int64)
    return Sequence(ids, positions, read_owners, targets=targets)


def raw_text_groups(
    stimuli: pd.DataFrame, loaded: LoadedModel, prompt_policy: str
) -> Iterator[tuple[list[str], np.ndarray, list[str]]]:
    """Yield each context group's texts in order, its units' rows in ``stimuli`` and their ids.

    Raises
    ------
    ConfigError
        When the model's prompt policy is not ``raw`` (the paper fed raw text).
    """
    if prompt_policy != "raw":
        raise ConfigError(
            f"model {loaded.name}: readout aw2024 feeds the raw text as the paper did, but prompt_policy is "
            f"{prompt_policy!r}. Set prompt_policy: raw for this model or use readout unit."
        )
    for _, group in stimuli.reset_index(drop=True).groupby("context_group", sort=False):
        group = group.sort_values("position")
        yield group["text"].astype(str).tolist(), group.index.to_numpy(), group["stimulus_id"].astype(str).tolist()


def group_contexts(
    stimuli: pd.DataFrame, loaded: LoadedModel, prompt_policy: str
) -> Iterator[tuple[PaperContexts, np.ndarray, list[str]]]:
    """Yield each context group's paper contexts, its units' rows in ``stimuli`` and their ids."""
    for texts, owners, ids in raw_text_groups(stimuli, loaded, prompt_policy):
        yield paper_contexts(loaded.tokenizer, texts, loaded.tokenizer_max_length), owners, ids


def paper_state_sequences(loaded: LoadedModel, stimuli: pd.DataFrame, prompt_policy: str) -> list[Sequence]:
    """All forward passes of the aw2024 features of every unit."""
    sequences: list[Sequence] = []
    for contexts, owners, ids in group_contexts(stimuli, loaded, prompt_policy):
        sequences += plan_sequences(contexts, state_reads(contexts, ids), owners, loaded.kind == "causal")
    return sequences


def paper_surprisal_sequences(
    loaded: LoadedModel, stimuli: pd.DataFrame, prompt_policy: str
) -> tuple[list[Sequence], np.ndarray, np.ndarray]:
    """All forward passes of the aw2024 surprisal.

    Returns
    -------
    sequences : list of Sequence
    n_predicted : np.ndarray of int64
        Per unit, the number of tokens its surprisal sums over.
    no_context : np.ndarray of bool
        Per unit, whether its context is a single token, so the reference returns NaN.
    """
    sequences: list[Sequence] = []
    n_predicted = np.zeros(len(stimuli), dtype=np.int64)
    no_context = np.zeros(len(stimuli), dtype=bool)
    for contexts, owners, _ in group_contexts(stimuli, loaded, prompt_policy):
        reads = surprisal_reads(contexts)
        n_predicted[owners] = [len(r.positions) for r in reads]
        no_context[owners] = [len(ids) <= 1 for ids in contexts.ids]
        sequences += plan_sequences(contexts, reads, owners, loaded.kind == "causal")
    return sequences, n_predicted, no_context


def word_windows(words: list[str], window: int) -> list[str]:
    """Per word, the context string of the ``window`` words ending with it (fewer at the group's start)."""
    return [prepare_context(words[max(0, index - window + 1) : index + 1]) for index in range(len(words))]


def last_word_span(context: str, word: str) -> tuple[int, int]:
    """The characters ``[start, stop)`` of ``word`` (its non-blank text) at the end of ``context``.

    ``prepare_context`` leaves the last part's own text at the end of the joined string
    (only the space before it may go), so the span is measured from the end.
    """
    alone = prepare_context([word])
    stop = len(context) - (len(alone) - len(alone.rstrip()))
    return stop - len(alone.strip()), stop


def last_word_positions(encoding, span: tuple[int, int]) -> np.ndarray:
    """Positions of the tokens whose characters overlap ``span``, special tokens excluded.

    Overlap, not containment: a token that carries the separating space with the word's
    first letters (GPT-2's ``Ġword``, LLaMA's ``▁word``) is the word's token.
    """
    start, stop = span
    return np.array(
        [
            position
            for position, ((first, last), special) in enumerate(zip(encoding.offsets, encoding.special_tokens_mask))
            if not special and last > start and first < stop
        ],
        dtype=np.int64,
    )


def window_sequences(
    loaded: LoadedModel, words: list[str], owners: np.ndarray, stimulus_ids: list[str], window: int
) -> list[Sequence]:
    """One group's word windows: one sequence per word, read at its last word's tokens.

    Raises
    ------
    DataError
        When a word is blank (its window has no token of its own).
    ConfigError
        When a window is longer than the tokenizer's ``model_max_length``.
    """
    contexts = word_windows(words, window)
    encoded = loaded.tokenizer(contexts)
    encodings = fast_encodings(loaded.tokenizer, encoded, "locates each word's tokens with a fast tokenizer's offsets")
    limit = loaded.tokenizer_max_length
    sequences = []
    for context, word, encoding, owner, stimulus_id in zip(contexts, words, encodings, owners, stimulus_ids):
        if limit is not None and len(encoding.ids) > limit:
            raise ConfigError(
                f"model {loaded.name}: the word window of unit {stimulus_id!r} has {len(encoding.ids)} tokens, over "
                f"the tokenizer's model_max_length={limit}. Lower extraction.word_window (now {window})."
            )
        positions = last_word_positions(encoding, last_word_span(context, word))
        if not len(positions):
            raise DataError(
                f"unit {stimulus_id!r}: its text {word!r} is blank, so its word window has no token of its own. "
                "Remove blank words from the stimuli table."
            )
        sequences.append(Sequence(np.asarray(encoding.ids, dtype=np.int64), positions, np.full(len(positions), owner)))
    return sequences


def word_window_sequences(
    loaded: LoadedModel, stimuli: pd.DataFrame, prompt_policy: str, window: int
) -> list[Sequence]:
    """All forward passes of the aw2024 features of a time series's words (Toneva & Wehbe 2019).

    Every word's window is its own short sequence, so the passes batch well; the reads of
    a word (its tokens) are averaged by :func:`brainalign.models.forward.read_block_states`.
    """
    sequences: list[Sequence] = []
    for words, owners, ids in raw_text_groups(stimuli, loaded, prompt_policy):
        sequences += window_sequences(loaded, words, owners, ids, window)
    return sequences
