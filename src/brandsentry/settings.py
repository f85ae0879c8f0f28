"""Config groups as frozen, typed settings: one strict reading, with every default in configs/ only.

`load_settings(cls, node, group)` builds a frozen dataclass from a config node: every field must be set,
no other key may be (a misspelt one is named with a close match), values must have the field's type (lists
become tuples where the field says so; nested dataclass fields are read the same way, recursively).
Validation belongs in the dataclass's `__post_init__`, so that it also covers `dataclasses.replace`.

`default_settings(cls, group, **changes)` is the YAML defaults of a group, for code and tests that have no
composed config at hand.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from brandsentry.config import load_config, unknown_keys
from brandsentry.errors import ConfigError

T = TypeVar("T")

# The primary configs searched, in this order, for the config group of a `default_settings` call.
PRIMARIES = ("brandsentry", "train", "evaluate")
MISSING = "???"


def load_settings(cls: type[T], node: DictConfig | Mapping | None, group: str) -> T:
    """`node` as a `cls`; `group` is the node's dotted path in the config, which every error names."""
    if node is None:
        raise ConfigError(f"config has no {group!r} section")
    if isinstance(node, DictConfig):
        try:
            values = OmegaConf.to_container(node, resolve=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{group}: {exc}") from None
    elif isinstance(node, Mapping):
        values = dict(node)
    else:
        raise ConfigError(f"{group} must be a section of keys, got {node!r}")
    names = [f.name for f in fields(cls) if f.init]
    unknown = [key for key in values if key not in names]
    if unknown:
        raise unknown_keys(group, unknown, names)
    missing = [name for name in names if name not in values or values[name] == MISSING]
    if missing:
        listed = ", ".join(f"{group}.{name}" for name in missing)
        raise ConfigError(
            f"config value(s) {listed} not set (pass {group}.{missing[0]}=... or set it in configs/)"
        )
    hints = get_type_hints(cls)
    return cls(**{name: _convert(values[name], hints[name], f"{group}.{name}") for name in names})


def default_settings(cls: type[T], group: str, **changes) -> T:
    """The configs/ defaults of `group` as a `cls`, with `changes` (fields of `cls`) applied and checked.

    `group` is a dotted node path ("cues", "review.drift"), optionally naming a non-default option of its
    config group ("classifier/logreg"). The node comes from the first primary config holding the group.
    """
    settings = _defaults(cls, group)
    if not changes:
        return settings
    values = {f.name: getattr(settings, f.name) for f in fields(cls) if f.init}
    return load_settings(cls, {**values, **changes}, group.partition("/")[0])


@functools.cache
def _defaults(cls: type, group: str):
    path, _, option = group.partition("/")
    root = path.split(".")[0]
    primary = next((name for name in PRIMARIES if root in _composed(name, ())), None)
    if primary is None:
        raise ConfigError(f"no primary config ({', '.join(PRIMARIES)}) has a {root!r} group")
    cfg = _composed(primary, (f"{root}={option}",) if option else ())
    return load_settings(cls, OmegaConf.select(cfg, path), path)


@functools.cache
def _composed(primary: str, overrides: tuple[str, ...]) -> DictConfig:
    return load_config(overrides, config_name=primary)


def _convert(value: Any, hint: Any, key: str) -> Any:
    """`value` as type `hint`, or a ConfigError naming `key`; an int is a valid float, a number a valid str
    (the command line reads `experiment=2024` as an int)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if is_dataclass(hint):
        return value if isinstance(value, hint) else load_settings(hint, value, key)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arm in (arm for arm in args if arm is not type(None)):
            try:
                return _convert(value, arm, key)
            except ConfigError:
                continue
        raise _wrong_type(key, hint, value)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise _wrong_type(key, hint, value)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [_convert(item, args[0] if args else Any, f"{key}[{i}]") for i, item in enumerate(value)]
        elif args and len(args) != len(value):
            raise ConfigError(f"{key} needs {len(args)} values, got {list(value)!r}")
        else:
            items = [_convert(item, args[i] if args else Any, f"{key}[{i}]") for i, item in enumerate(value)]
        return origin(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong_type(key, hint, value)
        key_type, value_type = args or (Any, Any)
        return {
            _convert(name, key_type, key): _convert(item, value_type, f"{key}.{name}")
            for name, item in value.items()
        }
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _wrong_type(key, hint, value)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _wrong_type(key, hint, value)
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _wrong_type(key, hint, value)
    if hint is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise _wrong_type(key, hint, value)
    if hint is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise _wrong_type(key, hint, value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _wrong_type(key, hint, value)
    return value


def _wrong_type(key: str, hint: Any, value: Any) -> ConfigError:
    name = hint.__name__ if isinstance(hint, type) else str(hint)
    return ConfigError(f"{key} must be {name}, got {value!r}")
