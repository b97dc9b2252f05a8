"""How reproducible is surprisal, run to run and across float32 kernel paths?

Run from the repository root::

    python tests/benchmarks/reproducibility.py [--repeats 3]

The workflow tests' tiny GPT-2 (``tests/integration``: random, seed 2) reads the tiny story
with the tiny suite's extraction settings. Each case runs in a fresh process and is
compared with the first (same thread count, batch size and kernels) word by word:

- the same settings again, with 1 or 2 threads, with a CPU-bound process beside it, with
  the allocator shifted between repeats: the run-to-run conditions a CI machine varies;
- the same inputs through another kernel path: a smaller batch (other matrix shapes),
  ATen's AVX2 or scalar kernels instead of AVX-512, MKL's conditional numerical
  reproducibility mode ``COMPATIBLE``.

It prints, per case, the share of words whose surprisal differs at all, the largest
relative difference, and that difference in float32 epsilons.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
STORY = ROOT / "tests" / "integration" / "resources" / "story.txt"
TINY_GPT2 = {"n_embd": 32, "n_layer": 3, "n_head": 2, "n_positions": 128, "initializer_range": 0.5}
CASES = [
    ("same settings", {}, {"threads": 2, "batch_size": 8}),
    ("1 thread", {}, {"threads": 1, "batch_size": 8}),
    ("beside a busy process", {}, {"threads": 2, "batch_size": 8, "busy": True}),
    ("allocator shifted", {}, {"threads": 2, "batch_size": 8, "shift": True}),
    ("batch size 1", {}, {"threads": 2, "batch_size": 1}),
    ("ATen AVX2 kernels", {"ATEN_CPU_CAPABILITY": "avx2"}, {"threads": 2, "batch_size": 8}),
    ("ATen scalar kernels", {"ATEN_CPU_CAPABILITY": "default"}, {"threads": 2, "batch_size": 8}),
    ("MKL_CBWR=COMPATIBLE", {"MKL_CBWR": "COMPATIBLE"}, {"threads": 2, "batch_size": 8}),
]

WORKER = """
import json, sys
import numpy as np, torch
from brainalign.models.extraction_options import complete_options
from brainalign.models.cli import read_words
from brainalign.models.loading import load_model
from brainalign.models.surprisal import surprisal_table
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
options = complete_options({"batch_size": args["batch_size"], "min_context_tokens": 16})
block = {"kind": "causal", "dtype": "float32", "n_layers": 3}
loaded = load_model({"name": "tiny-gpt2", "folder": args["model"]}, block, options)
if args.get("shift"):
    kept = [torch.empty(n) for n in (17, 1023, 4099)]  # moves later allocations
bits = surprisal_table(loaded, read_words(args["words"]), "raw", options)["surprisal_bits"].to_numpy()
np.save(args["out"], bits)
"""


def run_case(folder: Path, name: str, env: dict[str, str], settings: dict) -> np.ndarray:
    out = folder / f"{len(list(folder.glob('*.npy')))}.npy"
    arguments = {**settings, "model": str(folder / "model"), "words": str(folder / "words.txt"), "out": str(out)}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if settings.get("busy") else None
    try:
        subprocess.run(
            [sys.executable, "-c", WORKER, json.dumps(arguments)],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    return np.load(out, allow_pickle=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case")
    args = parser.parse_args()
    from brainalign.models.random_models import save_random_model

    eps = float(np.finfo(np.float32).eps)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_random_model(folder / "model", "gpt2", 2, TINY_GPT2)
        (folder / "words.txt").write_text("\n".join(STORY.read_text(encoding="utf-8").split()), encoding="utf-8")
        reference = run_case(folder, *CASES[0])
        print(f"{len(reference)} words; each case against a first run with 2 threads, batch size 8, default kernels")
        print(f"{'case':<24} {'runs':>4} {'words differing':>16} {'max rel. diff':>14} {'float32 eps':>12}")
        for name, env, settings in CASES:
            differing, largest = [], 0.0
            for _ in range(args.repeats):
                bits = run_case(folder, name, env, settings)
                valid = np.isfinite(reference)
                differing.append(float(np.mean(bits[valid] != reference[valid])))
                largest = max(largest, float(np.max(np.abs(bits[valid] - reference[valid]) / np.abs(reference[valid]))))
            print(f"{name:<24} {args.repeats:>4} {max(differing):>15.1%} {largest:>14.2e} {largest / eps:>12.0f}")


if __name__ == "__main__":
    main()
