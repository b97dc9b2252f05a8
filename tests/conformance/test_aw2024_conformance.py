"""``aw2024`` against the code the paper ran, side by side on the same inputs.

The reference (brain-score/language at the paper's commit) runs in its own environment
through :mod:`reference_side`; ``make conformance`` builds that environment and points
``BRAINALIGN_REFERENCE_PYTHON`` at it. Without the variable these tests skip; with it, a
missing interpreter fails. A mismatch names the first differing unit, layer and value.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainalign.encoding.aw2024 import fit_aw2024

HERE = Path(__file__).resolve().parent
REFERENCE_SIDE = HERE / "reference_side.py"


@pytest.fixture(scope="session")
def reference_python() -> Path:
    value = os.environ.get("BRAINALIGN_REFERENCE_PYTHON")
    if not value:
        pytest.skip("the paper's code is not set up: run `make conformance`")
    python = Path(value)
    assert python.exists(), (
        f"BRAINALIGN_REFERENCE_PYTHON={value} does not exist: run tests/conformance/setup_reference.sh"
    )
    return python


def run_reference(python: Path, *args: str | Path) -> None:
    completed = subprocess.run(
        [str(python), str(REFERENCE_SIDE), *map(str, args)], capture_output=True, text=True, timeout=1200
    )
    assert completed.returncode == 0, f"reference side {args[0]} failed:\n{completed.stderr[-6000:]}"


def first_difference(ours: np.ndarray, reference: np.ndarray, labels: list[str], tolerance: float) -> str:
    """The first entry where the two arrays differ by more than ``tolerance``, as 'label: ours vs reference'."""
    differing = np.argwhere(~(np.abs(ours - reference) <= tolerance))
    if not len(differing):
        return "no difference"
    index = tuple(differing[0])
    return (
        f"first difference at {labels[index[0]]}, neuroid {index[1]}: ours {ours[index]!r} "
        f"vs reference {reference[index]!r}"
    )


# ----------------------------------------------------------------------------- linear_pearsonr
def shuffled_mini_assembly(seed: int = 0, n: int = 60, n_features: int = 80, n_neuroids: int = 30):
    """A planted linear signal; our rows in reading order, the assembly's stored order shuffled."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n, n_features)).astype(np.float32)
    responses = features[:, :10] @ rng.standard_normal((10, n_neuroids)) + 3.0 * rng.standard_normal((n, n_neuroids))
    stimuli = pd.DataFrame(
        {
            "stimulus_id": [f"sentence{i:03d}" for i in range(n)],
            "context_group": np.repeat([f"passage{g:02d}" for g in range(n // 4)], 4),
            "position": np.tile(np.arange(4), n // 4),
            "text": "w",
            "partition": "all",
            "assembly_row": rng.permutation(n),
        }
    )
    neuroids = pd.DataFrame({"neuroid_id": [f"n{j:05d}" for j in range(n_neuroids)], "subject": "s1"})
    return features, responses, stimuli, neuroids


def split_r(result, neuroids: pd.DataFrame, n_splits: int) -> np.ndarray:
    """Per-split r of an aw2024 result, shape (n_splits, n_neuroids) in ``neuroids`` order."""
    table = result.neuroids.set_index("neuroid_id").loc[neuroids["neuroid_id"]]
    return np.stack([table[f"r_fold_{k}"].to_numpy() for k in range(n_splits)])


def test_split_scores_equal_the_reference_metric_in_stored_order(reference_python, tmp_path):
    features, responses, stimuli, neuroids = shuffled_mini_assembly()
    stored = np.argsort(stimuli["assembly_row"].to_numpy())
    np.save(tmp_path / "features.npy", features[stored])
    np.save(tmp_path / "responses.npy", responses[stored])
    (tmp_path / "ids.json").write_text(json.dumps(stimuli["stimulus_id"].to_numpy()[stored].tolist()))
    run_reference(
        reference_python,
        "metric",
        tmp_path / "features.npy",
        tmp_path / "responses.npy",
        tmp_path / "ids.json",
        tmp_path / "r.npy",
    )
    reference = np.load(tmp_path / "r.npy", allow_pickle=False)

    result = fit_aw2024(features, responses, stimuli, stimuli[["stimulus_id"]], neuroids)
    ours = split_r(result, neuroids, len(reference))
    assert result.details["split_order"] == "stored" and result.details["fit_precision"] == "float32"
    np.testing.assert_allclose(
        ours,
        reference,
        rtol=0,
        atol=1e-6,
        err_msg=first_difference(ours, reference, [f"split {k}" for k in range(len(reference))], 1e-6),
    )
    # Both choices matter: splits over our reading order, or a float64 fit, give other scores.
    given = fit_aw2024(features, responses, stimuli.drop(columns="assembly_row"), stimuli[["stimulus_id"]], neuroids)
    assert (
        given.details["split_order"] == "given"
        and np.abs(split_r(given, neuroids, len(reference)) - reference).max() > 0.1
    )
    exact = fit_aw2024(features, responses, stimuli, stimuli[["stimulus_id"]], neuroids, {"fit_precision": "float64"})
    assert np.abs(split_r(exact, neuroids, len(reference)) - reference).max() > 1e-3


# ----------------------------------------------------------------------------- features and surprisal
MODELS = {
    "gpt2": ("causal", ["transformer.h.{}"], 3, None),
    "llama": ("causal", ["model.layers.{}.post_attention_layernorm"], 3, "post_attention_layernorm"),
    "t5": ("seq2seq", ["encoder.block.{}", "decoder.block.{}"], 2, None),
}
"""Per model: kind, the reference's hooked modules, blocks per stack, our ``aw2024_module``."""

DEMO = HERE.parents[1] / "resources" / "demo"


def context_groups() -> list[list[str]]:
    """Pereira-like passages (punctuation, multi-token words, parts that start with
    punctuation) and a Blank-like story of word chunks far over the 48-token limit."""
    passages = pd.read_csv(DEMO / "passages.tsv", sep="\t")
    groups = [list(sentences) for _, sentences in passages.groupby("passage_id", sort=False)["sentence"]][:4]
    groups.append(
        [
            "The storm arrived on a Tuesday,",
            "just after the bakery",
            "; on Linden Street",
            "had pulled its tray",
            ". Of rolls!",
        ]
    )
    words = (DEMO / "story.txt").read_text(encoding="utf-8").split()[:180]
    groups.append([" ".join(words[i : i + 4]) for i in range(0, len(words), 4)])
    return groups


@pytest.fixture(scope="session")
def tiny_models(reference_python, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reference-models")
    run_reference(reference_python, "build", folder)
    return folder


def our_model(folder: Path, name: str):
    from brainalign.models.cli import model_location

    kind, modules, n_blocks, module = MODELS[name]
    manifest, source = model_location(str(folder / name), None)
    block = {"source": source, "kind": kind, "n_layers": n_blocks * len(modules), "dtype": "float32"}
    if module:
        block["aw2024_module"] = module
    return manifest, block


@pytest.mark.parametrize("name", list(MODELS))
def test_features_equal_the_reference_subject(reference_python, tiny_models, tmp_path, name):
    from brainalign.io import read_activations, read_metadata, write_stimuli
    from brainalign.models.extraction import write_activations

    kind, patterns, n_blocks, _ = MODELS[name]
    modules = [pattern.format(k) for pattern in patterns for k in range(n_blocks)]
    groups = context_groups()
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "groups.json").write_text(json.dumps(groups))
    run_reference(
        reference_python,
        "features",
        tiny_models / name,
        kind,
        tmp_path / "modules.json",
        tmp_path / "groups.json",
        tmp_path / "reference.npz",
    )
    with np.load(tmp_path / "reference.npz", allow_pickle=False) as stored:
        reference = np.concatenate([stored[f"group_{k}"] for k in range(len(groups))])  # (units, layers, width)

    rows = [
        {
            "stimulus_id": f"g{g}p{p}",
            "context_group": f"g{g}",
            "position": p,
            "text": part,
            "cv_group": f"g{g}",
            "partition": "all",
        }
        for g, parts in enumerate(groups)
        for p, part in enumerate(parts)
    ]
    write_stimuli(tmp_path / "stimuli.parquet", pd.DataFrame(rows), {"dataset": "conformance"})
    manifest, block = our_model(tiny_models, name)
    out = tmp_path / "ours.parquet"
    write_activations(
        tmp_path / "stimuli.parquet", manifest, block, {"device": "cpu", "readout": "aw2024", "batch_size": 4}, out
    )
    assert read_metadata(out)["readout"] == "aw2024"
    for layer, module in enumerate(modules, start=1):
        _, ours = read_activations(out, layer)
        expected = reference[:, layer - 1]
        scale = np.abs(expected).max()
        difference = np.abs(ours - expected)
        print(
            f"{name} layer {layer} ({module}): largest difference {difference.max() / scale:.1e} of the layer's "
            f"largest value"
        )
        if difference.max() > 1e-4 * scale:
            first = tuple(np.argwhere(difference > 1e-4 * scale)[0])
            pytest.fail(
                f"{name} layer {layer} ({module}): first differing unit {rows[first[0]]['stimulus_id']} "
                f"({rows[first[0]]['text']!r}), feature {first[1]}: ours {ours[first]} vs reference {expected[first]} "
                f"(layer max {scale})"
            )


@pytest.mark.parametrize("name", list(MODELS))
def test_surprisal_equals_the_reference_reading_times(reference_python, tiny_models, tmp_path, name):
    from brainalign.models.cli import read_words
    from brainalign.models.loading import load_model
    from brainalign.models.surprisal import surprisal_table

    words = (DEMO / "story.txt").read_text(encoding="utf-8").split()[:150]  # one text, far over the 48-token limit
    (tmp_path / "words.json").write_text(json.dumps(words))
    run_reference(
        reference_python,
        "surprisal",
        tiny_models / name,
        MODELS[name][0],
        tmp_path / "words.json",
        tmp_path / "reference.npy",
    )
    reference = np.load(tmp_path / "reference.npy", allow_pickle=False)

    (tmp_path / "words.txt").write_text("\n".join(words), encoding="utf-8")
    manifest, block = our_model(tiny_models, name)
    options = {
        "device": "cpu",
        "device_map": None,
        "readout": "aw2024",
        "batch_size": 4,
        "show_progress": False,
        "min_context_tokens": None,
    }
    ours = surprisal_table(load_model(manifest, block, options), read_words(tmp_path / "words.txt"), "raw", options)[
        "surprisal_bits"
    ].to_numpy()
    np.testing.assert_array_equal(
        np.isnan(ours), np.isnan(reference), err_msg=f"{name}: NaN surprisal at different words"
    )
    defined = ~np.isnan(reference)
    difference = np.where(defined, np.abs(ours - reference), 0.0)
    print(f"{name} surprisal: largest difference {difference.max():.1e} bits ({defined.sum()} words)")
    differing = np.flatnonzero(difference > 1e-4 * (1 + np.abs(np.nan_to_num(reference))))
    if len(differing):
        first = int(differing[0])
        pytest.fail(
            f"{name}: first differing word {first} ({words[first]!r}): ours {ours[first]} vs reference "
            f"{reference[first]} bits"
        )


# ----------------------------------------------------------------------------- Blank2014 ceiling
def saturation(x, v0, tau):
    return v0 * (1 - np.exp(-x / tau))


def transcribed_extrapolation(collected: dict, subject, neuroid: int) -> tuple[float, bool]:
    """The reference's ``extrapolate_neuroid`` on our collected scores of one neuroid: a new
    ``RandomState(0)``, per bootstrap and pool size a resample of the (pool x split) scores,
    ``curve_fit`` from (1, 1). Also whether any of its fits stopped at a higher loss than
    the global optimum that :func:`fit_saturation` finds."""
    from scipy.optimize import curve_fit

    from brainalign.encoding.ceiling import fit_saturation

    sizes = sorted(collected)
    choices = {size: np.concatenate(collected[size][subject], axis=0)[:, neuroid] for size in sizes}
    rng = np.random.RandomState(0)
    v0s, local = [], False
    for _ in range(100):
        means = np.array([np.mean(rng.choice(choices[s], size=len(choices[s]), replace=True)) for s in sizes])
        with np.errstate(over="ignore"):
            params = curve_fit(saturation, sizes, means, bounds=([0, -np.inf], [1, np.inf]))[0]
            fitted_loss = np.sum((saturation(np.array(sizes), *params) - means) ** 2)
        v0, tau = fit_saturation(np.array(sizes, dtype=np.float64), means[None])
        global_loss = np.sum((saturation(np.array(sizes), v0[0], tau[0]) - means) ** 2)
        local |= bool(fitted_loss > global_loss + 1e-9 and abs(params[0] - v0[0]) > 1e-6)
        v0s.append(params[0])
    return float(np.median(v0s)), local


def test_blank_ceiling_equals_the_reference_but_where_its_curve_fits_stop_early(reference_python, tmp_path):
    """Blank2014's ceiling (every subject subset, every member held out, per-neuroid
    bootstraps): our pools, splits, metric and resamples are the reference's, checked by
    running its extrapolation, transcribed, on our scores; our ceilings differ from its only
    for neuroids where scipy's ``curve_fit`` stopped at a local optimum of the saturation
    curve that our global fit does not take."""
    from brainalign.encoding.aw2024 import partition_splits, resolve_aw2024_options
    from brainalign.encoding.ceiling import extrapolated_ceiling, holdout_scores, pool_correlation_scorer

    rng = np.random.default_rng(0)
    n, per_subject, subject_ids = 60, 4, [str(288 + s) for s in range(5)]
    shared = rng.standard_normal((n, 3))
    responses = np.hstack(
        [
            shared @ rng.standard_normal((3, per_subject)) + (1 + 0.3 * s) * rng.standard_normal((n, per_subject))
            for s in range(len(subject_ids))
        ]
    )
    ids = [f"fragment{i:03d}" for i in range(n)]
    subjects = [s for s in subject_ids for _ in range(per_subject)]
    np.save(tmp_path / "responses.npy", responses)
    (tmp_path / "ids.json").write_text(json.dumps(ids))
    (tmp_path / "subjects.json").write_text(json.dumps(subjects))
    run_reference(
        reference_python,
        "blank_ceiling",
        tmp_path / "responses.npy",
        tmp_path / "ids.json",
        tmp_path / "subjects.json",
        tmp_path / "ceiling.npz",
    )
    reference = np.load(tmp_path / "ceiling.npz", allow_pickle=False)
    neuroid_ids = [f"n{j:05d}" for j in range(responses.shape[1])]
    assert reference["neuroid_id"].tolist() == neuroid_ids

    stimuli = pd.DataFrame({"stimulus_id": ids, "partition": "all"})
    neuroids = pd.DataFrame({"neuroid_id": neuroid_ids, "subject": subjects})
    options = {"ceiling": {}, "ceiling_pools": "all"}
    table, summary = extrapolated_ceiling(responses, stimuli, stimuli[["stimulus_id"]], neuroids, options)
    ours = table.set_index("neuroid_id").loc[neuroid_ids, "ceiling"].to_numpy()

    protocol = resolve_aw2024_options(options)
    splits = partition_splits(stimuli, np.arange(n), protocol)
    scorer = pool_correlation_scorer(responses, np.array(subjects), splits)
    collected = holdout_scores(subject_ids, protocol["ceiling"], scorer, "all")
    transcribed, stopped_early = zip(
        *(transcribed_extrapolation(collected, subjects[j], j % per_subject) for j in range(len(neuroid_ids)))
    )
    labels = [f"neuroid {j}" for j in range(len(neuroid_ids))]
    np.testing.assert_allclose(
        transcribed,
        reference["ceiling"],
        rtol=0,
        atol=1e-6,
        err_msg=first_difference(np.array([transcribed]), reference["ceiling"][None], ["transcribed"], 1e-6),
    )
    # curve_fit stops within its own tolerance of an optimum (v0 off by ~1e-6); ours solves for it.
    differing = np.abs(ours - reference["ceiling"]) > 1e-5
    unexplained = differing & ~np.array(stopped_early)
    assert not unexplained.any(), (
        f"{labels[np.argmax(unexplained)]}: ours {ours[unexplained]} vs {reference['ceiling'][unexplained]}"
    )
    assert differing.sum() <= len(differing) // 4, f"{differing.sum()} of {len(differing)} neuroids differ"
    assert abs(summary["ceiling"] - float(reference["center"])) < 1e-3
    # The Pereira2018 scheme (sampled pools) on the same data is another ceiling.
    sampled, _ = extrapolated_ceiling(responses, stimuli, stimuli[["stimulus_id"]], neuroids, {"ceiling": {}})
    sampled = sampled.set_index("neuroid_id").loc[neuroid_ids, "ceiling"].to_numpy()
    assert np.abs(sampled - reference["ceiling"]).max() > 0.05
