"""Per-layer last-token activations of every stimulus unit, with its context group as context.

Layer convention (both kinds): layer ``k`` (1..n_layers) is the output of transformer
block ``k`` as a forward hook on that block sees it, before any final layer norm (as
Brain-Score hooks block outputs); the embeddings are not stored. For seq2seq models under
``seq2seq_layers: paper`` (Aw et al. 2024), the same ids go to encoder and decoder
(``decoder_input_ids = input_ids``) and layers 1..E are the encoder blocks, E+1..E+D the
decoder blocks; under ``seq2seq_layers: encoder`` only the E encoder blocks are layers.

A unit's representation is the state at its last token (see
:mod:`brainalign.models.streams` for the unit-to-token mapping), with all earlier units of
its context group as context:

- causal models: a position's state depends only on earlier tokens, so ONE forward pass
  per context group gives every unit's state. Streams longer than the model's context
  run as overlapping windows (each keeps the head, e.g. BOS), so every unit has at least
  ``min_context_tokens`` tokens of context;
- seq2seq models: the encoder is bidirectional, so each unit needs its own pass over its
  prefix (the tokenizer's special tokens included, e.g. T5's EOS), left-truncated to the
  maximum length; the passes are batched.
"""

from __future__ import annotations

import shutil
import tempfile

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign.io import ActivationWriter, read_stimuli
from brainalign.models.activations import complete_options, expected_metadata
from brainalign.models.forward import Sequence, read_block_states, state_shape
from brainalign.models.loading import LoadedModel, load_model, read_manifest
from brainalign.models.streams import TokenStream, plan_windows, tokenize_stream, truncated_start


def group_streams(stimuli: pd.DataFrame, loaded: LoadedModel, prompt_policy: str) -> tuple[list[TokenStream], list[np.ndarray]]:
    """Tokenize each context group; return the streams and, per stream, its units' rows in ``stimuli``."""
    streams, rows = [], []
    for _, group in stimuli.groupby("context_group", sort=False):
        group = group.sort_values("position")
        streams.append(
            tokenize_stream(loaded.tokenizer, group["text"].astype(str).tolist(), group["stimulus_id"].tolist(), prompt_policy)
        )
        rows.append(group.index.to_numpy())
    return streams, rows


def min_context(loaded: LoadedModel, options: dict[str, Any]) -> int:
    """Return the minimum context of a unit in a window (default: half the maximum length)."""
    value = options["min_context_tokens"]
    return loaded.max_length // 2 if value is None else int(value)


def causal_state_sequences(stream: TokenStream, owners: np.ndarray, max_length: int, min_context_tokens: int) -> list[Sequence]:
    """One sequence per window of a causal stream, reading each unit's last token."""
    sequences = []
    for window in plan_windows(stream, max_length, min_context_tokens):
        ids = np.concatenate([stream.head, stream.body[window.start : window.stop]])
        positions = len(stream.head) + stream.last[window.units] - window.start
        sequences.append(Sequence(ids, positions, owners[window.units]))
    return sequences


def seq2seq_state_sequences(stream: TokenStream, owners: np.ndarray, max_length: int) -> list[Sequence]:
    """One sequence per unit: its prefix (left-truncated), with the stream's head and tail."""
    budget = max_length - len(stream.head) - len(stream.tail)
    sequences = []
    for unit, last in enumerate(stream.last):
        start = truncated_start(int(last) + 1, budget)
        ids = np.concatenate([stream.head, stream.body[start : last + 1], stream.tail])
        sequences.append(Sequence(ids, np.array([len(stream.head) + last - start]), owners[[unit]]))
    return sequences


def state_sequences(loaded: LoadedModel, streams: list[TokenStream], rows: list[np.ndarray], options: dict[str, Any]) -> list[Sequence]:
    """All forward passes needed for the activations of every unit."""
    sequences: list[Sequence] = []
    for stream, owners in zip(streams, rows):
        if loaded.kind == "causal":
            sequences += causal_state_sequences(stream, owners, loaded.max_length, min_context(loaded, options))
        else:
            sequences += seq2seq_state_sequences(stream, owners, loaded.max_length)
    return sequences


def output_metadata(name: str, block: dict[str, Any], options: dict[str, Any], stimuli_path, manifest: dict[str, Any], loaded: LoadedModel) -> dict[str, Any]:
    """The validity facts (:func:`expected_metadata`) plus what the run resolved."""
    return {
        **expected_metadata(name, block, options, stimuli_path, manifest),
        **loaded.facts,
        "max_length_used": loaded.max_length,
        "min_context_tokens_used": min_context(loaded, options) if loaded.kind == "causal" else None,
        "gguf_sha256": manifest.get("sha256"),
    }


def extract_activations(stimuli_path: str | Path, manifest_path: str | Path, block: dict[str, Any], options: dict[str, Any] | None, out_path: str | Path) -> None:
    """Write every unit's last-token activations at every layer (one row group per layer).

    Parameters
    ----------
    stimuli_path : str or Path
        Stimuli Parquet (``brainalign.io.read_stimuli``).
    manifest_path : str or Path
        The fetched model's manifest (``brainalign.models.fetch.fetch_model``).
    block : dict
        The model's config block.
    options : dict or None
        The config's ``extraction`` section (keys and defaults in the config schema).
    out_path : str or Path
        Activations Parquet to write (rows in stimuli-table order, layers 1..n_layers).
    """
    write_activations(stimuli_path, read_manifest(manifest_path), block, options, out_path)


def write_activations(stimuli_path: str | Path, manifest: dict[str, Any], block: dict[str, Any], options: dict[str, Any] | None, out_path: str | Path) -> None:
    """:func:`extract_activations` with the manifest already read (the CLI builds one)."""
    options = complete_options(options)
    stimuli = read_stimuli(stimuli_path)
    loaded = load_model(manifest, block, options)
    streams, rows = group_streams(stimuli, loaded, block.get("prompt_policy", "raw"))
    sequences = state_sequences(loaded, streams, rows, options)
    dtype = np.dtype(options["dtype_on_disk"])
    metadata = output_metadata(manifest["name"], block, options, stimuli_path, manifest, loaded)
    # States go to a disk-backed buffer beside the output (same file system): a 33B model
    # on a long stream would otherwise hold every layer in memory until the layer-wise write.
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out_path.name}.states-"
    for leftover in out_path.parent.glob(prefix + "*"):  # scratch of a killed run of this job
        shutil.rmtree(leftover, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=prefix) as scratch:
        buffer = np.lib.format.open_memmap(
            Path(scratch) / "states.npy", mode="w+", dtype=dtype, shape=state_shape(loaded, len(stimuli))
        )
        states = read_block_states(
            loaded, sequences, len(stimuli), dtype, int(options["batch_size"]), bool(options["show_progress"]), out=buffer
        )
        with ActivationWriter(out_path, stimuli["stimulus_id"].tolist(), states.shape[2], metadata, options["dtype_on_disk"]) as writer:
            for layer in range(states.shape[0]):
                writer.write_layer(layer + 1, np.asarray(states[layer]))
        del buffer, states
