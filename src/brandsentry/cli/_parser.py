"""How every command's parser is built, so that each `--help` reads the same way (README "CLI conventions").

A command's usage line ends with the config values it takes as `key=value` overrides (the required ones
first, e.g. `listings=MANIFEST`, then `[key=value ...]`), which argparse never sees: `main` splits them
off first. Its help has a description and an examples section, both printed as written.
"""

from __future__ import annotations

import argparse
import functools
import textwrap
from collections.abc import Callable, Iterable

OVERRIDES = "[key=value ...]"


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs laid out as written; the usage line ends with the command's config values."""

    def __init__(self, prog: str, config_values: Callable[[], str] | None = None, **kwargs) -> None:
        super().__init__(prog, **kwargs)
        self.config_values = config_values

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """A one-line paragraph is wrapped to the terminal; one laid out in lines (examples, lists) is kept."""
        return "\n\n".join(
            textwrap.fill(part, width, initial_indent=indent, subsequent_indent=indent)
            if "\n" not in part
            else "".join(indent + line for line in part.splitlines(keepends=True))
            for part in text.split("\n\n")
        )

    def _format_usage(self, usage, actions, groups, prefix) -> str:
        text = super()._format_usage(usage, actions, groups, prefix)
        if self.config_values is None or prefix == "":  # prefix "": argparse naming a subcommand's prog
            return text
        return f"{text.rstrip()} {self.config_values()}\n\n"


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser (and, through `add_subparsers`, its subcommands') that knows its config values."""

    def __init__(self, *args, config_values: Callable[[], str] | None = None, **kwargs) -> None:
        self.config_values = config_values  # before argparse's __init__, which formats the -h action
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def _get_formatter(self) -> argparse.HelpFormatter:
        if issubclass(self.formatter_class, Formatter):
            return self.formatter_class(prog=self.prog, config_values=self.config_values)
        return super()._get_formatter()


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    examples: Iterable[str],
    epilog: str = "",
    config_values: Callable[[], str] | None = lambda: OVERRIDES,
) -> CommandParser:
    """A command (or command group: `config_values=None`) with its description and examples section.

    `examples` are command lines without the leading `brandsentry`; `epilog` (exit codes, columns) follows.
    """
    lines = "\n".join(f"  brandsentry {example}" for example in examples)
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"examples:\n{lines}" + (f"\n\n{epilog}" if epilog else ""),
        config_values=config_values,
    )


def add_group(subparsers: argparse._SubParsersAction, name: str, **kwargs) -> argparse._SubParsersAction:
    """A command group (`index`, `refs`, ...): the subparsers its actions are added to."""
    group = add_command(subparsers, name, config_values=None, **kwargs)
    return group.add_subparsers(dest="action", required=True, metavar="ACTION")


def required_values(config_name: str, metavars: dict[str, str]) -> Callable[[], str]:
    """The usage text of a config's required values (`???` in its YAML) and then `[key=value ...]`.

    Composed only when a usage line is printed; `metavars` names a key's value (listings -> MANIFEST).
    """

    @functools.cache
    def text() -> str:
        from omegaconf import OmegaConf

        from brandsentry.config import load_config

        missing = _missing_keys(OmegaConf.to_container(load_config([], config_name=config_name)))
        return " ".join([*(f"{key}={metavars.get(key, key.upper())}" for key in missing), OVERRIDES])

    return text


def _missing_keys(node: dict, prefix: str = "") -> Iterable[str]:
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _missing_keys(value, f"{prefix}{key}.")
        elif value == "???":
            yield f"{prefix}{key}"
