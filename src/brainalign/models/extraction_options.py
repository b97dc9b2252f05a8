"""Extraction options and the validity facts stored with activations and surprisal.

The facts returned by :func:`expected_metadata` are written into every activation and
surprisal file and can be computed by the workflow from the config alone (plus the
fetched model's manifest and the stimuli file), so a reader refuses a stale file with
``brainalign.io.read_activations(path, layer, expected=expected_metadata(...))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brainalign.errors import ConfigError
from brainalign.io import stimuli_checksum
from brainalign.options import resolve_options

READOUTS = ("aw2024", "unit")
"""``aw2024``: the paper's features and surprisal (:mod:`brainalign.models.paper_readout`);
``unit``: each unit's last token in one stream per context group, block outputs."""

SECTION = "extraction"
"""The config section of the extraction options (their defaults and descriptions)."""
JOB_FACTS = ("$defs.readout", "datasets.*.time_series")
"""Keys the workflow sets per job: the protocol's ``readout``, and the dataset's ``time_series``
(under aw2024 a time series's words are read from windows of ``word_window`` words)."""


def complete_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Return the extraction options with defaults filled in; unknown keys are refused."""
    completed = resolve_options(SECTION, options, JOB_FACTS)
    if completed["readout"] not in READOUTS:
        raise ConfigError(f"readout {completed['readout']!r} is unknown; use one of {list(READOUTS)}.")
    if completed["min_context_tokens"] is not None and int(completed["min_context_tokens"]) < 1:
        raise ConfigError("extraction.min_context_tokens must be at least 1 (or null for half the context).")
    if int(completed["batch_size"]) < 1:
        raise ConfigError("extraction.batch_size must be at least 1.")
    if int(completed["word_window"]) < 1:
        raise ConfigError("extraction.word_window must be at least 1 (the word itself).")
    return completed


def reads_word_windows(options: dict[str, Any]) -> bool:
    """Whether the activations are the aw2024 word windows of a time series (Toneva & Wehbe 2019)."""
    return options["readout"] == "aw2024" and bool(options["time_series"])


def pooling(options: dict[str, Any]) -> str:
    """Name how a unit's tokens become one vector."""
    return "mean of the last word's tokens" if reads_word_windows(options) else "last-token"


def context_policy(block: dict[str, Any], options: dict[str, Any]) -> str:
    """Describe how context is built: the group so far (or a word window), and how long streams are cut."""
    if reads_word_windows(options):
        return (
            f"aw2024 word window: per word, the {int(options['word_window'])} words of its context group ending with "
            f"it "
            "(fewer at the group's start) joined by single spaces (blank words dropped, no space before .,!?;:), "
            "tokenized afresh with special tokens; the hooked output averaged over the tokens of the last word "
            "(special tokens excluded)"
        )
    if options["readout"] == "aw2024":
        return (
            "aw2024: per unit, the context group's parts so far joined by single spaces (blank parts dropped, "
            "no space before .,!?;:), tokenized afresh with special tokens, left-truncated at the tokenizer's "
            "model_max_length; read at the context's last position"
        )
    if block.get("kind", "causal") == "seq2seq":
        cut = "each prefix left-truncated to max_length"
    else:
        minimum = options["min_context_tokens"]
        cut = f"sliding windows, min_context_tokens={'half' if minimum is None else int(minimum)}"
    return f"context-group so far; units joined by single spaces; {cut}"


def hooked_module(block: dict[str, Any], readout: str) -> str:
    """Name the module read at each layer: the block, or the block's ``aw2024_module`` submodule."""
    submodule = block.get("aw2024_module") if readout == "aw2024" else None
    return f"block.{submodule}" if submodule else "block"


def expected_metadata(
    name: str,
    block: dict[str, Any],
    options: dict[str, Any] | None,
    stimuli_path: str | Path,
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """Return the facts an activation or surprisal file must carry to be valid for this config.

    Parameters
    ----------
    name : str
        The model's config key.
    block : dict
        The model's config block.
    options : dict or None
        The config's ``extraction`` section.
    stimuli_path : str or Path
        The stimuli Parquet the file was computed from.
    manifest : dict
        The fetched model's manifest (``brainalign.models.loading.read_manifest``).
    """
    options = complete_options(options)
    source = block.get("source") or {}
    kind = block.get("kind", "causal")
    return {
        "model": name,
        "source": source.get("type"),
        "hub_id": source.get("hf_id"),
        "revision": manifest.get("revision"),
        "kind": kind,
        "dtype": block.get("dtype", "auto"),
        "pooling": pooling(options),
        "readout": options["readout"],
        "hooked_module": hooked_module(block, options["readout"]),
        "context_policy": context_policy(block, options),
        "prompt_policy": block.get("prompt_policy", "raw"),
        "seq2seq_layers": block.get("seq2seq_layers", "paper") if kind == "seq2seq" else None,
        "n_layers": block.get("n_layers"),
        "max_length": block.get("max_length"),
        "stimuli_sha256": stimuli_checksum(stimuli_path),
    }
