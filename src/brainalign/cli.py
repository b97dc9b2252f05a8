"""Command-line interface: ``brainalign <stage> ...`` runs the same library functions as the workflow.

Each subpackage owns its subcommands in a ``cli`` module exposing ``register(subparsers)``;
this module only collects them and turns :class:`BrainalignError` into a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from brainalign import __version__
from brainalign.errors import BrainalignError

SUBCOMMAND_MODULES = (
    "brainalign.models.cli",  # extract, surprisal
    "brainalign.encoding.cli",  # encode
    "brainalign.behavior.cli",  # score-reading-times
    "brainalign.analysis.cli",  # analyze
    "brainalign.provenance",  # provenance
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every stage's subcommands."""
    parser = argparse.ArgumentParser(prog="brainalign", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"brainalign {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status (2 with a one-line message for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except BrainalignError as error:
        print(f"brainalign {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
