# Validation, constants, wildcard constraints and input/target functions. No rules here.
import re
from pathlib import Path

from brainalign.analysis.brainscore_check import planned_checks
from brainalign.config import (
    SIMULATED_READERS,
    active_suite,
    suite_datasets,
    suite_models,
    validate_config,
)
from brainalign.plots.names import figure_names
from brainalign.workflow import (
    MODEL_RUNTIME_KEYS,
    gpu_device_visible,
    missing_user_files_warning,
)

validate_config(config)

SUITE = active_suite(config)
DATASETS = SUITE["datasets"]
MODELS = SUITE["models"]
PROTOCOLS = SUITE["protocols"]
NEURAL_DATASETS = [d for d in DATASETS if config["datasets"][d]["measure"] == "neural"]
BEHAVIOR_DATASETS = [
    d for d in DATASETS if config["datasets"][d]["measure"] == "behavior"
]
PAIRED_MODELS = [
    name
    for name in MODELS
    if config["models"][name].get("instruction_tuned")
    and config["models"][name].get("base") in MODELS
]
DEMO = any(config["datasets"][d]["demo"] for d in DATASETS)
# Jobs that many others wait on (model stages, ceilings, the controls-only fit, generated
# data) run first. Those that can start while layer fits run take one thread: a two-thread
# job waits for two cores free at once, which a stream of one-thread fits never leaves, and
# then runs alone at the end with every fit waiting on it.
UNLOCKS_MANY = 10
# Every defined dataset's responses come from exactly one rule: simulate_responses for the demo
# readers (from a model's outputs), prepare_responses for the readers of response files.
SIMULATED_DATASETS = [
    d
    for d in config["datasets"]
    if config["datasets"][d]["reader"] in SIMULATED_READERS
]
READ_DATASETS = [d for d in config["datasets"] if d not in SIMULATED_DATASETS]
# One extraction job writes every readout the suite's protocols read, from one model load.
ACTIVATION_READOUTS = sorted({config["protocols"][p]["readout"] for p in PROTOCOLS})
# Reading times: the paper correlation reads aw2024's readout, the regression robust's.
BEHAVIOR_READOUTS = {
    "paper": config["protocols"]["aw2024"]["readout"],
    "regression": config["protocols"]["robust"]["readout"],
}
SURPRISAL_READOUTS = sorted(set(BEHAVIOR_READOUTS.values()))
# Bits per word, a next-word loss comparable across tokenizers, is read on the Natural Stories text.
NEXT_WORD_DATASETS = [
    d for d in BEHAVIOR_DATASETS if config["datasets"][d]["reader"] == "futrell2018"
]
FIGURES = figure_names(
    PROTOCOLS if NEURAL_DATASETS else [],
    ["aw2024", "regression"] if BEHAVIOR_DATASETS else [],
)
PUBLISHED = Path(workflow.basedir) / "resources" / "published"
# Brain-Score's pinned integration scores that this suite's models and datasets can check.
BRAINSCORE_CHECKS = (
    planned_checks(suite_models(config), suite_datasets(config))
    if "aw2024" in PROTOCOLS
    else []
)

for _warning in missing_user_files_warning(config, DATASETS):
    logger.warning(_warning)


def _alternatives(names):
    """A regular expression matching exactly the given names (nothing at all when there are none)."""
    return "|".join(re.escape(name) for name in sorted(names)) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(config["datasets"]),
    model=_alternatives(config["models"]),
    protocol=_alternatives(["aw2024", "robust"]),
    layer=r"\d+",


# ----------------------------------------------------------------------------- datasets
def dataset_files(wildcards):
    """The dataset's raw inputs: shipped demo files, the manifest of its generated rehearsal
    files, or the manifest of its downloads."""
    block = config["datasets"][wildcards.dataset]
    if block["demo"]:
        return list(block["files"].values())
    if block.get("rehearsal"):
        return f"resources/rehearsal/{wildcards.dataset}/manifest.json"
    return f"resources/downloads/{wildcards.dataset}/manifest.json"


