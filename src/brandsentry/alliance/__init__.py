"""The brand side of the alliance: what brands take away from the scoring, beyond one listing at a time.

- `window`: the scored listings and reviewer verdicts of a time window, read from the catalog's ledger.
- `sellers`: sellers across days (repeat-infringer score) and seller clusters linked by shared photos.
- `case`: a self-contained, hashed evidence package for one brand against a seller or cluster.
- `report`: the monthly transparency report (HTML, JSON, MLflow run of the `reports` experiment).
"""

from __future__ import annotations

from dataclasses import dataclass

from brandsentry.errors import ConfigError


@dataclass(frozen=True)
class AllianceSettings:
    """`configs/alliance/`: linking, scoring and report sizes (see the YAML for what each means)."""

    link_cosine: float
    confirm_weight: float
    prior_strength: float
    top: int
    evidence_listings: int
    out: str

    def __post_init__(self):
        if not 0.0 < self.link_cosine <= 1.0:
            raise ConfigError(f"alliance.link_cosine must be in (0, 1], got {self.link_cosine}")
        if self.confirm_weight < 1.0:
            raise ConfigError(f"alliance.confirm_weight must be at least 1, got {self.confirm_weight}")
        if self.prior_strength < 0.0:
            raise ConfigError(f"alliance.prior_strength must be >= 0, got {self.prior_strength}")
        if self.top < 1 or self.evidence_listings < 1:
            raise ConfigError("alliance.top and alliance.evidence_listings must be at least 1")

    @classmethod
    def from_config(cls, cfg) -> AllianceSettings:
        from brandsentry.settings import load_settings

        return load_settings(cls, cfg.alliance, "alliance")
