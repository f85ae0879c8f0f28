"""`brandsentry <command> [options] [key=value ...]`: a thin edge over the pipeline stages.

Each command group is a module of this package with `register(subparsers)`, found at start-up (`_parser`
builds their parsers the same way: README "CLI conventions"); heavy imports
(torch, faiss) happen inside the handlers so that `--help` stays fast. Tokens shaped like
Hydra overrides (`key=value`, `+key=value`, `~key`) are split off before argparse sees the rest
and are applied to the composed config.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import re
import sys

from brandsentry.cli._parser import CommandParser

_OVERRIDE = re.compile(r"^(\+{1,2}|~)?[A-Za-z_][\w.\-/@]*(=|$)")


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra-style overrides from ordinary arguments (flags and their values stay put)."""
    plain, overrides = [], []
    for token in argv:
        is_override = "=" in token and not token.startswith("-") and _OVERRIDE.match(token)
        is_deletion = token.startswith("~") and _OVERRIDE.match(token)
        (overrides if is_override or is_deletion else plain).append(token)
    return plain, overrides


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="brandsentry",
        description="Counterfeit screening for marketplaces. Config values are key=value overrides after "
        "the command (workspace=DIR, index=hnsw, ...); paths the command acts on are positionals; flags "
        "choose modes (README: CLI conventions). `brandsentry COMMAND --help` shows each command's.",
        epilog="examples:\n"
        "  brandsentry synth world out=data/demo\n"
        "  brandsentry refs import data/demo/references.csv workspace=data/ws\n"
        "  brandsentry score listings=data/demo/listings_day2.csv workspace=data/ws",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):  # _parser: shared parser building, not a command
            importlib.import_module(f"{__name__}.{module.name}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # the reader went away (`brandsentry refs list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 1


def _run(argv: list[str]) -> int:
    plain, overrides = split_overrides(argv)
    args = build_parser().parse_args(plain)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it narrates its CPU-feature probing
    # ... and MLflow each creation or migration check of the workspace's sqlite store (every first command)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    # Bundles and baselines are copied from the local MLflow store in a blink; a progress bar per copy
    # would bury the command's own output (set it to true to see them).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from brandsentry.errors import BrandsentryError

    try:
        code = int(args.handler(args, overrides) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside main's reach, not at interpreter exit
        return code
    except BrandsentryError as exc:
        print(f"brandsentry {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
