"""Demo word-by-word reading times: a project-written story and simulated readers.

Generative model (seeded; ``block['simulation']``), for reader ``k`` and word ``w``::

    RT[k, w] = 300 ms + b_k + surprisal_ms_per_bit * s_w + length_ms_per_char * len_w + e[k, w]
    b_k ~ N(0, reader_sd_ms),  e[k, w] ~ N(0, noise_sd_ms)

where ``s_w`` is the source model's surprisal of the word in bits (extracted by the pipeline;
the first word, which has none, gets the mean) and ``len_w`` its length in characters
without punctuation. The expected outcome is known: the source model's surprisal correlates
best with the reader-averaged times, and the split-half ceiling follows from the noise SD.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainalign import io
from brainalign.errors import DataError

DEMO_LABEL = "DEMO DATA (simulated reading times; not human readers)"
SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
N_SECTIONS = 6
"""Contiguous sections of the story used as CV groups (stories play this role in Futrell2018)."""


def story_words(path: str | Path) -> pd.DataFrame:
    """Split the story into whitespace tokens with paragraph, sentence and position indices."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist: the demo story ships with the repository (resources/demo/).")
    rows = []
    sentence, word_in_sentence = 0, 0
    for paragraph, text in enumerate(p for p in path.read_text().split("\n\n") if p.strip()):
        for token in text.split():
            rows.append((paragraph, sentence, word_in_sentence, token))
            word_in_sentence += 1
            if SENTENCE_END.search(token):
                sentence, word_in_sentence = sentence + 1, 0
    if not rows:
        raise DataError(f"{path} holds no words.")
    return pd.DataFrame(rows, columns=["paragraph", "sentence_id", "word_in_sentence", "text"])


def prepare_stimuli(block: dict[str, Any], out_path: str | Path) -> None:
    """Write one stimulus per word; the story is one context stream, sections are CV groups."""
    words = story_words(block["files"]["story"])
    position = np.arange(len(words))
    section = position * N_SECTIONS // len(words) + 1
    zone = position - np.searchsorted(section, section) + 1
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"{s}.{z}" for s, z in zip(section, zone)],
            "context_group": "story",
            "position": position,
            "text": words["text"],
            "cv_group": [f"section-{s}" for s in section],
            "partition": "all",
            "item": section,
            "zone": zone,
            "sentence_id": words["sentence_id"],
            "word_in_sentence": words["word_in_sentence"],
        }
    )
    io.write_stimuli(out_path, stimuli, {"dataset_kind": "demo_reading_times", "demo": True, "label": DEMO_LABEL})


def word_length(text: pd.Series) -> np.ndarray:
    """Length in letters and digits (punctuation does not count)."""
    return text.str.count(r"[A-Za-z0-9]").to_numpy(dtype=np.float64)


def simulate_readers(surprisal: np.ndarray, length: np.ndarray, simulation: dict[str, Any]) -> np.ndarray:
    """Simulate a words x readers reading-time matrix (see the module docstring)."""
    rng = np.random.default_rng(simulation["seed"])
    filled = np.where(np.isfinite(surprisal), surprisal, np.nanmean(surprisal))
    expected = 300.0 + simulation["surprisal_ms_per_bit"] * filled + simulation["length_ms_per_char"] * length
    n_readers = simulation["n_readers"]
    offsets = rng.normal(0.0, simulation["reader_sd_ms"], n_readers)
    noise = rng.normal(0.0, simulation["noise_sd_ms"], (len(filled), n_readers))
    return (expected[:, None] + offsets[None, :] + noise).astype(np.float32)


def simulate_responses(
    block: dict[str, Any], stimuli_path: str | Path, out_path: str | Path, simulation_source: str | Path
) -> None:
    """Simulate per-reader reading times from the source model's surprisal."""
    simulation = block["simulation"]
    stimuli = io.read_stimuli(stimuli_path)
    io.check_metadata(simulation_source, {"stimuli_sha256": io.stimuli_checksum(stimuli_path)})
    surprisal = io.read_table(simulation_source)
    order = io.align_rows(
        pd.Index(stimuli["stimulus_id"]), pd.Index(surprisal["stimulus_id"]), "surprisal", str(simulation_source)
    )
    times = simulate_readers(
        surprisal["surprisal_bits"].to_numpy(dtype=np.float64)[order], word_length(stimuli["text"]), simulation
    )
    readers = pd.DataFrame(
        {
            "neuroid_id": [f"reader-{k + 1:02d}" for k in range(simulation["n_readers"])],
            "subject": [f"reader-{k + 1:02d}" for k in range(simulation["n_readers"])],
            "roi": "reader",
        }
    )
    io.write_responses(
        out_path,
        stimuli["stimulus_id"],
        times,
        readers,
        {"dataset_kind": "demo_reading_times", "demo": True, "label": DEMO_LABEL, "simulation": simulation},
    )