def rehearsal_source(wildcards):
    """A planted rehearsal dataset's source model (its fetched manifest); none for a null variant."""
    source = config["datasets"][wildcards.dataset]["rehearsal"].get("source_model")
    return f"resources/models/{source}/manifest.json" if source else []


def rehearsal_source_block(wildcards):
    """The runtime keys of a rehearsal dataset's source model (as extraction reads them)."""
    source = config["datasets"][wildcards.dataset]["rehearsal"].get("source_model")
    return runtime_keys(source) if source else {}


def simulation_source(wildcards):
    """A demo dataset's planted signal: the source model's activations (demo_fmri) or
    surprisal (demo_reading_times), under the first readout (in name order) that the suite
    computes anyway."""
    block = config["datasets"][wildcards.dataset]
    source = block["simulation"]["source_model"]
    if block["reader"] == "demo_fmri":
        return f"results/activations/{wildcards.dataset}/{source}.{ACTIVATION_READOUTS[0]}.parquet"
    return f"results/surprisal/{wildcards.dataset}/{source}.{SURPRISAL_READOUTS[0]}.parquet"


# ----------------------------------------------------------------------------- models
def runtime_keys(model):
    """The model keys that change its activations (not its benchmark metadata), so editing
    a model's MMLU score does not rerun its extraction."""
    block = config["models"][model]
    return {key: block[key] for key in MODEL_RUNTIME_KEYS if key in block}


def model_runtime_block(wildcards):
    """The runtime keys of the job's model."""
    return runtime_keys(wildcards.model)


# Dataset keys that only the ceilings read: the data rules do not get them, so choosing a
# dataset's subject pools reruns its ceilings, not its data and every job after it.
CEILING_ONLY_KEYS = ("ceiling_pools",)


def dataset_block(wildcards):
    """A dataset's config block as its data rules read it (without the ceiling-only keys)."""
    block = config["datasets"][wildcards.dataset]
    return {key: value for key, value in block.items() if key not in CEILING_ONLY_KEYS}


def extraction_options(wildcards):
    """The extraction settings plus the one dataset fact they read: whether it is a time
    series (readout aw2024 then reads word windows). The window is kept for time series
    only, so editing it reruns no other dataset's extraction."""
    time_series = config["datasets"][wildcards.dataset]["time_series"]
    return {
        **{
            key: value
            for key, value in config["extraction"].items()
            if time_series or key != "word_window"
        },
        "time_series": time_series,
    }


def _protocol_settings(protocol, dataset, drop=()):
    """A protocol's settings without the sections a job does not read (the toneva
    pipeline runs on time series only; the readout is the activation file's), plus the
    dataset facts it reads, so editing anything else does not rerun the job."""
    facts = config["datasets"][dataset]
    unused = {*drop, "readout", *(() if facts["time_series"] else ("toneva",))}
    settings = config["protocols"][protocol]
    dataset_facts = {"time_series": facts["time_series"]}
    if protocol == "robust":
        dataset_facts["cv_groups"] = facts["cv_groups"]
    if protocol == "robust" and "n_permutations" not in drop:
        dataset_facts["permutation"] = facts["permutation"]
    return {
        **{key: value for key, value in settings.items() if key not in unused},
        **dataset_facts,
    }


def protocol_activations(wildcards):
    """The activation file of the protocol's readout."""
    readout = config["protocols"][wildcards.protocol]["readout"]
    return (
        f"results/activations/{wildcards.dataset}/{wildcards.model}.{readout}.parquet"
    )


def protocol_extraction(wildcards):
    """The extraction settings the protocol's activation file must have been made with."""
    return {
        **extraction_options(wildcards),
        "readout": config["protocols"][wildcards.protocol]["readout"],
    }


def behavior_surprisal(wildcards):
    """The surprisal files of the reading-time scores: the paper's and the regression's."""
    return {
        name: f"results/surprisal/{wildcards.dataset}/{wildcards.model}.{readout}.parquet"
        for name, readout in BEHAVIOR_READOUTS.items()
    }


