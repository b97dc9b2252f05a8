"""``brainalign extract`` and ``brainalign surprisal``: the model stages outside the workflow;
``brainalign add-model`` and ``brainalign lock-revisions``: the config's model entries.

``--model`` is a local snapshot folder, a GGUF file (or a folder with ``--gguf-file``), or
a hub id (loaded through the hub cache, so it needs internet or a filled cache).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from brainalign.errors import DataError, ModelError
from brainalign.io import sha256_file, write_surprisal
from brainalign.models.extraction import write_activations
from brainalign.models.extraction_options import READOUTS, complete_options
from brainalign.models.fetch import HUB_TIMEOUT_S, locate_model
from brainalign.models.loading import load_model
from brainalign.models.revisions import REVISION_LOCK, lock_config_revisions, pinned_commit
from brainalign.models.surprisal import surprisal_table
from brainalign.options import schema_default


def model_location(model: str, gguf_file: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (manifest, source) for a ``--model`` argument."""
    path = Path(model)
    if path.exists():
        gguf = path if path.is_file() else (path / gguf_file if gguf_file else None)
        source = {"type": "gguf", "path": str(gguf)} if gguf else {"type": "local", "path": str(path)}
        name = path.stem if path.is_file() else path.name
        return {"name": name, **locate_model(name, source, path.parent)}, source
    manifest = {"name": model, "folder": model, "gguf_file": gguf_file, "revision": None, "local_files_only": False}
    return manifest, {"type": "hub", "hf_id": model}


def _block(args: argparse.Namespace, source: dict[str, Any]) -> dict[str, Any]:
    block = {
        "source": source,
        "kind": args.kind,
        "dtype": args.dtype,
        "max_length": args.max_length,
        "prompt_policy": args.prompt_policy,
        "trust_remote_code": args.trust_remote_code,
    }
    if args.kind == "seq2seq":
        block["seq2seq_layers"] = args.seq2seq_layers
    return block


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return complete_options(
        {
            "readout": args.readout,
            "batch_size": args.batch_size,
            "min_context_tokens": args.min_context_tokens,
            "device": args.device,
            "dtype_on_disk": args.dtype_on_disk,
            "show_progress": True,
            "time_series": args.time_series,
            "word_window": args.word_window,
        }
    )


def run_extract(args: argparse.Namespace) -> None:
    """Handler of ``brainalign extract``."""
    manifest, source = model_location(args.model, args.gguf_file)
    write_activations(args.stimuli, manifest, _block(args, source), _options(args), args.out)
    print(f"wrote {args.out}")


