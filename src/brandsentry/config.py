"""Hydra configuration and the workspace layout shared by every command."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from brandsentry.errors import ConfigError

HYDRA_ERRORS = (ConfigCompositionException, MissingConfigException, OverrideParseException)


def config_dir() -> Path:
    """Where the Hydra configs live: inside the installed wheel, else the source checkout."""
    override = os.environ.get("BRANDSENTRY_CONFIG_DIR")
    candidates = [Path(override)] if override else []
    candidates += [Path(__file__).parent / "configs", Path(__file__).resolve().parents[2] / "configs"]
    for candidate in candidates:
        if (candidate / "brandsentry.yaml").is_file():
            return candidate
    raise ConfigError(f"no brandsentry configs found in {[str(c) for c in candidates]}")


def load_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "brandsentry") -> DictConfig:
    """Compose a config the way the CLI does (`key=value` overrides), for commands and tests.

    An override Hydra cannot apply is a `ConfigError` naming it (see `hydra_errors_named`).
    """
    overrides = list(overrides)
    with hydra_errors_named(config_name, overrides):
        return _compose(config_name, overrides)


@contextmanager
def hydra_errors_named(config_name: str, overrides: list[str]) -> Iterator[None]:
    """Turn Hydra's composition errors into one-line `ConfigError`s naming the bad override.

    An unknown key is named with the closest existing one, never with Hydra's hint to add it with `+`
    (which would make a misspelt key silently ignored); a group option that does not exist is named with
    the group's options (its YAML files); bad syntax is quoted.
    """
    try:
        yield
    except MissingConfigException as exc:
        raise ConfigError(_missing_option(exc, overrides)) from None
    except OverrideParseException as exc:
        raise ConfigError(_unparsable(exc, overrides)) from None
    except ConfigCompositionException as exc:
        raise ConfigError(_composition_problem(exc, config_name, overrides)) from None


def group_options(group: str) -> list[str]:
    """The options of config group `group` (e.g. "embedder"): its YAML files' names."""
    return sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))


def _unparsable(exc: OverrideParseException, overrides: list[str]) -> str:
    """`cannot parse override 'cues.logo.ratio=[': ...`: Hydra's reason names no override, only a token."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as found:
            return f"cannot parse override {override!r}: {str(found).splitlines()[0]} (Hydra override syntax)"
    return f"cannot parse overrides: {str(exc).splitlines()[0]}"


def _missing_option(exc: MissingConfigException, overrides: list[str]) -> str:
    """`embedder=lite9: config group embedder has no option lite9; choices: lite0, ...`."""
    found = re.search(r"Could not find '([^']+)/([^'/]+)'", str(exc))
    if found is None:
        return " ".join(str(exc).split("Config search path")[0].split())
    group, option = found.groups()
    override = next(
        (o for o in overrides if re.fullmatch(rf"\+*{re.escape(group)}=.*{re.escape(option)}.*", o)),
        f"{group}={option}",
    )
    return f"{override}: config group {group} has no option {option!r}; choices: {', '.join(group_options(group))}"


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    if GlobalHydra.instance().is_initialized():
        # inside a Hydra app (`brandsentry train`), which refuses a second initialisation; it searches
        # config_dir() already
        return compose(config_name=config_name, overrides=overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def unknown_keys(group: str, unknown: list, names: list[str]) -> ConfigError:
    """The error for keys a config node does not have: each named, with a close valid key if any
    (`group` is the node's dotted path, "" for the config's top level)."""
    prefix = f"{group}." if group else ""
    named = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), names, n=1)
        named.append(f"{prefix}{key}" + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
    where = group or "the config"
    return ConfigError(f"unknown config key(s) {', '.join(named)}; valid keys of {where}: {', '.join(names)}")


def _composition_problem(exc: Exception, config_name: str, overrides: list[str]) -> str:
    """`unknown_keys`' message for an override of a key that does not exist; Hydra's own otherwise."""
    found = re.match(r"Could not override '([^']+)'", str(exc))
    if found is None:
        return str(exc).strip()
    key = found.group(1)
    parent, _, leaf = key.rpartition(".")
    others = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
    try:
        node = (
            OmegaConf.select(_compose(config_name, others), parent)
            if parent
            else _compose(config_name, others)
        )
    except HYDRA_ERRORS:  # the rest of the overrides fail too: name this key alone
        node = None
    if not isinstance(node, DictConfig):
        return f"unknown config key(s) {key}"
    return str(unknown_keys(parent, [leaf], sorted(str(k) for k in node)))


def require(cfg: DictConfig, key: str):
    """Value at dotted `key`, with an error naming it when it is missing (`???`) or absent."""
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        value = None
    if value is None:
        raise ConfigError(f"required config value {key!r} is not set (pass {key}=...)")
    return value


@dataclass(frozen=True)
class Workspace:
    """Everything a deployment writes lives under one root, so two workspaces never interfere."""

    root: Path

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Workspace:
        root = Path(str(cfg.workspace)).expanduser()
        return cls(root.resolve())

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def image_store(self) -> Path:
        return self.root / "images"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def ensure(self) -> Workspace:
        for path in (self.root, self.image_store, self.index_dir, self.mlflow_artifacts, self.runs_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self