def encoding_options(wildcards):
    """Protocol settings plus the dataset facts the protocol needs (not the ceiling's, nor
    the layer rule, which score_model applies)."""
    return _protocol_settings(
        wildcards.protocol,
        wildcards.dataset,
        drop=("ceiling", "layer_rule", "published_ceilings"),
    )


def controls_options(wildcards):
    """The robust settings the controls-only fit reads (not its statistics, nor the ceiling's)."""
    statistics = ("n_bootstrap", "confidence_level", "n_permutations", "block_trs")
    return _protocol_settings(
        "robust", wildcards.dataset, drop=(*statistics, "ceiling")
    )


def controls_fit(wildcards):
    """A robust fit's controls-only model (none for aw2024 or without control bands)."""
    if wildcards.protocol != "robust" or not config["protocols"]["robust"]["controls"]:
        return []
    return f"results/encoding/robust/{wildcards.dataset}/controls.parquet"


def published_ceiling_files(wildcards):
    """Brain-Score's precomputed ceiling file of each partition, where aw2024 uses them
    (partition -> path; empty otherwise)."""
    block = config["datasets"][wildcards.dataset]
    if (
        wildcards.protocol != "aw2024"
        or not config["protocols"]["aw2024"]["published_ceilings"]
    ):
        return {}
    return {
        partition: block["files"][key]
        for partition, key in block["published_ceiling"].items()
    }


def ceiling_downloads(wildcards):
    """The download manifest that checked the published ceiling files (none when computed)."""
    if published_ceiling_files(wildcards):
        return f"resources/downloads/{wildcards.dataset}/manifest.json"
    return []


def ceiling_options(wildcards):
    """The settings of a protocol's ceiling plus the dataset facts (with its subject-pool
    scheme, which only the ceilings read). aw2024: the paper's
    metric (the ceiling fits responses, not activations, so the fit precision does not
    apply); robust: its folds and ridge, without the control bands, delays and statistics.
    """
    if wildcards.protocol == "aw2024":
        published = published_ceiling_files(wildcards)
        if published:
            return {"published": published}
        settings = _protocol_settings(
            "aw2024",
            wildcards.dataset,
            drop=("layer_rule", "fit_precision", "published_ceilings"),
        )
    else:
        # One band (the pool): no band-weight search, so neither its candidates nor their seed.
        not_read = (
            "controls",
            "oasm_width",
            "delays",
            "n_band_weights",
            "random_state",
            "block_trs",
        )
        statistics = ("n_bootstrap", "confidence_level", "n_permutations")
        settings = _protocol_settings(
            "robust", wildcards.dataset, drop=(*not_read, *statistics)
        )
    return {
        **settings,
        "ceiling_pools": config["datasets"][wildcards.dataset]["ceiling_pools"],
    }


def layer_choice(wildcards):
    """How score_model picks the layer: the aw2024 rule and the model's committed layer
    (none under robust, whose choice is nested, so aw2024 edits do not rerun it)."""
    if wildcards.protocol != "aw2024":
        return {}
    return {
        "layer_rule": config["protocols"]["aw2024"]["layer_rule"],
        "committed_layer": config["models"][wildcards.model]["committed_layer"],
    }


def layer_fits(wildcards):
    """Every layer's encoding fit of one model on one dataset under one protocol."""
    n_layers = config["models"][wildcards.model]["n_layers"]
    return expand(
        "results/encoding/{protocol}/{dataset}/{model}/layer-{layer}.parquet",
        protocol=wildcards.protocol,
        dataset=wildcards.dataset,
        model=wildcards.model,
        layer=range(1, n_layers + 1),
    )


def base_neuroid_scores(wildcards):
    """The per-neuroid scores of the model's vanilla base (same protocol and dataset)."""
    base = config["models"][wildcards.model].get("base")
    if base not in MODELS:
        raise ValueError(
            f"model {wildcards.model!r} has no base in suite {config['suite']!r} (base: {base!r}); "
            "pair tests exist for instruction-tuned models whose base is in the suite"
        )
    return f"results/scores/{wildcards.protocol}/{wildcards.dataset}/{base}.neuroids.parquet"


