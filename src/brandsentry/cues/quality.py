"""Image-quality cues: counterfeit listings skew towards small, re-compressed, blurry photos."""

from __future__ import annotations

from brandsentry.cues.config import QualityParams
from brandsentry.cues.imagestats import ListingPixels, sharpness
from brandsentry.cues.records import CueResult

FEATURES = ("quality_min_side", "quality_megapixels", "quality_sharpness")


def quality_cues(pixels: ListingPixels, params: QualityParams) -> CueResult:
    """Resolution of the listing as decoded, and its sharpness at a fixed working size."""
    height, width = pixels.rgb.shape[:2]
    work, _ = pixels.grey_at(params.work_side)
    return CueResult(
        {
            "quality_min_side": float(min(height, width)),
            "quality_megapixels": height * width / 1e6,
            "quality_sharpness": sharpness(work),
        }
    )
