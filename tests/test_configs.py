"""Every config of every group composes, for every primary config (brandsentry, train, ...), with every experiment.

Groups are discovered from configs/ and from each primary's defaults list, so a new option file is covered
the day it is added. Composed configs are also resolved (every interpolation) and the stage sections are
validated by the code that reads them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from brandsentry.classify import ClassifierSettings
from brandsentry.config import config_dir, load_config
from brandsentry.cues import CueConfig
from brandsentry.images import DecodeLimits
from brandsentry.index import IndexParams

CONFIGS = config_dir()
PRIMARIES = tuple(sorted(path.stem for path in CONFIGS.glob("*.yaml")))


def defaults_of(primary: str) -> dict[str, str | None]:
    """group -> default option of a primary config's defaults list (`_self_` left out)."""
    entries = yaml.safe_load((CONFIGS / f"{primary}.yaml").read_text())["defaults"]
    return {key: value for entry in entries if isinstance(entry, dict) for key, value in entry.items()}


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIGS / group).glob("*.yaml"))


def all_groups() -> list[str]:
    return sorted(path.name for path in CONFIGS.iterdir() if path.is_dir() and options(path.name))


def cases() -> list[tuple[str, str]]:
    """(primary, override) for every option of every group; groups outside both defaults are appended."""
    in_defaults = {group for primary in PRIMARIES for group in defaults_of(primary)}
    found = []
    for primary in PRIMARIES:
        for group in defaults_of(primary):
            found += [(primary, f"{group}={option}") for option in options(group)]
    found += [("brandsentry", f"+{group}={option}") for group in all_groups() if group not in in_defaults
              for option in options(group)]  # fmt: skip
    return found


def check_stage_sections(cfg) -> None:
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    if "cues" in cfg:
        CueConfig.from_config(cfg.cues)
    if "index" in cfg:
        IndexParams.from_config(cfg.index)
    if "images" in cfg:
        DecodeLimits.from_config(cfg.images)
    if "classifier" in cfg:
        ClassifierSettings.from_config(cfg.classifier)


def test_the_discovery_sees_the_known_groups():
    assert {"embedder", "index", "cues", "classifier", "experiment", "logger", "data"} <= set(all_groups())
    assert defaults_of("train")["experiment"] is None
    assert {"train", "brandsentry"} <= set(PRIMARIES)
    assert len(cases()) >= sum(len(options(g)) for g in all_groups())


@pytest.mark.parametrize(("primary", "override"), cases())
def test_every_group_option_composes(primary, override):
    check_stage_sections(load_config([override], config_name=primary))


@pytest.mark.parametrize(
    ("primary", "experiment"),
    [(p, e) for p in PRIMARIES if "experiment" in defaults_of(p) for e in options("experiment")],
)
def test_every_experiment_composes(primary, experiment):
    cfg = load_config([f"experiment={experiment}"], config_name=primary)
    check_stage_sections(cfg)
    if experiment == "similarity_only":
        cues = CueConfig.from_config(cfg.cues)
        assert not any((cues.logo.enabled, cues.text.enabled, cues.packaging.enabled, cues.seller.enabled))
    if experiment == "logreg":
        assert cfg.classifier.kind == "logreg"
    # an experiment combines with any classifier the user picks
    for classifier in options("classifier"):
        check_stage_sections(
            load_config([f"experiment={experiment}", f"classifier={classifier}"], config_name=primary)
        )


def test_train_requires_listings_and_keeps_hydra_outputs_in_the_workspace(tmp_path):
    cfg = load_config([f"workspace={tmp_path}"], config_name="train")
    assert OmegaConf.is_missing(cfg, "listings")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        full = compose("train", overrides=[f"workspace={tmp_path}"], return_hydra_config=True)
    assert full.hydra.job.chdir is False
    run_dir, sweep_dir = Path(full.hydra.run.dir), Path(full.hydra.sweep.dir)
    assert run_dir.is_relative_to(tmp_path / "runs" / "train")
    assert sweep_dir.is_relative_to(tmp_path / "runs" / "train")
