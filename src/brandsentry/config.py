"""Hydra configuration and the workspace layout shared by every command."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from brandsentry.errors import ConfigError


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
    """Compose a config the way the CLI does (`key=value` overrides), for commands and tests."""
    if GlobalHydra.instance().is_initialized():
        # inside a Hydra app (`brandsentry train`), which refuses a second initialisation; it searches
        # config_dir() already
        return compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


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
