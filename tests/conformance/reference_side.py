"""The paper's code on tiny models: runs in the reference environment, never in the project's.

Executed by ``tests/conformance`` with the interpreter of the side environment that holds
brain-score/language at the paper's commit (see ``tests/conformance/setup_reference.sh``).
It imports nothing of brainalign. Sub-commands (arguments are paths):

- ``build OUT``: tiny random GPT-2, LLaMA and T5 models with real tokenizers: GPT-2's
  byte-level BPE (``GPT2TokenizerFast``), SentencePiece models trained here for
  ``LlamaTokenizerFast`` (prepends ``<s>``) and ``T5TokenizerFast`` (appends ``</s>``), each
  with a small ``model_max_length`` so that long stories are truncated.
- ``features MODEL_DIR KIND MODULES_JSON GROUPS_JSON OUT``: ``HuggingfaceSubject.digest_text``
  per context group, every listed module recorded; OUT (npz) holds ``group_<k>`` arrays of
  shape (n_parts, n_modules, width).
- ``surprisal MODEL_DIR KIND WORDS_JSON OUT``: ``estimate_reading_times`` over all words as
  one text (the Futrell2018 benchmark's call); OUT (npy).
- ``metric FEATURES RESPONSES IDS_JSON OUT``: ``linear_pearsonr`` on assemblies in the given
  stored order; OUT (npy) the per-split, per-neuroid r.
- ``blank_ceiling RESPONSES IDS_JSON SUBJECTS_JSON OUT``: the Blank2014 benchmark's
  ``ExtrapolationCeiling`` with ``linear_pearsonr`` on an assembly in the given stored order
  (``subject_id`` per neuroid); OUT (npz) ``neuroid_id`` and ``ceiling`` per neuroid, and the
  dataset ``center``.

Models are loaded as the paper's registrations load them: causal models by
``HuggingfaceSubject`` itself from ``model_id``, T5 passed as ``model=`` built with
``AutoModelForSeq2SeqLM``; the tokenizer is always the subject's own (``truncation_side='left'``).
"""

from __future__ import annotations

import io
import json
import string
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")

MAX_LENGTH = 48
DEMO = Path(__file__).resolve().parents[2] / "resources" / "demo"


def training_lines() -> list[str]:
    """The demo passages' sentences and the demo story: every character the tests feed."""
    sentences = [line.split("\t")[3] for line in (DEMO / "passages.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    # Every printable ASCII character, so that no test text meets <unk>, which the two
    # transformers versions encode differently.
    return sentences + (DEMO / "story.txt").read_text(encoding="utf-8").splitlines() + [string.printable.strip()]


def _sentencepiece(model_type: str, **ids: int) -> bytes:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_lines()), model_writer=model,
        vocab_size=300, model_type=model_type, character_coverage=1.0, minloglevel=2, **ids,
    )
    return model.getvalue()


def build(out: str) -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM, LlamaTokenizerFast,
        T5Config, T5ForConditionalGeneration, T5TokenizerFast,
    )

    out = Path(out)
    byte_level = ByteLevelBPETokenizer()
    byte_level.train_from_iterator(training_lines(), vocab_size=400,
                                   special_tokens=["<|endoftext|>"], show_progress=False)
    (out / "gpt2").mkdir(parents=True, exist_ok=True)
    byte_level.save_model(str(out / "gpt2"))
    gpt2_tokenizer = GPT2TokenizerFast(vocab_file=str(out / "gpt2" / "vocab.json"), merges_file=str(out / "gpt2" / "merges.txt"),
                                       model_max_length=MAX_LENGTH)
    torch.manual_seed(1)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(gpt2_tokenizer), n_embd=32, n_layer=3, n_head=2, n_positions=128,
                                      bos_token_id=gpt2_tokenizer.bos_token_id, eos_token_id=gpt2_tokenizer.eos_token_id))

    (out / "llama").mkdir(exist_ok=True)
    (out / "llama" / "spm.model").write_bytes(_sentencepiece("bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1))
    llama_tokenizer = LlamaTokenizerFast(vocab_file=str(out / "llama" / "spm.model"), model_max_length=MAX_LENGTH, add_prefix_space=True)
    torch.manual_seed(2)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=len(llama_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                                         bos_token_id=1, eos_token_id=2))

    (out / "t5").mkdir(exist_ok=True)
    (out / "t5" / "spm.model").write_bytes(_sentencepiece("unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1))
    t5_tokenizer = T5TokenizerFast(vocab_file=str(out / "t5" / "spm.model"), extra_ids=10, model_max_length=MAX_LENGTH, add_prefix_space=True)
    torch.manual_seed(3)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=len(t5_tokenizer), d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2,
                                             num_heads=2, d_kv=16, feed_forward_proj="gated-gelu", decoder_start_token_id=0,
                                             pad_token_id=0, eos_token_id=1))
    for name, model, tokenizer in (("gpt2", gpt2, gpt2_tokenizer), ("llama", llama, llama_tokenizer), ("t5", t5, t5_tokenizer)):
        model.eval().save_pretrained(out / name, safe_serialization=True)
        tokenizer.save_pretrained(out / name)


def subject(model_dir: str, kind: str, modules: dict[str, str]):
    from transformers import AutoModelForSeq2SeqLM

    from brainscore_language.model_helpers.huggingface import HuggingfaceSubject

    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, device_map="auto") if kind == "seq2seq" else None
    return HuggingfaceSubject(model_id=model_dir, model=model, region_layer_mapping=modules)


