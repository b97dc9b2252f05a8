"""Per-layer activations of every stimulus unit, with its context group as context.

Two readouts (``extraction.readout``, set per protocol by the workflow) share one loaded
model: ``aw2024`` reproduces the paper's features (:mod:`brainalign.models.paper_readout`;
for a time series, ``extraction.time_series``, each word's window of ``word_window`` words);
``unit``, described below, reads each unit's own last token.

Layer convention (both kinds): layer ``k`` (1..n_layers) is the output of transformer
block ``k`` as a forward hook on that block sees it, before any final layer norm (as
Brain-Score hooks block outputs); the embeddings are not stored. For seq2seq models under
``seq2seq_layers: paper`` (Aw et al. 2024), the same ids go to encoder and decoder
(``decoder_input_ids = input_ids``) and layers 1..E are the encoder blocks, E+1..E+D the
decoder blocks; under ``seq2seq_layers: encoder`` only the E encoder blocks are layers.

Under ``unit``, a unit's representation is the state at its last token (see
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

import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from brainalign.errors import ConfigError
from brainalign.io import ActivationWriter, read_stimuli
from brainalign.models.extraction_options import READOUTS, complete_options, expected_metadata, reads_word_windows
from brainalign.models.forward import Sequence, read_block_states, state_shape
from brainalign.models.loading import LoadedModel, load_model, read_manifest
from brainalign.models.paper_readout import paper_state_sequences, word_window_sequences
from brainalign.models.streams import TokenStream, plan_windows, tokenize_stream, truncated_start


def group_streams(
    stimuli: pd.DataFrame, loaded: LoadedModel, prompt_policy: str
) -> tuple[list[TokenStream], list[np.ndarray]]:
    """Tokenize each context group; return the streams and, per stream, its units' rows in ``stimuli``."""
    streams, rows = [], []
    for _, group in stimuli.groupby("context_group", sort=False):
        group = group.sort_values("position")
        streams.append(
            tokenize_stream(
                loaded.tokenizer, group["text"].astype(str).tolist(), group["stimulus_id"].tolist(), prompt_policy
            )
        )
        rows.append(group.index.to_numpy())
    return streams, rows


def min_context(loaded: LoadedModel, options: dict[str, Any]) -> int:
    """Return the minimum context of a unit in a window (default: half the maximum length)."""
    value = options["min_context_tokens"]
    return loaded.max_length // 2 if value is None else int(value)


def causal_state_sequences(
    stream: TokenStream, owners: np.ndarray, max_length: int, min_context_tokens: int
) -> list[Sequence]:
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


def state_sequences(
    loaded: LoadedModel, stimuli: pd.DataFrame, prompt_policy: str, options: dict[str, Any]
) -> list[Sequence]:
    """All forward passes needed for the activations of every unit under ``options['readout']``."""
    if reads_word_windows(options):
        return word_window_sequences(loaded, stimuli, prompt_policy, int(options["word_window"]))
    if options["readout"] == "aw2024":
        return paper_state_sequences(loaded, stimuli, prompt_policy)
    sequences: list[Sequence] = []
    for stream, owners in zip(*group_streams(stimuli, loaded, prompt_policy)):
        if loaded.kind == "causal":
            sequences += causal_state_sequences(stream, owners, loaded.max_length, min_context(loaded, options))
        else:
            sequences += seq2seq_state_sequences(stream, owners, loaded.max_length)
    return sequences


def readout_modules(loaded: LoadedModel, block: dict[str, Any], readout: str) -> list[nn.Module]:
    """The module hooked at each layer: the block, or under aw2024 its ``aw2024_module`` submodule.

    Raises
    ------
    ConfigError
        When a block has no such submodule.
    """
    submodule = block.get("aw2024_module") if readout == "aw2024" else None
    if not submodule:
        return list(loaded.blocks)
    modules = []
    for index, layer in enumerate(loaded.blocks):
        try:
            modules.append(layer.get_submodule(submodule))
        except AttributeError as error:
            children = [name for name, _ in layer.named_children()]
            raise ConfigError(
                f"models.{loaded.name}.aw2024_module is {submodule!r}, but block {index} ({type(layer).__name__}) "
                f"has no such submodule; its children are {children}. Name one of them, or remove the key to read "
                f"block outputs."
            ) from error
    return modules


def hooked_module_names(loaded: LoadedModel, modules: list[nn.Module]) -> list[str]:
    """The hooked modules' paths in the model, with the block index written ``{block}``."""
    names = {id(module): name for name, module in loaded.model.named_modules()}
    patterns = (re.sub(r"\.\d+(?=\.|$)", ".{block}", names[id(module)], count=1) for module in modules)
    return list(dict.fromkeys(patterns))


