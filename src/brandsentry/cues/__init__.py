"""Cues: a listing image, its nearest authentic references and its brand's assets -> named numbers.

Pure functions; a cue that cannot be computed is NaN with a reason, never an exception out of a batch.
Cheap cues (similarity, quality, seller, packaging) run for every listing; expensive ones (logo, text)
only where the scorer's cheap model is unsure (the escalation band the classifier learns, `classify.EscalationBand`).
"""

from brandsentry.cues.assets import BrandAssetCache, BrandAssets, LogoTemplate, build_brand_assets
from brandsentry.cues.compute import cheap_cues, compute_cues, expensive_cues, feature_names
from brandsentry.cues.config import CueConfig
from brandsentry.cues.records import CueResult, Neighbours

__all__ = [
    "BrandAssetCache",
    "BrandAssets",
    "CueConfig",
    "CueResult",
    "LogoTemplate",
    "Neighbours",
    "build_brand_assets",
    "cheap_cues",
    "compute_cues",
    "expensive_cues",
    "feature_names",
]