# ----------------------------------------------------------------------------- aggregates
def model_scores():
    """Per-model brain scores of the suite (aggregate input)."""
    return expand(
        "results/scores/{protocol}/{dataset}/{model}.tsv",
        protocol=PROTOCOLS,
        dataset=NEURAL_DATASETS,
        model=MODELS,
    )


def model_layer_scores():
    """Per-layer brain scores of the suite (aggregate input)."""
    return expand(
        "results/scores/{protocol}/{dataset}/{model}.layers.tsv",
        protocol=PROTOCOLS,
        dataset=NEURAL_DATASETS,
        model=MODELS,
    )


def pair_tests():
    """Paired tests of each instruction-tuned model against its base (aggregate input)."""
    return expand(
        "results/pairs/{protocol}/{dataset}/{model}.tsv",
        protocol=PROTOCOLS,
        dataset=NEURAL_DATASETS,
        model=PAIRED_MODELS,
    )


def behavior_scores():
    """Per-model behavioral scores of the suite (aggregate input)."""
    return expand(
        "results/behavior/{dataset}/{model}.tsv",
        dataset=BEHAVIOR_DATASETS,
        model=MODELS,
    )


def next_word_surprisal():
    """Every model's surprisal on the suite's first Natural Stories dataset under the
    regression's readout (each model's own stream), for bits per word; none without one.
    """
    if not NEXT_WORD_DATASETS:
        return []
    return expand(
        "results/surprisal/{dataset}/{model}.{readout}.parquet",
        dataset=NEXT_WORD_DATASETS[0],
        model=MODELS,
        readout=BEHAVIOR_READOUTS["regression"],
    )


def suite_model_blocks():
    """The suite's model blocks, for the aggregate analysis only."""
    return suite_models(config)


def all_targets():
    """Everything the selected suite produces."""
    return [
        "results/scores/brain.tsv",
        "results/scores/behavior.tsv",
        "results/analysis/instruction_effect.tsv",
        "results/analysis/published/instruction_effect.tsv",
        *expand("results/figures/{figure}.png", figure=FIGURES),
        "results/summary.md",
        *(["results/brainscore_check.tsv"] if BRAINSCORE_CHECKS else []),
    ]


def brainscore_check_files(wildcards):
    """The score files of Brain-Score's pinned checks."""
    return sorted(
        {
            path
            for check in BRAINSCORE_CHECKS
            for key, path in check.items()
            if key in ("fit", "ceiling", "behavior")
        }
    )


# ----------------------------------------------------------------------------- resources
def memory_mb(base_mb):
    """A memory request that grows with each retry (attempt 1, 2, ...)."""

    def by_attempt(wildcards, attempt):
        return base_mb * attempt

    return by_attempt


def model_gpus(wildcards):
    """GPUs a model job holds: one, unless extraction.device is cpu, or auto on a machine
    that shows no GPU. profiles/default lets one GPU job run at a time; on a CPU the model
    jobs then run side by side instead of one after another. (profiles/slurm asks for one
    GPU per model job whatever the submitting machine has.)"""
    device = config["extraction"]["device"]
    return int(device == "cuda" or (device == "auto" and gpu_device_visible()))


def fit_gpus(wildcards):
    """GPUs a robust fit asks the cluster for: one when protocols.robust.device is cuda."""
    robust = wildcards.get("protocol", "robust") == "robust"
    return int(robust and config["protocols"]["robust"]["device"] == "cuda")


def runtime_min(base_min):
    """A runtime request (minutes) that grows with each retry."""

    def by_attempt(wildcards, attempt):
        return base_min * attempt

    return by_attempt


def ceiling_runtime(wildcards, attempt):
    """Minutes of a ceiling job, growing with each retry: the robust ceiling fits a ridge
    with inner CV per subject pool and fold (full-size rehearsal: 255 CPU seconds for
    Pereira2018, about 1,700-2,900 for Wehbe2014 at 1,920 voxels; more cost more)."""
    return (720 if wildcards.protocol == "robust" else 120) * attempt
