"""The `review` config group as frozen settings, and the review stage's error."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.settings import load_settings

DECISIONS = ("flag", "review", "pass", "error")
RUN_KINDS = ("daily", "rescan")
HISTOGRAMS_ARTIFACT = "drift/histograms.json"


class ReviewError(BrandsentryError, ValueError):
    """A scoring run that cannot be reviewed as asked (already logged, unknown kind, nothing to show)."""


@dataclass(frozen=True)
class EvidenceSettings:
    queue: dict[
        str, int
    ]  # decision -> listings on the page, in this order (review before flag: what needs a human)
    panel_side: int  # px: longest side of each picture on the evidence page
    attribution_top: int  # contributions listed under "why it scored high"
    attribution_players: (
        int  # exact Shapley enumerates 2**players coalitions: cues, or cue groups beyond this
    )

    def __post_init__(self) -> None:
        unknown = [d for d in self.queue if d not in DECISIONS[:3]]
        if unknown:
            raise ConfigError(
                f"review.evidence.queue has unknown decision(s) {unknown} (expected {list(DECISIONS[:3])})"
            )
        negative = {d: n for d, n in self.queue.items() if n < 0}
        if negative:
            raise ConfigError(f"review.evidence.queue counts must be >= 0, got {negative}")
        if not 1 <= self.attribution_players <= 12:
            raise ConfigError(
                f"review.evidence.attribution_players must be in [1, 12] (2**players model calls per listing), "
                f"got {self.attribution_players}"
            )

    @property
    def decisions(self) -> tuple[str, ...]:
        return tuple(self.queue)

    @property
    def top(self) -> int:
        """Listings on the page at most."""
        return sum(self.queue.values())


@dataclass(frozen=True)
class DriftSettings:
    window: int  # trailing daily runs pooled into the baseline
    bins: int  # fixed, equal-width bins over each metric's range
    bound: float  # warn when PSI exceeds its no-drift noise level by more than this
    min_rows: int  # a brand is compared only with this many rows today and in the baseline
    ranges: dict[str, tuple[float, float]]  # metric -> (low, high); values outside fall into the end bins

    def __post_init__(self) -> None:
        for name, (low, high) in self.ranges.items():
            if not low < high:
                raise ConfigError(f"review.drift.ranges.{name} must be [low, high] with low < high")
        if self.window < 1 or self.bins < 2:
            raise ConfigError("review.drift.window must be >= 1 and review.drift.bins >= 2")

    def edges(self, metric: str) -> np.ndarray:
        if metric not in self.ranges:
            raise KeyError(f"no drift range for metric {metric!r}")
        low, high = self.ranges[metric]
        return np.linspace(low, high, self.bins + 1)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.ranges)


@dataclass(frozen=True)
class RescanSettings:
    out: Path  # each rescan writes <out>/<brand>-<timestamp>/


@dataclass(frozen=True)
class ReviewSettings:
    """The `review` config group (configs/review/), validated."""

    experiment: str  # MLflow experiment of the scoring runs
    tracking_uri: str | None  # None = the workspace's store
    evidence: EvidenceSettings
    drift: DriftSettings
    rescan: RescanSettings

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ReviewSettings:
        if "review" not in cfg:
            raise ConfigError(
                "config has no 'review' group: add '- review: default' to the defaults of "
                "configs/brandsentry.yaml (or pass +review=default)"
            )
        return load_settings(cls, cfg.review, "review")
