"""`CueConfig`: the cue group of the Hydra config (configs/cues/), validated once into frozen values."""

from __future__ import annotations

import math
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from brandsentry.errors import ConfigError

DETECTORS = ("sift", "orb")


@dataclass(frozen=True)
class CascadeBounds:
    """Cheap counterfeit probabilities in [low, high] are uncertain and earn the expensive cues."""

    enabled: bool = True
    low: float = 0.1
    high: float = 0.9


@dataclass(frozen=True)
class SimilarityParams:
    enabled: bool = True
    top_k: int = 5


@dataclass(frozen=True)
class QualityParams:
    enabled: bool = True
    work_side: int = 512


@dataclass(frozen=True)
class SellerParams:
    enabled: bool = True
    copy_similarity: float = 0.985
    copy_phash_distance: int = 4


@dataclass(frozen=True)
class PackagingParams:
    enabled: bool = True
    max_references: int = 2
    work_side: int = 256
    color_bins: tuple[int, int, int] = (4, 12, 12)
    halftone_crop: int = 256
    halftone_band: tuple[float, float] = (0.2, 0.5)
    halftone_peak_factor: float = 10.0


@dataclass(frozen=True)
class LogoParams:
    enabled: bool = True
    detector: str = "sift"
    max_features: int = 1500
    max_side: int = 800
    min_side: int = 0  # smaller listings are enlarged to this longest side before features (0: never)
    template_max_side: int = 400
    template_min_side: int = 0  # smaller logo templates are enlarged to this longest side (0: never)
    ratio: float = 0.75
    min_matches: int = 8
    ransac_threshold: float = 5.0
    min_inliers: int = 12
    min_inlier_spread: float = 0.05
    min_box_side: int = 16


@dataclass(frozen=True)
class PlacementParams:
    """The listing registered onto its product reference; the logo checked where the reference has it."""

    enabled: bool = False
    max_references: int = 2  # claimed-brand product references tried (the most package inliers wins)
    min_inliers: int = 15  # inliers of the package homography below which the listing counts as unregistered
    min_inlier_spread: float = 0.1  # ... or whose convex hull covers less of the listing than this share
    ransac_threshold: float = 4.0  # pixels at the listing's logo working scale
    min_template_correlation: float = 0.9  # a logo too small for local features is located in the product
    # reference by normalised cross-correlation over scales where its peak reaches this
    correlation_scale_step: float = 1.1  # ratio between the template scales tried


@dataclass(frozen=True)
class TextParams:
    enabled: bool = True
    max_side: int = 1024
    min_score: float = 0.5
    near_miss_max_distance: int = 2
    near_miss_chars_per_edit: int = 5
    threads: int = 0


@dataclass(frozen=True)
class CueConfig:
    """Which cues run, the cascade bounds and every cue's parameters."""

    cascade: CascadeBounds = CascadeBounds()
    similarity: SimilarityParams = SimilarityParams()
    quality: QualityParams = QualityParams()
    seller: SellerParams = SellerParams()
    packaging: PackagingParams = PackagingParams()
    logo: LogoParams = LogoParams()
    placement: PlacementParams = PlacementParams()
    text: TextParams = TextParams()

    @classmethod
    def from_config(cls, cues_cfg: DictConfig | dict) -> CueConfig:
        """Build from the `cues` node of the composed config (or a plain dict); unknown keys are errors."""
        raw = OmegaConf.to_container(cues_cfg, resolve=True) if isinstance(cues_cfg, DictConfig) else cues_cfg
        sections = {
            "cascade": CascadeBounds,
            "similarity": SimilarityParams,
            "quality": QualityParams,
            "seller": SellerParams,
            "packaging": PackagingParams,
            "logo": LogoParams,
            "placement": PlacementParams,
            "text": TextParams,
        }
        unknown = set(raw) - set(sections)
        if unknown:
            raise ConfigError(f"unknown cues config sections {sorted(unknown)}")
        built = {name: _section(name, kind, raw.get(name) or {}) for name, kind in sections.items()}
        config = cls(**built)
        config.validate()
        return config

    def validate(self) -> None:
        c = self.cascade
        if not 0.0 <= c.low <= c.high <= 1.0:
            raise ConfigError(f"cues.cascade needs 0 <= low <= high <= 1, got low={c.low} high={c.high}")
        if self.logo.detector not in DETECTORS:
            raise ConfigError(f"unknown cues.logo.detector {self.logo.detector!r} (choose from {DETECTORS})")
        if not 0.0 < self.logo.ratio < 1.0:
            raise ConfigError(f"cues.logo.ratio must lie in (0, 1), got {self.logo.ratio}")
        if not 0.0 <= self.logo.min_inlier_spread <= 1.0:
            raise ConfigError(
                f"cues.logo.min_inlier_spread must lie in [0, 1], got {self.logo.min_inlier_spread}"
            )
        if not 0.0 <= self.placement.min_inlier_spread <= 1.0:
            raise ConfigError(
                f"cues.placement.min_inlier_spread must lie in [0, 1], got {self.placement.min_inlier_spread}"
            )
        if not 0.0 < self.placement.min_template_correlation <= 1.0:
            raise ConfigError(
                "cues.placement.min_template_correlation must lie in (0, 1], "
                f"got {self.placement.min_template_correlation}"
            )
        if self.placement.correlation_scale_step <= 1.0:
            raise ConfigError(
                f"cues.placement.correlation_scale_step must be > 1, got {self.placement.correlation_scale_step}"
            )
        if self.logo.min_matches < 4:
            raise ConfigError(
                f"cues.logo.min_matches must be >= 4 (a homography needs 4), got {self.logo.min_matches}"
            )
        lo, hi = self.packaging.halftone_band
        if not 0.0 < lo < hi <= 0.71:
            raise ConfigError(
                f"cues.packaging.halftone_band must satisfy 0 < low < high <= 0.71, got {[lo, hi]}"
            )
        if len(self.packaging.color_bins) != 3 or min(self.packaging.color_bins) < 1:
            raise ConfigError(
                f"cues.packaging.color_bins needs three positive counts, got {self.packaging.color_bins}"
            )
        positive = {
            "similarity.top_k": self.similarity.top_k,
            "quality.work_side": self.quality.work_side,
            "packaging.max_references": self.packaging.max_references,
            "packaging.work_side": self.packaging.work_side,
            "packaging.halftone_crop": self.packaging.halftone_crop,
            "logo.max_features": self.logo.max_features,
            "logo.max_side": self.logo.max_side,
            "logo.template_max_side": self.logo.template_max_side,
            "placement.max_references": self.placement.max_references,
            "placement.min_inliers": self.placement.min_inliers,
            "text.max_side": self.text.max_side,
            "text.near_miss_chars_per_edit": self.text.near_miss_chars_per_edit,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"cues.{key} must be >= 1, got {value}")

    def needs_expensive(self, cheap_probability: float) -> bool:
        """Whether a listing with this cheap-model probability should get the logo and OCR cues (NaN: yes)."""
        if not self.cascade.enabled or math.isnan(cheap_probability):
            return True
        return self.cascade.low <= cheap_probability <= self.cascade.high


def _section(name: str, kind: type, values: dict):
    allowed = set(kind.__dataclass_fields__)
    unknown = set(values) - allowed
    if unknown:
        raise ConfigError(f"unknown keys in cues.{name}: {sorted(unknown)} (known: {sorted(allowed)})")
    converted = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    return kind(**converted)
