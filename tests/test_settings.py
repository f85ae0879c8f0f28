"""The settings loader: strict keys, named errors, typed values, YAML defaults."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from brandsentry.errors import ConfigError
from brandsentry.settings import default_settings, load_settings


@dataclass(frozen=True)
class Inner:
    low: float
    high: float

    def __post_init__(self):
        if self.low > self.high:
            raise ConfigError(f"demo.band needs low <= high, got {self.low} > {self.high}")


@dataclass(frozen=True)
class Demo:
    name: str
    count: int
    ratio: float
    enabled: bool
    bins: tuple[int, int, int]
    kinds: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]
    threads: int | None
    out: Path
    band: Inner


GOOD = {
    "name": "x",
    "count": 3,
    "ratio": 1,
    "enabled": True,
    "bins": [4, 12, 12],
    "kinds": ["a", "b"],
    "ranges": {"score": [0, 1]},
    "threads": None,
    "out": "runs/out",
    "band": {"low": 0.1, "high": 0.9},
}


def test_a_node_becomes_a_typed_frozen_dataclass():
    settings = load_settings(Demo, OmegaConf.create(GOOD), "demo")
    assert settings == Demo(
        "x",
        3,
        1.0,
        True,
        (4, 12, 12),
        ("a", "b"),
        {"score": (0.0, 1.0)},
        None,
        Path("runs/out"),
        Inner(0.1, 0.9),
    )
    assert isinstance(settings.ratio, float)
    assert load_settings(Demo, {**GOOD, "threads": 4}, "demo").threads == 4


def test_interpolations_are_resolved():
    cfg = OmegaConf.create({"root": "/data", "demo": {**GOOD, "out": "${root}/out"}})
    assert load_settings(Demo, cfg.demo, "demo").out == Path("/data/out")


def test_an_unknown_key_is_named_with_the_valid_keys_and_a_close_match():
    with pytest.raises(
        ConfigError,
        match=r"demo\.band\.hihg \(did you mean demo\.band\.high\?\); valid keys of demo\.band: low, high",
    ):
        load_settings(Demo, {**GOOD, "band": {"low": 0.1, "high": 0.9, "hihg": 1.0}}, "demo")
    with pytest.raises(
        ConfigError, match=r"unknown config key\(s\) demo\.zzz; valid keys of demo: name, count"
    ):
        load_settings(Demo, {**GOOD, "zzz": 1}, "demo")


def test_a_missing_key_is_named():
    values = {key: value for key, value in GOOD.items() if key != "ratio"}
    with pytest.raises(ConfigError, match=r"demo\.ratio not set"):
        load_settings(Demo, values, "demo")
    with pytest.raises(ConfigError, match=r"demo\.count not set"):
        load_settings(Demo, OmegaConf.create({**GOOD, "count": "???"}), "demo")
    with pytest.raises(ConfigError, match="config has no 'demo' section"):
        load_settings(Demo, None, "demo")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("count", 2.5, r"demo\.count must be int, got 2\.5"),
        ("count", True, r"demo\.count must be int, got True"),
        ("enabled", 1, r"demo\.enabled must be bool, got 1"),
        ("bins", [4, 12], r"demo\.bins needs 3 values, got \[4, 12\]"),
        ("kinds", "ab", r"demo\.kinds must be"),
        ("ranges", {"score": [0, "x"]}, r"demo\.ranges\.score\[1\] must be float, got 'x'"),
        ("threads", "two", r"demo\.threads must be int \| None, got 'two'"),
        ("band", [0.1, 0.9], r"demo\.band must be a section of keys"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(Demo, {**GOOD, key: value}, "demo")


def test_a_number_is_a_valid_string():
    assert load_settings(Demo, {**GOOD, "name": 2024}, "demo").name == "2024"


def test_validation_in_post_init_runs_for_loaded_and_replaced_settings():
    with pytest.raises(ConfigError, match="low <= high"):
        load_settings(Demo, {**GOOD, "band": {"low": 0.9, "high": 0.1}}, "demo")
    settings = load_settings(Demo, GOOD, "demo")
    with pytest.raises(ConfigError, match="low <= high"):
        replace(settings.band, low=2.0)


def test_default_settings_come_from_the_yaml_with_checked_changes():
    from brandsentry.images import DecodeLimits

    assert default_settings(DecodeLimits, "images").max_side == 1024
    assert default_settings(DecodeLimits, "images", max_side=256) == replace(
        default_settings(DecodeLimits, "images"), max_side=256
    )
    with pytest.raises(ConfigError, match=r"images\.max_sid \(did you mean images\.max_side\?\)"):
        default_settings(DecodeLimits, "images", max_sid=256)
    with pytest.raises(ConfigError, match=r"images\.max_side must be int, got '256'"):
        default_settings(DecodeLimits, "images", max_side="256")


def test_default_settings_of_a_nested_node_and_of_another_option():
    from brandsentry.classify import ClassifierSettings
    from brandsentry.review import DriftSettings

    assert default_settings(DriftSettings, "review.drift").window == 7
    assert default_settings(ClassifierSettings, "classifier").kind == "hgb"  # train.yaml's default
    logreg = default_settings(ClassifierSettings, "classifier/logreg", target_precision=0.9)
    assert (logreg.kind, logreg.calibration, logreg.target_precision) == ("logreg", "sigmoid", 0.9)
    with pytest.raises(ConfigError, match="no primary config .* has a 'nowhere' group"):
        default_settings(DriftSettings, "nowhere")


def test_changes_to_another_option_name_the_node_path():
    from brandsentry.classify import ClassifierSettings

    with pytest.raises(ConfigError, match=r"classifier\.kindd \(did you mean classifier\.kind\?\)"):
        default_settings(ClassifierSettings, "classifier/logreg", kindd="hgb")
