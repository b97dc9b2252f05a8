"""Batched forward passes that read block outputs and next-token log-probabilities.

Sequences are right-padded: a causal position attends only to earlier (real) tokens, and
T5's encoder masks the padded keys, so padding never changes a real position's values.
Block outputs are read with forward hooks that keep only the requested positions, so
memory holds one batch's activations plus the per-unit results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from brainalign.models.loading import LoadedModel

LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Sequence:
    """One forward pass's input and what to read from it.

    Attributes
    ----------
    input_ids : np.ndarray
        Token ids (the encoder's for seq2seq).
    positions : np.ndarray
        Positions to read: a block output's position (states) or the position whose
        logits predict ``targets`` (surprisal); in the decoder for seq2seq.
    owners : np.ndarray
        The unit (row in the output) each read position belongs to; a unit's states read
        at several positions (all in this sequence) are averaged.
    targets : np.ndarray or None
        Token ids predicted at ``positions`` (surprisal only).
    decoder_ids : np.ndarray or None
        Decoder input ids (seq2seq only).
    """

    input_ids: np.ndarray
    positions: np.ndarray
    owners: np.ndarray
    targets: np.ndarray | None = None
    decoder_ids: np.ndarray | None = None


def _batches(sequences: list[Sequence], batch_size: int) -> Iterator[list[Sequence]]:
    """Yield batches of similar lengths (longest first, so memory errors surface early)."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i].input_ids))
    for start in range(0, len(order), batch_size):
        yield [sequences[i] for i in order[start : start + batch_size]]


def _pad(rows: list[np.ndarray], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
        mask[index, : len(row)] = 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def _read_index(batch: list[Sequence]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    rows = np.concatenate([np.full(len(s.positions), i) for i, s in enumerate(batch)])
    cols = np.concatenate([s.positions for s in batch])
    owners = np.concatenate([s.owners for s in batch])
    return torch.from_numpy(rows), torch.from_numpy(cols), owners


def _pad_id(loaded: LoadedModel) -> int:
    pad = loaded.tokenizer.pad_token_id
    return int(pad) if pad is not None else 0


class _ModuleReader:
    """Forward hooks that copy selected positions of every hooked module's output to the CPU."""

    def __init__(self, modules: list[torch.nn.Module]):
        self.rows = self.cols = None
        self.outputs: list[torch.Tensor] = []
        self.handles = [module.register_forward_hook(self._hook) for module in modules]

    def _hook(self, module, args, output) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        picked = hidden[self.rows.to(hidden.device), self.cols.to(hidden.device)]
        self.outputs.append(picked.float().cpu())

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _run_model(loaded: LoadedModel, batch: list[Sequence], with_decoder: bool) -> torch.Tensor:
    """Run the blocks on a batch; return the last block stack's final hidden states."""
    device, pad_id = loaded.input_device, _pad_id(loaded)
    input_ids, mask = _pad([s.input_ids for s in batch], pad_id, device)
    model = loaded.model
    if loaded.kind == "causal":
        return model.base_model(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
    encoded = model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
    if not with_decoder:
        return encoded
    decoder_rows = [s.input_ids if s.decoder_ids is None else s.decoder_ids for s in batch]
    decoder_ids, decoder_mask = _pad(decoder_rows, pad_id, device)
    return model.get_decoder()(
        input_ids=decoder_ids,
        attention_mask=decoder_mask,
        encoder_hidden_states=encoded.to(decoder_ids.device),
        encoder_attention_mask=mask.to(decoder_ids.device),
        use_cache=False,
    ).last_hidden_state


def state_shape(loaded: LoadedModel, n_units: int) -> tuple[int, int, int]:
    """Shape (n_layers, n_units, width) of the states :func:`read_block_states` fills."""
    return len(loaded.blocks), n_units, loaded.model.get_input_embeddings().weight.shape[1]


@torch.inference_mode()
def read_block_states(
    loaded: LoadedModel,
    sequences: list[Sequence],
    n_units: int,
    dtype: np.dtype,
    batch_size: int,
    progress: bool,
    out: np.ndarray | None = None,
    modules: list[torch.nn.Module] | None = None,
) -> np.ndarray:
    """Return every layer's output at the requested positions, shape (n_layers, n_units, width).

    A unit read at several positions gets their mean (e.g. the tokens of a word).

    For seq2seq models under the paper convention the decoder reads the encoder's input
    ids (``decoder_input_ids = input_ids``), and decoder blocks follow the encoder blocks.
    ``out`` (e.g. a disk-backed memmap of :func:`state_shape`) receives the states, so
    memory stays bounded by the model plus one batch. ``modules`` (one per block, e.g. a
    submodule of each) are hooked instead of the blocks themselves.
    """
    states = np.zeros(state_shape(loaded, n_units), dtype=dtype) if out is None else out
    with_decoder = len(loaded.blocks) > loaded.n_encoder_layers
    reader = _ModuleReader(loaded.blocks if modules is None else modules)
    try:
        for batch in tqdm(
            list(_batches(sequences, batch_size)), desc=f"{loaded.name} activations", disable=not progress
        ):
            reader.rows, reader.cols, owners = _read_index(batch)
            reader.outputs = []
            _run_model(loaded, batch, with_decoder)
            units, average = _unit_means(owners)
            for layer, picked in enumerate(reader.outputs):
                states[layer, units] = average(picked).numpy()
    finally:
        reader.close()
    return states


def _unit_means(owners: np.ndarray) -> tuple[np.ndarray, Callable[[torch.Tensor], torch.Tensor]]:
    """The units read in a batch and a function averaging each unit's read rows.

    A unit read once keeps its row exactly (a sum of one row divided by one).
    """
    units, inverse, counts = np.unique(owners, return_inverse=True, return_counts=True)
    index = torch.from_numpy(inverse.reshape(-1))
    divisor = torch.from_numpy(counts).float()[:, None]

    def average(picked: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros((len(units), picked.shape[1]), dtype=picked.dtype).index_add_(0, index, picked)
        return sums / divisor

    return units, average


def _logits(loaded: LoadedModel, hidden: torch.Tensor) -> torch.Tensor:
    """Apply the LM head (and Gemma's logit soft-capping) to selected final hidden states."""
    model = loaded.model
    if loaded.kind == "seq2seq" and getattr(model.config, "tie_word_embeddings", False):
        hidden = hidden * model.config.d_model**-0.5  # T5 rescales before a tied head
    logits = model.get_output_embeddings()(hidden).float()
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    cap = getattr(config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


@torch.inference_mode()
def read_surprisal_bits(
    loaded: LoadedModel, sequences: list[Sequence], n_units: int, batch_size: int, progress: bool
) -> np.ndarray:
    """Return per unit the summed surprisal (bits) of its target tokens."""
    bits = np.zeros(n_units)
    for batch in tqdm(list(_batches(sequences, batch_size)), desc=f"{loaded.name} surprisal", disable=not progress):
        rows, cols, owners = _read_index(batch)
        hidden = _run_model(loaded, batch, with_decoder=True)
        logits = _logits(loaded, hidden[rows.to(hidden.device), cols.to(hidden.device)])
        targets = torch.from_numpy(np.concatenate([s.targets for s in batch])).to(logits.device)
        log_probs = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
        np.add.at(bits, owners, (-log_probs / LOG2).double().cpu().numpy())
    return bits
