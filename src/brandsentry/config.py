"""Hydra configuration and the workspace layout shared by every command."""

from __future__ import annotations

import difflib
import os
import re
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

    An override Hydra cannot apply (an unknown key, a group option that does not exist, bad syntax) is a
    `ConfigError` naming it; for an unknown key with the closest existing one, never Hydra's hint to add it
    with `+`, which would make a misspelt key silently ignored.
    """
    overrides = list(overrides)
    try:
        return _compose(config_name, overrides)
    except MissingConfigException as exc:  # Hydra lists the options one per line, then its search path
        text = str(exc).split("Config search path")[0]
        problem, _, options = text.partition("Available options in")
        group, _, names = options.partition(":")
        listed = f"; options of {group.strip()}: {', '.join(names.split())}" if names.strip() else ""
        raise ConfigError(" ".join(problem.split()) + listed) from None
    except OverrideParseException as exc:
        raise ConfigError(f"cannot parse override: {exc}") from None
    except ConfigCompositionException as exc:
        raise ConfigError(_composition_problem(exc, config_name, overrides)) from None


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
