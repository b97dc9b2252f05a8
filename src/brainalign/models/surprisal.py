"""Per-unit surprisal in bits: minus log2 of the probability of the unit's tokens given its context.

Two readouts share one loaded model: ``aw2024`` is the paper's ``estimate_reading_times``
(:mod:`brainalign.models.paper_readout`; for T5 with ``decoder_input_ids = input_ids``);
``unit``, described below, is the regression protocol's.

A unit's surprisal is the sum over its tokens (the tokens after the previous unit's last
token up to its own last token, see :mod:`brainalign.models.streams`), so the whitespace
before a word counts with the word. The first unit of each context group has no context
and gets NaN (not 0).

- causal models: the same windows and single pass per context group as the activations;
  the logits at position ``p - 1`` give token ``p``'s probability;
- seq2seq models (T5 convention, as T5 was pre-trained on span corruption): the encoder
  reads the context followed by the sentinel ``<extra_id_0>`` (and the tokenizer's tail,
  EOS), the decoder reads ``<decoder start> <extra_id_0>`` followed by the unit's tokens,
  and the unit's surprisal is that of its tokens after the sentinel. The context is
  left-truncated to the maximum length; one pass per unit, batched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign.errors import ModelError
from brainalign.io import read_stimuli, write_surprisal
from brainalign.models.extraction import group_streams, min_context, output_metadata, outputs_by_readout
from brainalign.models.extraction_options import complete_options
from brainalign.models.forward import Sequence, read_surprisal_bits
from brainalign.models.loading import LoadedModel, load_model, read_manifest
from brainalign.models.paper_readout import paper_surprisal_sequences
from brainalign.models.streams import TokenStream, plan_windows, truncated_start

SENTINEL = "<extra_id_0>"


def causal_surprisal_sequences(
    stream: TokenStream, owners: np.ndarray, max_length: int, min_context_tokens: int
) -> list[Sequence]:
    """One sequence per window; every token of every unit but the first is a target."""
    sequences = []
    for window in plan_windows(stream, max_length, min_context_tokens):
        units = window.units[window.units > 0]
        if not len(units):
            continue
        tokens = np.concatenate([np.arange(stream.first[u], stream.last[u] + 1) for u in units])
        unit_of_token = np.concatenate([np.full(stream.last[u] - stream.first[u] + 1, u) for u in units])
        ids = np.concatenate([stream.head, stream.body[window.start : window.stop]])
        positions = len(stream.head) + tokens - window.start - 1
        sequences.append(Sequence(ids, positions, owners[unit_of_token], targets=stream.body[tokens]))
    return sequences


def sentinel_id(loaded: LoadedModel) -> int:
    """Return the id of T5's first sentinel token."""
    token_id = loaded.tokenizer.convert_tokens_to_ids(SENTINEL)
    if token_id is None or token_id == loaded.tokenizer.unk_token_id:
        raise ModelError(f"model {loaded.name}: its tokenizer has no {SENTINEL} token, needed for seq2seq surprisal.")
    return int(token_id)


def seq2seq_surprisal_sequences(
    stream: TokenStream, owners: np.ndarray, max_length: int, sentinel: int, start_id: int
) -> list[Sequence]:
    """One sequence per unit but the first: context + sentinel in, sentinel + unit tokens out."""
    budget = max_length - len(stream.head) - len(stream.tail) - 1
    sequences = []
    for unit in range(1, len(stream.first)):
        first, last = int(stream.first[unit]), int(stream.last[unit])
        context = stream.body[truncated_start(first, budget) : first]
        encoder_ids = np.concatenate([stream.head, context, [sentinel], stream.tail])
        unit_tokens = stream.body[first : last + 1]
        decoder_ids = np.concatenate([[start_id, sentinel], unit_tokens[:-1]])
        positions = np.arange(1, len(unit_tokens) + 1)
        sequences.append(
            Sequence(
                encoder_ids,
                positions,
                np.full(len(unit_tokens), owners[unit]),
                targets=unit_tokens,
                decoder_ids=decoder_ids,
            )
        )
    return sequences


def surprisal_sequences(
    loaded: LoadedModel, streams: list[TokenStream], rows: list[np.ndarray], options: dict[str, Any]
) -> list[Sequence]:
    """All forward passes needed for the surprisal of every unit."""
    sequences: list[Sequence] = []
    if loaded.kind == "seq2seq":
        sentinel, start_id = sentinel_id(loaded), int(loaded.model.config.decoder_start_token_id)
    for stream, owners in zip(streams, rows):
        if loaded.kind == "causal":
            sequences += causal_surprisal_sequences(stream, owners, loaded.max_length, min_context(loaded, options))
        else:
            sequences += seq2seq_surprisal_sequences(stream, owners, loaded.max_length, sentinel, start_id)
    return sequences


def surprisal_table(
    loaded: LoadedModel, stimuli: pd.DataFrame, prompt_policy: str, options: dict[str, Any]
) -> pd.DataFrame:
    """Return ``stimulus_id``, ``surprisal_bits``, ``n_tokens`` in stimuli order under ``options['readout']``.

    ``n_tokens`` counts the tokens a unit's surprisal sums over; ``surprisal_bits`` is NaN
    where a unit has no context (``unit``: a group's first unit; ``aw2024``: a one-token context).
    """
    if options["readout"] == "aw2024":
        sequences, n_tokens, no_context = paper_surprisal_sequences(loaded, stimuli, prompt_policy)
    else:
        sequences, n_tokens, no_context = unit_surprisal_sequences(loaded, stimuli, prompt_policy, options)
    bits = read_surprisal_bits(
        loaded, sequences, len(stimuli), int(options["batch_size"]), bool(options["show_progress"])
    )
    bits[no_context] = np.nan
    return pd.DataFrame(
        {"stimulus_id": stimuli["stimulus_id"].to_numpy(), "surprisal_bits": bits, "n_tokens": n_tokens}
    )


def unit_surprisal_sequences(
    loaded: LoadedModel, stimuli: pd.DataFrame, prompt_policy: str, options: dict[str, Any]
) -> tuple[list[Sequence], np.ndarray, np.ndarray]:
    """The ``unit`` readout's passes, per unit its token count, and the groups' first units."""
    streams, rows = group_streams(stimuli, loaded, prompt_policy)
    n_tokens = np.zeros(len(stimuli), dtype=np.int64)
    no_context = np.zeros(len(stimuli), dtype=bool)
    for stream, owners in zip(streams, rows):
        n_tokens[owners] = stream.last - stream.first + 1
        no_context[owners[0]] = True
    return surprisal_sequences(loaded, streams, rows, options), n_tokens, no_context


def compute_surprisal(
    stimuli_path: str | Path,
    manifest_path: str | Path,
    block: dict[str, Any],
    options: dict[str, Any] | None,
    out_path: str | Path | Mapping[str, str | Path],
) -> None:
    """Write per-unit surprisal (bits, summed over the unit's tokens) and token counts, per readout.

    Parameters are those of :func:`brainalign.models.extraction.extract_activations`.
    """
    options = complete_options(options)
    outputs = outputs_by_readout(options, out_path)
    manifest = read_manifest(manifest_path)
    stimuli = read_stimuli(stimuli_path)
    loaded = load_model(manifest, block, options)
    for readout, path in outputs.items():
        readout_options = {**options, "readout": readout}
        table = surprisal_table(loaded, stimuli, block.get("prompt_policy", "raw"), readout_options)
        metadata = output_metadata(manifest["name"], block, readout_options, stimuli_path, manifest, loaded)
        write_surprisal(path, table, {**metadata, "hooked_module": "none: surprisal reads the logits"})
