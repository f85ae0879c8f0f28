"""`BrandAssets`: what the cues know about one brand, with logo features computed once per brand."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from brandsentry.cues.config import CueConfig
from brandsentry.cues.imagestats import enlarge_longest, resize_longest, to_grey
from brandsentry.cues.keypoints import LocalFeatures, extract


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class LogoTemplate:
    """One logo reference (view=logo) at its working scale: its pixels and its local features."""

    ref_id: int
    image: np.ndarray
    features: LocalFeatures

    @property
    def corners(self) -> np.ndarray:
        """The template's outline (4 x 2, clockwise from top-left) in its own pixels."""
        height, width = self.image.shape[:2]
        return np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)


@dataclass(frozen=True)
class BrandAssets:
    """A brand's wordmarks, logo templates and authorised sellers (None: the brand has not published a list).

    `skipped_logos` names logo references that gave too few features to ever verify, so none vanishes.
    """

    brand: str
    wordmarks: tuple[str, ...] = ()
    logos: tuple[LogoTemplate, ...] = ()
    detector: str = "sift"
    authorised_sellers: frozenset[str] | None = None
    skipped_logos: tuple[tuple[int, str], ...] = ()


def build_brand_assets(
    brand: str,
    wordmarks: Iterable[str],
    logo_images: Mapping[int, np.ndarray],
    cfg: CueConfig,
    authorised_sellers: Iterable[str] | None = None,
) -> BrandAssets:
    """Precompute the logo templates of one brand from its logo references (RGB uint8, by reference id)."""
    params = cfg.logo
    logos, skipped = [], []
    for ref_id, rgb in logo_images.items():
        image, _ = resize_longest(np.ascontiguousarray(rgb), params.template_max_side)
        image, _ = enlarge_longest(image, params.template_min_side)  # a tiny logo crop
        features = extract(to_grey(image), params)
        if len(features) < params.min_matches:
            skipped.append((int(ref_id), f"only {len(features)} local features (< {params.min_matches})"))
            continue
        logos.append(LogoTemplate(int(ref_id), image, features))
    return BrandAssets(
        brand=brand,
        wordmarks=tuple(w for w in wordmarks if w.strip()),
        logos=tuple(logos),
        detector=params.detector,
        authorised_sellers=None if authorised_sellers is None else frozenset(authorised_sellers),
        skipped_logos=tuple(skipped),
    )


class BrandAssetCache:
    """Builds each brand's assets once (logo features cost ~0.1 s per template) and keeps them.

    `factory(brand)` returns the brand's assets, or None for a brand with none; both are remembered.
    """

    def __init__(self, factory: Callable[[str], BrandAssets | None]):
        self._factory = factory
        self._assets: dict[str, BrandAssets | None] = {}
        self._lock = threading.Lock()

    def __call__(self, brand: str) -> BrandAssets | None:
        key = brand.strip().casefold()
        with self._lock:
            if key not in self._assets:
                self._assets[key] = self._factory(brand)
            return self._assets[key]

    def invalidate(self, brand: str) -> None:
        """Forget a brand after its logo references or wordmarks change."""
        with self._lock:
            self._assets.pop(brand.strip().casefold(), None)
