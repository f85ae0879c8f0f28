"""The `review` config group as frozen settings, and the review stage's error."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from omegaconf import DictConfig, OmegaConf

from brandsentry.errors import BrandsentryError, ConfigError

DECISIONS = ("flag", "review", "pass", "error")
RUN_KINDS = ("daily", "rescan")
HISTOGRAMS_ARTIFACT = "drift/histograms.json"


class ReviewError(BrandsentryError, ValueError):
    """A scoring run that cannot be reviewed as asked (already logged, unknown kind, nothing to show)."""


@dataclass(frozen=True)
class DriftSettings:
    window: int = 7  # trailing daily runs pooled into the baseline
    bins: int = 10  # fixed, equal-width bins over each metric's range
    bound: float = 0.2  # warn when PSI exceeds its no-drift noise level by more than this
    min_rows: int = 50  # a brand is compared only with this many rows today and in the baseline
    ranges: tuple[tuple[str, float, float], ...] = (("score", 0.0, 1.0), ("sim_top1", 0.0, 1.0))

    def edges(self, metric: str) -> np.ndarray:
        for name, low, high in self.ranges:
            if name == metric:
                return np.linspace(low, high, self.bins + 1)
        raise KeyError(f"no drift range for metric {metric!r}")

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.ranges)


@dataclass(frozen=True)
class ReviewSettings:
    """The `review` config group (configs/review/), validated."""

    experiment: str = "scoring"
    tracking_uri: str | None = None
    evidence_top: int = 25
    evidence_decisions: tuple[str, ...] = ("flag", "review")
    panel_side: int = 520  # px: longest side of each picture on the evidence page
    attribution_top: int = 3
    drift: DriftSettings = field(default_factory=DriftSettings)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ReviewSettings:
        if "review" not in cfg:
            raise ConfigError(
                "config has no 'review' group: add '- review: default' to the defaults of "
                "configs/brandsentry.yaml (or pass +review=default)"
            )
        section = OmegaConf.to_container(cfg.review, resolve=True)
        drift = section.get("drift", {})
        ranges = tuple((str(k), float(v[0]), float(v[1])) for k, v in drift.get("ranges", {}).items())
        drift_settings = DriftSettings(
            window=int(drift.get("window", 7)),
            bins=int(drift.get("bins", 10)),
            bound=float(drift.get("bound", 0.2)),
            min_rows=int(drift.get("min_rows", 50)),
            ranges=ranges or DriftSettings().ranges,
        )
        evidence = section.get("evidence", {})
        settings = cls(
            experiment=str(section.get("experiment", "scoring")),
            tracking_uri=section.get("tracking_uri"),
            evidence_top=int(evidence.get("top", 25)),
            evidence_decisions=tuple(evidence.get("decisions", ("flag", "review"))),
            panel_side=int(evidence.get("panel_side", 520)),
            attribution_top=int(evidence.get("attribution_top", 3)),
            drift=drift_settings,
        )
        unknown = [d for d in settings.evidence_decisions if d not in DECISIONS[:3]]
        if unknown:
            raise ConfigError(f"review.evidence.decisions has unknown decision(s) {unknown}")
        for name, low, high in drift_settings.ranges:
            if not low < high:
                raise ConfigError(f"review.drift.ranges.{name} must be [low, high] with low < high")
        if drift_settings.window < 1 or drift_settings.bins < 2:
            raise ConfigError("review.drift.window must be >= 1 and review.drift.bins >= 2")
        return settings