def features(model_dir: str, kind: str, modules_json: str, groups_json: str, out: str) -> None:
    modules = json.loads(Path(modules_json).read_text())
    recorded = {f"module{k}": name for k, name in enumerate(modules)}
    model = subject(model_dir, kind, recorded)
    for target in recorded:
        model.start_neural_recording(recording_target=target, recording_type="fMRI")
    arrays = {}
    for k, parts in enumerate(json.loads(Path(groups_json).read_text())):
        neural = model.digest_text(parts)["neural"]
        width = neural.shape[1] // len(modules)
        arrays[f"group_{k}"] = np.asarray(neural.values, dtype=np.float32).reshape(len(parts), len(modules), width)
    np.savez(out, **arrays)


def surprisal(model_dir: str, kind: str, words_json: str, out: str) -> None:
    from brainscore_language import ArtificialSubject

    model = subject(model_dir, kind, {})
    model.start_behavioral_task(ArtificialSubject.Task.reading_times)
    behavior = model.digest_text(json.loads(Path(words_json).read_text()))["behavior"]
    np.save(out, np.asarray(behavior.values, dtype=np.float64))


def metric(features_path: str, responses_path: str, ids_json: str, out: str) -> None:
    from brainio.assemblies import NeuroidAssembly

    from brainscore_language import load_metric

    source, target = np.load(features_path), np.load(responses_path)
    ids = json.loads(Path(ids_json).read_text())

    def assembly(values: np.ndarray, prefix: str) -> NeuroidAssembly:
        return NeuroidAssembly(values, dims=["presentation", "neuroid"], coords={
            "stimulus_id": ("presentation", ids), "stimulus_num": ("presentation", np.arange(len(ids))),
            "neuroid_id": ("neuroid", [f"{prefix}{j:05d}" for j in range(values.shape[1])]),
            "neuroid_num": ("neuroid", np.arange(values.shape[1]))})

    score = load_metric("linear_pearsonr")(assembly(source, "f"), assembly(target, "n"))
    raw = score.attrs["raw"].transpose("split", "neuroid")
    np.save(out, np.asarray(raw.values, dtype=np.float64))


def blank_ceiling(responses_path: str, ids_json: str, subjects_json: str, out: str) -> None:
    from brainio.assemblies import NeuroidAssembly

    from brainscore_language import load_metric
    from brainscore_language.benchmarks.blank2014.ceiling import ExtrapolationCeiling

    values = np.load(responses_path)
    ids, subjects = json.loads(Path(ids_json).read_text()), json.loads(Path(subjects_json).read_text())
    assembly = NeuroidAssembly(values, dims=["presentation", "neuroid"], coords={
        "stimulus_id": ("presentation", ids), "stimulus_num": ("presentation", np.arange(len(ids))),
        "neuroid_id": ("neuroid", [f"n{j:05d}" for j in range(values.shape[1])]),
        "subject_id": ("neuroid", subjects)})
    ceiling = ExtrapolationCeiling()(assembly, load_metric("linear_pearsonr"))
    neuroid_ceilings = ceiling.attrs["raw"]
    np.savez(out, neuroid_id=np.asarray(neuroid_ceilings["neuroid_id"].values, dtype=str),
             ceiling=np.asarray(neuroid_ceilings.values, dtype=np.float64).ravel(), center=float(ceiling))


if __name__ == "__main__":
    {"build": build, "features": features, "surprisal": surprisal, "metric": metric, "blank_ceiling": blank_ceiling}[sys.argv[1]](*sys.argv[2:])
