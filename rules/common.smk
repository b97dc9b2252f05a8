# Validation, constants, wildcard constraints and input/target functions. No rules here.
import re
from pathlib import Path

from brainalign.config import active_suite, suite_models, validate_config
from brainalign.plots.figures import figure_names
from brainalign.workflow import MODEL_RUNTIME_KEYS, missing_user_files_warning

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
# One extraction job writes every readout the suite's protocols read, from one model load.
ACTIVATION_READOUTS = sorted({config["protocols"][p]["readout"] for p in PROTOCOLS})
# Reading times: the paper correlation reads aw2024's readout, the regression robust's.
BEHAVIOR_READOUTS = {
    "paper": config["protocols"]["aw2024"]["readout"],
    "regression": config["protocols"]["robust"]["readout"],
}
SURPRISAL_READOUTS = sorted(set(BEHAVIOR_READOUTS.values()))
FIGURES = figure_names(
    PROTOCOLS if NEURAL_DATASETS else [],
    ["aw2024", "regression"] if BEHAVIOR_DATASETS else [],
)
PUBLISHED = Path(workflow.basedir) / "resources" / "published"

for _warning in missing_user_files_warning(config, DATASETS):
    logger.warning(_warning)


def _alternatives(names):
    return "|".join(re.escape(name) for name in sorted(names))


wildcard_constraints:
    dataset=_alternatives(config["datasets"]),
    model=_alternatives(config["models"]),
    protocol=_alternatives(["aw2024", "robust"]),
    layer=r"\d+",


# ----------------------------------------------------------------------------- datasets
def dataset_files(wildcards):
    """The dataset's raw inputs: shipped demo files, or the manifest of its downloads."""
    block = config["datasets"][wildcards.dataset]
    if block["demo"]:
        return list(block["files"].values())
    return f"resources/downloads/{wildcards.dataset}/manifest.json"


def simulation_source(wildcards):
    """A demo dataset's planted signal: the source model's activations or surprisal, under
    the first readout (in name order) that the suite computes anyway."""
    block = config["datasets"][wildcards.dataset]
    source = block.get("simulation", {}).get("source_model")
    if block["reader"] == "demo_fmri":
        return f"results/activations/{wildcards.dataset}/{source}.{ACTIVATION_READOUTS[0]}.parquet"
    if block["reader"] == "demo_reading_times":
        return f"results/surprisal/{wildcards.dataset}/{source}.{SURPRISAL_READOUTS[0]}.parquet"
    return []


# ----------------------------------------------------------------------------- models
def model_runtime_block(wildcards):
    """The model keys that change its activations (not its benchmark metadata), so editing
    a model's MMLU score does not rerun its extraction."""
    block = config["models"][wildcards.model]
    return {key: block[key] for key in MODEL_RUNTIME_KEYS if key in block}


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
        wildcards.protocol, wildcards.dataset, drop=("ceiling", "layer_rule")
    )


def controls_options(wildcards):
    """The robust settings the controls-only fit reads (not its statistics)."""
    statistics = ("n_bootstrap", "confidence_level", "n_permutations", "block_trs")
    return _protocol_settings("robust", wildcards.dataset, drop=statistics)


def controls_fit(wildcards):
    """A robust fit's controls-only model (none for aw2024 or without control bands)."""
    if wildcards.protocol != "robust" or not config["protocols"]["robust"]["controls"]:
        return []
    return f"results/encoding/robust/{wildcards.dataset}/controls.parquet"


def ceiling_options(wildcards):
    """The paper protocol's settings (the ceiling uses its metric) plus the dataset facts;
    the ceiling fits responses, not activations, so the fit precision does not apply."""
    return _protocol_settings(
        "aw2024", wildcards.dataset, drop=("layer_rule", "fit_precision")
    )


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
    ]


# ----------------------------------------------------------------------------- resources
def memory_mb(base_mb):
    """A memory request that grows with each retry (attempt 1, 2, ...)."""

    def by_attempt(wildcards, attempt):
        return base_mb * attempt

    return by_attempt


def fit_gpus(wildcards):
    """GPUs a robust fit asks the cluster for: one when protocols.robust.device is cuda."""
    robust = wildcards.get("protocol", "robust") == "robust"
    return int(robust and config["protocols"]["robust"]["device"] == "cuda")


def runtime_min(base_min):
    """A runtime request (minutes) that grows with each retry."""

    def by_attempt(wildcards, attempt):
        return base_min * attempt

    return by_attempt