def read_words(path: str | Path) -> pd.DataFrame:
    """Read a word list (one word per line, one context stream) as a stimuli table."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist. Give a text file with one word per line.")
    words = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not words:
        raise DataError(f"{path} has no words. Give a text file with one word per line.")
    return pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(len(words))],
            "context_group": "words",
            "position": range(len(words)),
            "text": words,
        }
    )


def run_surprisal(args: argparse.Namespace) -> None:
    """Handler of ``brainalign surprisal``."""
    manifest, source = model_location(args.model, args.gguf_file)
    block, options = _block(args, source), _options(args)
    stimuli = read_words(args.words)
    loaded = load_model(manifest, block, options)
    table = surprisal_table(loaded, stimuli, args.prompt_policy, options)
    table.insert(1, "word", stimuli["text"].to_numpy())
    metadata = {"model": args.model, "readout": args.readout, "words_sha256": sha256_file(args.words), **loaded.facts}
    write_surprisal(args.out, table, metadata)
    print(f"wrote {args.out}")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="local snapshot folder, GGUF file, or hub id")
    parser.add_argument("--gguf-file", help="GGUF file name inside the --model folder")
    parser.add_argument("--kind", choices=["causal", "seq2seq"], default="causal")
    parser.add_argument("--seq2seq-layers", choices=["paper", "encoder"], default="paper")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto")
    parser.add_argument("--max-length", type=int, help="context length in tokens (default: the model's)")
    parser.add_argument("--prompt-policy", choices=["raw", "template"], default="raw")
    parser.add_argument("--trust-remote-code", action="store_true", help="run code shipped with the model")
    parser.add_argument(
        "--readout",
        choices=READOUTS,
        default=schema_default("$defs.readout"),
        help="aw2024: the paper's per-part contexts and readout; unit: each unit's last token in one stream",
    )
    parser.add_argument("--batch-size", type=int, default=schema_default("extraction.batch_size"))
    parser.add_argument("--min-context-tokens", type=int, help="minimum context in sliding windows (default: half)")
    parser.add_argument(
        "--time-series",
        action="store_true",
        help="the units are the words of a time series (Wehbe2014): --readout aw2024 reads word windows",
    )
    parser.add_argument(
        "--word-window",
        type=int,
        default=schema_default("extraction.word_window"),
        help="words per window under --time-series --readout aw2024, the word included",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--dtype-on-disk", choices=["float32", "float16"], default="float32")


def run_add_model(args: argparse.Namespace) -> None:
    from brainalign.models.add_model import add_model

    options = {
        "revision": args.revision,
        "family": args.family,
        "base": args.base,
        "instruction_tuned": args.instruction_tuned,
        "suite": args.suite,
    }
    block = add_model(args.config, args.source, args.name, options)
    print(
        f"added {args.name} to {args.config}: {block['kind']}, {block['n_layers']} layers, "
        f"{block['parameters']:,} parameters, family {block['family']}"
        + (f", instruction-tuned on base {block['base']}" if block.get("base") else "")
        + (f"; in suite {args.suite}" if args.suite else "")
        + ". `snakemake -n` now plans its jobs."
    )


def run_lock_revisions(args: argparse.Namespace) -> None:
    import yaml

    models = yaml.safe_load(Path(args.config).read_text())["models"]
    if args.resolve:
        for name, block in models.items():
            if (block.get("source") or {}).get("type") == "hub":
                pinned_commit(name, block["source"], args.lock, HUB_TIMEOUT_S)
    outcome = lock_config_revisions(args.config, args.lock, models)
    for name, commit in outcome["written"].items():
        print(f"{name}: {commit}")
    if outcome["unresolved"]:
        reasons = "\n  ".join(f"{name}: {reason}" for name, reason in outcome["unresolved"].items())
        raise ModelError(
            f"{len(outcome['unresolved'])} hub model(s) keep a branch or tag in {args.config}:\n  {reasons}\n"
            "Fetch them first (`snakemake --until fetch_model` on a node with internet) or rerun with --resolve."
        )


def register(subparsers) -> None:
    """Add the ``extract``, ``surprisal``, ``add-model`` and ``lock-revisions`` subcommands."""
    extract = subparsers.add_parser("extract", help="per-layer last-token activations of a stimuli table")
    _model_arguments(extract)
    extract.add_argument("--stimuli", required=True, help="stimuli Parquet")
    extract.add_argument("--out", required=True, help="activations Parquet to write")
    extract.set_defaults(func=run_extract)
    surprisal = subparsers.add_parser("surprisal", help="per-word surprisal (bits) of a word list")
    _model_arguments(surprisal)
    surprisal.add_argument("--words", required=True, help="text file, one word per line, one context stream")
    surprisal.add_argument("--out", required=True, help="surprisal Parquet to write")
    surprisal.set_defaults(func=run_surprisal)
    add = subparsers.add_parser("add-model", help="add a checkpoint to the config, reading its kind, layers and size")
    add.add_argument("source", help="hub id (owner/name), local snapshot folder, or .gguf file")
    add.add_argument("--name", required=True, help="the model's config key")
    add.add_argument("--base", help="its vanilla partner (marks the model instruction-tuned)")
    add.add_argument("--instruction-tuned", action="store_true", help="instruction-tuned, without a base in the config")
    add.add_argument("--family", help="family label (default: the checkpoint's model type)")
    add.add_argument("--suite", help="also add it to this suite's models")
    add.add_argument(
        "--revision", default="main", help="hub branch, tag or commit (default main, locked on first fetch)"
    )
    add.add_argument("--config", default="config.yaml", help="config file to edit (default config.yaml)")
    add.set_defaults(func=run_add_model)
    lock = subparsers.add_parser("lock-revisions", help="write the locked hub commits into the config")
    lock.add_argument("--config", default="config.yaml", help="config file to edit (default config.yaml)")
    lock.add_argument("--lock", default=REVISION_LOCK, help=f"revision lock file (default {REVISION_LOCK})")
    lock.add_argument("--resolve", action="store_true", help="first resolve unlocked branches and tags on the hub")
    lock.set_defaults(func=run_lock_revisions)
