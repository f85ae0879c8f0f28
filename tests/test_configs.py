"""Every config of every group composes, for every primary config (brandsentry, train, ...), with every experiment.

Groups are discovered from configs/ and from each primary's defaults list (with the configs/base.yaml it
starts from), so a new option file is covered the day it is added. Composed configs are also resolved (every
interpolation) and the stage sections are validated by the code that reads them; every option of a group
read as settings holds exactly the settings' fields.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import get_type_hints

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from brandsentry.alliance import AllianceSettings
from brandsentry.classify import ClassifierSettings
from brandsentry.config import config_dir, load_config
from brandsentry.cues import CueConfig
from brandsentry.embed import EmbedderSettings
from brandsentry.errors import ConfigError
from brandsentry.evaluation import suite_settings
from brandsentry.evaluation.logo_brand import LogoBrandSettings
from brandsentry.evaluation.retrieval import RetrievalSettings
from brandsentry.evaluation.tampered_logo import TamperedLogoSettings
from brandsentry.features import FeatureSettings
from brandsentry.finetune import FinetuneSettings
from brandsentry.images import DecodeLimits
from brandsentry.index import IndexParams
from brandsentry.ingest import IngestConfig, IngestSettings
from brandsentry.portal.service import PortalSettings
from brandsentry.review import ReviewSettings
from brandsentry.scoring.settings import ScoreSettings
from brandsentry.settings import load_settings
from brandsentry.synth import SynthParams

CONFIGS = config_dir()
BASE = "base"  # what every primary config starts from
PRIMARIES = tuple(sorted(path.stem for path in CONFIGS.glob("*.yaml") if path.stem != BASE))
# config group -> the frozen settings read from it by `brandsentry.settings.load_settings`, or option ->
# settings where each option of the group has its own (the evaluation suites)
SETTINGS = {
    "alliance": AllianceSettings,
    "cues": CueConfig,
    "classifier": ClassifierSettings,
    "review": ReviewSettings,
    "images": DecodeLimits,
    "portal": PortalSettings,
    "features": FeatureSettings,
    "finetune": FinetuneSettings,
    "synth": SynthParams,
    "eval": {
        "retrieval": RetrievalSettings,
        "logo_brand": LogoBrandSettings,
        "tampered_logo": TamperedLogoSettings,
    },
    "score": ScoreSettings,
    "embedder": EmbedderSettings,
    "index": IndexParams,
    "ingest": IngestConfig,
}


def settings_of(group: str, option: str) -> type:
    found = SETTINGS[group]
    return found[option] if isinstance(found, dict) else found


def defaults_of(config: str) -> dict[str, str | None]:
    """group -> default option of a config's defaults list, with those of the configs it starts from."""
    found = {}
    for entry in yaml.safe_load((CONFIGS / f"{config}.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            found.update(entry)
        elif entry != "_self_":
            found.update(defaults_of(entry))
    return found


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


# Each section's strict reader; the whole config where a reader needs more than its own section.
SECTION_READERS = {
    "alliance": AllianceSettings.from_config,
    "cues": lambda cfg: CueConfig.from_config(cfg.cues),
    "index": lambda cfg: IndexParams.from_config(cfg.index),
    "images": lambda cfg: DecodeLimits.from_config(cfg.images),
    "classifier": lambda cfg: ClassifierSettings.from_config(cfg.classifier),
    "review": ReviewSettings.from_config,
    "portal": lambda cfg: PortalSettings.from_config(cfg.portal),
    "features": lambda cfg: FeatureSettings.from_config(cfg.features),
    "finetune": lambda cfg: FinetuneSettings.from_config(cfg.finetune),
    "synth": lambda cfg: SynthParams.from_config(cfg.synth),
    # the data directory is the command line's to give
    "eval": lambda cfg: suite_settings(OmegaConf.merge(cfg, {"eval": {"data_dir": "x"}})),
    "embedder": lambda cfg: EmbedderSettings.from_config(cfg.embedder),
    "ingest": IngestSettings.from_config,
    # score.listings is the command line's to give: read the rest as settings
    "score": lambda cfg: load_settings(ScoreSettings, cfg.score, "score"),
}


def check_stage_sections(cfg) -> None:
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for section, read in SECTION_READERS.items():
        if section in cfg:
            read(cfg)


def settings_keys(cls) -> dict:
    """The key tree a settings class reads: field -> the nested tree of a dataclass field, else None."""
    hints = get_type_hints(cls)
    return {
        f.name: settings_keys(hints[f.name]) if is_dataclass(hints[f.name]) else None for f in fields(cls)
    }


def yaml_keys(node, like: dict) -> dict:
    """The key tree of a composed node, descending where `like` has a nested tree."""
    return {key: yaml_keys(node[key], like[key]) if isinstance(like.get(key), dict) else None for key in node}


def test_the_discovery_sees_the_known_groups():
    assert {"embedder", "index", "cues", "classifier", "experiment", "logger", "data"} <= set(all_groups())
    assert defaults_of("train")["experiment"] is None
    assert {"train", "brandsentry", "evaluate"} <= set(PRIMARIES)
    assert len(cases()) >= sum(len(options(g)) for g in all_groups())


@pytest.mark.parametrize("primary", PRIMARIES)
def test_every_primary_starts_from_the_base_and_repeats_none_of_it(primary):
    raw = yaml.safe_load((CONFIGS / f"{primary}.yaml").read_text())
    base = yaml.safe_load((CONFIGS / f"{BASE}.yaml").read_text())
    assert raw["defaults"][0] == BASE
    assert not set(defaults_of(BASE)) & {key for e in raw["defaults"] if isinstance(e, dict) for key in e}
    assert not (set(base) - {"defaults"}) & set(raw)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in SETTINGS for o in options(g)])
def test_every_option_of_a_settings_group_holds_exactly_the_settings_fields(group, option):
    primary = next(p for p in PRIMARIES if group in defaults_of(p))
    node = load_config([f"{group}={option}"], config_name=primary)[group]
    expected = settings_keys(settings_of(group, option))
    assert yaml_keys(node, expected) == expected


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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nonsense_key=1", r"unknown config key\(s\) nonsense_key; valid keys of the config: alliance, cues"),
        (
            "cues.logo.ratoi=0.7",
            r"cues.logo.ratoi \(did you mean cues.logo.ratio\?\); valid keys of cues.logo:",
        ),
        (
            "embedder=lite9",
            r"embedder=lite9: config group embedder has no option 'lite9'; choices: lite0, lite0_full_gem",
        ),
        ("cues.logo.ratio=[", r"cannot parse override"),
    ],
)
def test_an_override_hydra_cannot_apply_is_a_config_error_naming_it(override, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_config([override])
    assert "+" not in str(raised.value)  # never the hint that would add a misspelt key silently


def test_a_bad_override_on_the_command_line_is_one_line_without_a_traceback(capsys):
    from brandsentry.cli import main

    assert main(["index", "info", "cues.logo.ratoi=0.7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean cues.logo.ratio?" in err and "Traceback" not in err