def truncation_policy(loaded: LoadedModel, options: dict[str, Any]) -> str:
    """Describe where long contexts are cut, as resolved for this model."""
    if options["readout"] == "unit":
        return f"unit streams cut into windows of max_length={loaded.max_length} tokens"
    if reads_word_windows(options):
        return f"none: every word window must fit the tokenizer's model_max_length={loaded.tokenizer_max_length}"
    if loaded.tokenizer_max_length is None:
        return "none: the tokenizer's model_max_length is unbounded"
    return f"left, at the tokenizer's model_max_length={loaded.tokenizer_max_length} tokens"


def output_metadata(
    name: str,
    block: dict[str, Any],
    options: dict[str, Any],
    stimuli_path,
    manifest: dict[str, Any],
    loaded: LoadedModel,
    modules: list[nn.Module] | None = None,
) -> dict[str, Any]:
    """The validity facts (:func:`expected_metadata`) plus what the run resolved.

    ``modules``: the modules hooked at each layer (None for surprisal, read from the logits).
    """
    unit_windows = options["readout"] == "unit" and loaded.kind == "causal"
    return {
        **expected_metadata(name, block, options, stimuli_path, manifest),
        **loaded.facts,
        "hooked_modules": hooked_module_names(loaded, modules) if modules else None,
        "truncation": truncation_policy(loaded, options),
        "max_length_used": loaded.max_length,
        "min_context_tokens_used": min_context(loaded, options) if unit_windows else None,
        "gguf_sha256": manifest.get("sha256"),
    }


def extract_activations(
    stimuli_path: str | Path,
    manifest_path: str | Path,
    block: dict[str, Any],
    options: dict[str, Any] | None,
    out_path: str | Path | Mapping[str, str | Path],
) -> None:
    """Write every unit's activations at every layer (one row group per layer), per readout.

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
    out_path : str, Path or mapping
        Activations Parquet to write (rows in stimuli-table order, layers 1..n_layers) under
        ``options['readout']``, or a mapping from readout to path: every readout is then
        computed with one load of the model.
    """
    write_activations(stimuli_path, read_manifest(manifest_path), block, options, out_path)


def outputs_by_readout(options: dict[str, Any], out_path: str | Path | Mapping[str, str | Path]) -> dict[str, Path]:
    """Map each readout to write onto its output path (a single path: ``options['readout']``).

    Raises
    ------
    ConfigError
        For an unknown readout, before the model is loaded.
    """
    if not isinstance(out_path, Mapping):
        return {options["readout"]: Path(out_path)}
    unknown = sorted(set(out_path) - set(READOUTS))
    if unknown:
        raise ConfigError(f"readouts {unknown} are unknown; use some of {list(READOUTS)}.")
    return {readout: Path(path) for readout, path in out_path.items()}


def write_activations(
    stimuli_path: str | Path,
    manifest: dict[str, Any],
    block: dict[str, Any],
    options: dict[str, Any] | None,
    out_path: str | Path | Mapping[str, str | Path],
) -> None:
    """:func:`extract_activations` with the manifest already read (the CLI builds one)."""
    options = complete_options(options)
    outputs = outputs_by_readout(options, out_path)
    stimuli = read_stimuli(stimuli_path)
    loaded = load_model(manifest, block, options)
    for readout, path in outputs.items():
        readout_options = {**options, "readout": readout}
        modules = readout_modules(loaded, block, readout)
        sequences = state_sequences(loaded, stimuli, block.get("prompt_policy", "raw"), readout_options)
        metadata = output_metadata(manifest["name"], block, readout_options, stimuli_path, manifest, loaded, modules)
        write_states(loaded, sequences, modules, stimuli, readout_options, metadata, path)


def write_states(
    loaded: LoadedModel,
    sequences: list[Sequence],
    modules: list[nn.Module],
    stimuli: pd.DataFrame,
    options: dict[str, Any],
    metadata: dict[str, Any],
    out_path: Path,
) -> None:
    """Run the sequences, reading ``modules`` at every layer, and write the activations file."""
    dtype = np.dtype(options["dtype_on_disk"])
    # States go to a disk-backed buffer beside the output (same file system): a 33B model
    # on a long stream would otherwise hold every layer in memory until the layer-wise write.
    out_path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out_path.name}.states-"
    for leftover in out_path.parent.glob(prefix + "*"):  # scratch of a killed run of this job
        shutil.rmtree(leftover, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=prefix) as scratch:
        buffer = np.lib.format.open_memmap(
            Path(scratch) / "states.npy", mode="w+", dtype=dtype, shape=state_shape(loaded, len(stimuli))
        )
        states = read_block_states(
            loaded,
            sequences,
            len(stimuli),
            dtype,
            int(options["batch_size"]),
            bool(options["show_progress"]),
            out=buffer,
            modules=modules,
        )
        with ActivationWriter(
            out_path, stimuli["stimulus_id"].tolist(), states.shape[2], metadata, options["dtype_on_disk"]
        ) as writer:
            for layer in range(states.shape[0]):
                writer.write_layer(layer + 1, np.asarray(states[layer]))
        del buffer, states
