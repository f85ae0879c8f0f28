"""Image-quality cues: counterfeit listings skew towards small, re-compressed, blurry photos."""

from __future__ import annotations

import numpy as np

from brandsentry.cues.config import QualityParams
from brandsentry.cues.imagestats import resize_longest, sharpness
from brandsentry.cues.records import CueResult

FEATURES = ("quality_min_side", "quality_megapixels", "quality_sharpness")


def quality_cues(grey: np.ndarray, params: QualityParams) -> CueResult:
    """Resolution of the listing as decoded, and its sharpness at a fixed working size."""
    height, width = grey.shape
    work, _ = resize_longest(grey, params.work_side)
    return CueResult(
        {
            "quality_min_side": float(min(height, width)),
            "quality_megapixels": height * width / 1e6,
            "quality_sharpness": sharpness(work),
        }
    )
