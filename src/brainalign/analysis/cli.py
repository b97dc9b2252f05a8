"""``brainalign analyze``: score tables + model metadata -> statistics (and optionally figures and summary)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from brainalign import io
from brainalign.analysis.correlations import bits_per_word
from brainalign.analysis.published import PUBLISHED_DIR, load_models_file
from brainalign.analysis.run import compute_study_statistics
from brainalign.analysis.tables import read_scores
from brainalign.errors import ConfigError
from brainalign.stats import N_RESAMPLES

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``analyze`` subcommand."""
    parser = subparsers.add_parser(
        "analyze",
        help="instruction-tuning effects and correlations with model properties",
        description="Compute the study's statistics from the aggregated score tables. Models come from "
        "--config (the experiment configuration) or --models (a models file such as "
        "resources/published/models.yaml); --suite restricts both to one suite.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="experiment configuration (config.yaml)")
    source.add_argument("--models", type=Path, help="models file with 'models:' and optional 'suites:'")
    parser.add_argument("--suite", help="analyze only this suite's models (e.g. paper)")
    parser.add_argument("--brain-scores", type=Path, required=True, help="brain score table (brain.tsv)")
    parser.add_argument("--behavior-scores", type=Path, required=True, help="behavior score table (behavior.tsv)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the analysis tables")
    parser.add_argument("--published", type=Path, default=PUBLISHED_DIR, help="folder with the published scores")
    parser.add_argument("--n-resamples", type=int, default=N_RESAMPLES, help="bootstrap/permutation resamples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    parser.add_argument("--brain-layers", type=Path, help="per-layer brain scores (brain_layers.tsv) for figures")
    parser.add_argument("--figures", type=Path, help="also draw the figures into this folder")
    parser.add_argument("--summary", type=Path, help="also write the markdown summary to this file")
    parser.add_argument(
        "--pair-tests",
        type=Path,
        help="per-pair tests against the base (brain_pairs.tsv): they join "
        "the FDR family and the summary; written with p_fdr to <out>/instruction_pair_tests.tsv",
    )
    parser.add_argument("--demo", action="store_true", help="label figures and summary as simulated demo data")
    parser.add_argument(
        "--surprisal",
        type=Path,
        nargs="+",
        help="surprisal files on Natural Stories, one per model "
        "(results/surprisal/futrell2018/<model>.unit.parquet): adds bits_per_word to the properties",
    )
    parser.set_defaults(func=run_analyze)


def resolve_models(args: argparse.Namespace) -> tuple[dict[str, dict], dict[str, dict]]:
    """Return (the models to analyze, every model defined) from --models or --config/--suite."""
    if args.models is not None:
        return load_models_file(args.models, args.suite)
    from brainalign.config import load_config, suite_models  # the configuration layer is heavier; load on demand

    config = load_config(args.config)
    registry = config.get("models")
    if not isinstance(registry, dict) or not registry:
        raise ConfigError(f"{args.config}: defines no models; add blocks under 'models:'.")
    selected = suite_models(config, args.suite) if args.suite else registry
    return dict(selected), dict(registry)


def run_analyze(args: argparse.Namespace) -> None:
    """Handler of ``brainalign analyze``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    selected, registry = resolve_models(args)
    brain = read_scores(args.brain_scores, selected, registry)
    behavior = read_scores(args.behavior_scores, selected, registry)
    bits = bits_per_word(args.surprisal) if args.surprisal else None
    pair_tests = io.read_tsv(args.pair_tests) if args.pair_tests else None
    pair_tests = compute_study_statistics(
        brain,
        behavior,
        selected,
        args.out,
        published_dir=args.published,
        n_resamples=args.n_resamples,
        seed=args.seed,
        pair_tests=pair_tests,
        bits=bits,
    )
    if pair_tests is not None:
        io.write_tsv(args.out / "instruction_pair_tests.tsv", pair_tests)
    if args.figures is not None:
        from brainalign.plots.figures import draw_figures  # matplotlib only when figures are asked for

        layers = read_scores(args.brain_layers, selected, registry) if args.brain_layers else None
        draw_figures(brain, layers, behavior, args.out, selected, args.figures, args.demo)
    if args.summary is not None:
        from brainalign.analysis.summary import write_summary

        write_summary(args.out, brain, behavior, args.summary, args.demo, pair_tests)
