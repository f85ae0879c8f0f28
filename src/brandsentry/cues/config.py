"""`CueConfig`: the cue group of the Hydra config (configs/cues/), validated once into frozen values."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from brandsentry.errors import ConfigError
from brandsentry.settings import load_settings

DETECTORS = ("sift", "orb")


@dataclass(frozen=True)
class CascadeBounds:
    """How training learns the band of cheap probabilities that earns the expensive cues (classify.learn_band)."""

    enabled: bool  # false: logo and OCR for every listing
    max_escalation: float  # the band escalates at most this share of the validation listings ...
    max_auc_loss: float  # ... and the narrowest one within this ROC-AUC of escalating everything wins


@dataclass(frozen=True)
class SimilarityParams:
    enabled: bool
    top_k: int  # claimed-brand hits averaged for sim_brand_mean_topk


@dataclass(frozen=True)
class QualityParams:
    enabled: bool
    work_side: int  # sharpness is measured at this longest side


@dataclass(frozen=True)
class SellerParams:
    enabled: bool
    copy_similarity: float  # top-1 claimed-brand similarity at or above which the photo counts as reused
    copy_phash_distance: int  # ... or perceptual-hash Hamming distance at or below this


@dataclass(frozen=True)
class PackagingParams:
    enabled: bool
    max_references: int  # best-matching claimed-brand references compared
    work_side: int  # colour histograms and sharpness are compared at this longest side
    color_bins: tuple[int, int, int]  # Lab L, a, b
    halftone_crop: int  # native-resolution centre crop searched for a periodic print screen
    halftone_band: tuple[float, float]  # radial frequency band (cycles/pixel) of halftone screens
    halftone_peak_factor: float  # a bin is a screen peak above this multiple of the band median


@dataclass(frozen=True)
class LogoParams:
    enabled: bool
    detector: str  # sift | orb
    max_features: int
    max_side: int  # listing resized to this longest side before feature extraction
    min_side: int  # smaller listings are enlarged to this longest side before features (0: never)
    template_max_side: int  # logo references resized to this longest side
    template_min_side: int  # smaller logo templates are enlarged to this longest side (0: never)
    ratio: float  # Lowe ratio test
    min_matches: int  # good matches below which no homography is attempted
    ransac_threshold: float  # pixels at the listing's working scale
    min_inliers: int  # inliers of a valid homography at or above which the logo is verified ...
    min_inlier_spread: float  # ... if their convex hull also covers this share of the template
    min_box_side: int  # pixels: a projected logo smaller than this square is degenerate


@dataclass(frozen=True)
class PlacementParams:
    """The listing registered onto its product reference; the logo checked where the reference has it."""

    enabled: bool  # needs logo.enabled
    max_references: int  # claimed-brand product references tried (the most package inliers wins)
    min_inliers: int  # inliers of the package homography below which the listing counts as unregistered
    min_inlier_spread: float  # ... or whose convex hull covers less of the listing than this share
    ransac_threshold: float  # pixels at the listing's logo working scale
    min_template_correlation: float  # a logo too small for local features is located in the product
    # reference by normalised cross-correlation over scales where its peak reaches this
    correlation_scale_step: float  # ratio between the template scales tried


@dataclass(frozen=True)
class TextParams:
    enabled: bool
    detect_side: int  # where text lies is found on the listing resized to this longest side ...
    region_margin: float  # ... each place widened by this share of the listing's longest side ...
    detail_min_side: int  # ... and its lines there, on the listing scaled to this shorter side
    recognise_side: int  # lines are read from the listing resized to this longest side
    max_lines: int  # at most this many detected lines (the tallest) are read
    min_score: float  # OCR lines below this recognition confidence are ignored
    near_miss_max_distance: int
    near_miss_chars_per_edit: int  # a wordmark of n chars tolerates min(max_distance, n // this) edits
    threads: int  # OCR models' inference threads (OpenVINO); 0 = library default


@dataclass(frozen=True)
class CueConfig:
    """Which cues run, the cascade bounds and every cue's parameters (defaults: configs/cues/default.yaml)."""

    cascade: CascadeBounds
    similarity: SimilarityParams
    quality: QualityParams
    seller: SellerParams
    packaging: PackagingParams
    logo: LogoParams
    placement: PlacementParams
    text: TextParams

    @classmethod
    def from_config(cls, cues_cfg: DictConfig | dict) -> CueConfig:
        """Build from the `cues` node of the composed config (or a plain dict): every key, no other."""
        return load_settings(cls, cues_cfg, "cues")

    def __post_init__(self) -> None:
        """The checks that one field's type cannot say; `dataclasses.replace` runs them too."""
        c = self.cascade
        if not 0.0 <= c.max_escalation <= 1.0:
            raise ConfigError(f"cues.cascade.max_escalation must lie in [0, 1], got {c.max_escalation}")
        if not 0.0 <= c.max_auc_loss <= 1.0:
            raise ConfigError(f"cues.cascade.max_auc_loss must lie in [0, 1], got {c.max_auc_loss}")
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
        if not 0.0 <= self.text.region_margin < 0.5:
            raise ConfigError(f"cues.text.region_margin must lie in [0, 0.5), got {self.text.region_margin}")
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
            "text.detect_side": self.text.detect_side,
            "text.detail_min_side": self.text.detail_min_side,
            "text.recognise_side": self.text.recognise_side,
            "text.max_lines": self.text.max_lines,
            "text.near_miss_chars_per_edit": self.text.near_miss_chars_per_edit,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"cues.{key} must be >= 1, got {value}")
