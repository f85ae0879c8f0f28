"""Run the cue groups for one listing: cheap ones always, expensive ones (logo, OCR) when asked.

The scorer runs the cascade: `cheap_cues` for every listing, its cheap model's probability, then
`expensive_cues` only where that probability lies in the bundle's learned escalation band
(classify.EscalationBand); `compute_cues` does both in one call.
Every result carries every column of `feature_names(cfg)`, whatever happened: a cue that failed or was
not run is NaN with its reason, so rows always line up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from brandsentry.cues import logo, packaging, placement, quality, seller, similarity, text
from brandsentry.cues.assets import BrandAssets
from brandsentry.cues.config import CueConfig
from brandsentry.cues.imagestats import ListingPixels
from brandsentry.cues.records import CueResult, Neighbours, ReferenceImages

ReferenceLookup = Callable[[int], np.ndarray]
log = logging.getLogger(__name__)
# A cue raising one of these has a bug, not a hard image: its traceback is logged (once per cue and type).
PROGRAMMING_ERRORS = (TypeError, AttributeError, KeyError, IndexError, NameError, AssertionError)
_reported: set[tuple[str, str]] = set()
_reported_lock = threading.Lock()


@dataclass
class _Listing:
    """Everything the cue groups of one listing read, with its working-size images computed once."""

    pixels: ListingPixels
    neighbours: Neighbours
    claimed_brand: str
    claimed_product: str | None
    seller_id: str | None
    assets: BrandAssets | None
    references: ReferenceImages
    cfg: CueConfig
    _logo_view: logo.ListingView | None = field(init=False, default=None)

    def logo_view(self) -> logo.ListingView | None:
        """Local features and template verdicts, extracted once for the logo and placement cues (None when
        the brand has no usable templates: both cues then stop before reading it)."""
        if self._logo_view is None and logo.templates_usable(self.assets, self.cfg.logo):
            self._logo_view = logo.listing_view(self.pixels, self.assets.logos, self.cfg.logo)
        return self._logo_view


@dataclass(frozen=True)
class _Group:
    name: str
    features: tuple[str, ...]
    expensive: bool
    enabled: Callable[[CueConfig], bool]
    run: Callable[[_Listing], CueResult]


GROUPS = (
    _Group(
        "similarity",
        similarity.FEATURES,
        False,
        lambda cfg: cfg.similarity.enabled,
        lambda x: similarity.similarity_cues(
            x.neighbours, x.claimed_brand, x.claimed_product, x.cfg.similarity
        ),
    ),
    _Group(
        "quality",
        quality.FEATURES,
        False,
        lambda cfg: cfg.quality.enabled,
        lambda x: quality.quality_cues(x.pixels, x.cfg.quality),
    ),
    _Group(
        "seller",
        seller.FEATURES,
        False,
        lambda cfg: cfg.seller.enabled,
        lambda x: seller.seller_cues(
            x.pixels.rgb, x.neighbours, x.claimed_brand, x.seller_id, x.assets, x.references, x.cfg.seller
        ),
    ),
    _Group(
        "packaging",
        packaging.FEATURES,
        False,
        lambda cfg: cfg.packaging.enabled,
        lambda x: packaging.packaging_cues(
            x.pixels, x.neighbours, x.claimed_brand, x.claimed_product, x.references, x.cfg.packaging
        ),
    ),
    _Group(
        "logo",
        logo.FEATURES,
        True,
        lambda cfg: cfg.logo.enabled,
        lambda x: logo.logo_cues(
            x.pixels, x.assets, x.claimed_brand, x.cfg.logo, x.cfg.packaging, x.logo_view()
        ),
    ),
    _Group(
        "placement",
        placement.FEATURES,
        True,
        lambda cfg: cfg.placement.enabled and cfg.logo.enabled,
        lambda x: placement.placement_cues(
            x.pixels,
            x.neighbours,
            x.claimed_brand,
            x.claimed_product,
            x.assets,
            x.references,
            x.cfg.logo,
            x.cfg.placement,
            x.logo_view(),
        ),
    ),
    _Group(
        "text",
        text.FEATURES,
        True,
        lambda cfg: cfg.text.enabled,
        lambda x: text.text_cues(x.pixels, x.assets, x.claimed_brand, x.cfg.text),
    ),
)


def feature_names(cfg: CueConfig, expensive: bool | None = None) -> tuple[str, ...]:
    """The columns of every enabled cue, in a fixed order; only cheap (False) or expensive (True) ones if asked."""
    return tuple(
        name
        for group in GROUPS
        if group.enabled(cfg) and (expensive is None or group.expensive == expensive)
        for name in group.features
    )


def cheap_cues(
    listing_rgb: np.ndarray,
    neighbours: Neighbours,
    claimed_brand: str,
    claimed_product: str | None,
    seller_id: str | None,
    assets: BrandAssets | None,
    reference_lookup: ReferenceLookup,
    cfg: CueConfig,
) -> CueResult:
    """Similarity, quality, seller and packaging cues (a few ms plus up to `max_references` lookups)."""
    args = (listing_rgb, neighbours, claimed_brand, claimed_product, seller_id, assets, reference_lookup, cfg)
    return _run(False, *args)


def expensive_cues(
    listing_rgb: np.ndarray,
    neighbours: Neighbours,
    claimed_brand: str,
    claimed_product: str | None,
    seller_id: str | None,
    assets: BrandAssets | None,
    reference_lookup: ReferenceLookup,
    cfg: CueConfig,
) -> CueResult:
    """Logo verification and OCR (hundreds of ms to ~1 s): for the listings the cheap model is unsure of."""
    args = (listing_rgb, neighbours, claimed_brand, claimed_product, seller_id, assets, reference_lookup, cfg)
    return _run(True, *args)


def compute_cues(
    listing_rgb: np.ndarray,
    neighbours: Neighbours,
    claimed_brand: str,
    claimed_product: str | None,
    seller_id: str | None,
    assets: BrandAssets | None,
    reference_lookup: ReferenceLookup,
    cfg: CueConfig,
    expensive: bool,
) -> CueResult:
    """All of `feature_names(cfg)`: the cheap cues, and the expensive ones when `expensive` (else NaN, skipped)."""
    args = (listing_rgb, neighbours, claimed_brand, claimed_product, seller_id, assets, reference_lookup, cfg)
    cheap = _run(False, *args)
    if expensive:
        return cheap.merged(_run(True, *args))
    return cheap.merged(CueResult.missing(feature_names(cfg, expensive=True), "skipped by the cascade"))


def _run(
    expensive: bool,
    listing_rgb: np.ndarray,
    neighbours: Neighbours,
    claimed_brand: str,
    claimed_product: str | None,
    seller_id: str | None,
    assets: BrandAssets | None,
    reference_lookup: ReferenceLookup,
    cfg: CueConfig,
) -> CueResult:
    groups = [g for g in GROUPS if g.expensive == expensive and g.enabled(cfg)]
    names = [name for g in groups for name in g.features]
    rgb = np.asarray(listing_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        return CueResult.missing(names, f"listing image is not HxWx3 uint8 (got {rgb.shape} {rgb.dtype})")
    listing = _Listing(
        ListingPixels(np.ascontiguousarray(rgb)),
        neighbours,
        claimed_brand,
        claimed_product,
        seller_id,
        assets,
        ReferenceImages(reference_lookup),
        cfg,
    )
    result = CueResult({})
    for group in groups:
        started = time.perf_counter()
        failures = {}
        try:
            produced = group.run(listing)
            _check_columns(group, produced)
        # batch edge: a failing cue is NaN + reason in its own columns, never a lost row; counted by the
        # scorer's summary and the training log (`failures`), and a bug's traceback is logged
        except Exception as exc:
            _report(group.name, exc)
            reason = f"{group.name} cue failed: {type(exc).__name__}: {exc}"
            produced = CueResult.missing(group.features, reason)
            failures = {group.name: type(exc).__name__}
        elapsed = (time.perf_counter() - started) * 1000
        result = result.merged(
            CueResult(produced.values, produced.reasons, produced.evidence, {group.name: elapsed}, failures)
        )
    return result


def _report(group: str, exc: Exception) -> None:
    """Log a cue's failure: a programming error with its traceback, once per (cue, type) and process."""
    key = (group, type(exc).__name__)
    with _reported_lock:
        first = key not in _reported
        _reported.add(key)
    if not first:
        return
    if isinstance(exc, PROGRAMMING_ERRORS):
        log.error(
            "the %s cue raised %s (a bug, not the image): its values are NaN", group, key[1], exc_info=exc
        )
    else:
        log.warning(
            "the %s cue failed with %s: %s (further failures are counted, not logged)", group, key[1], exc
        )


def _check_columns(group: _Group, produced: CueResult) -> None:
    if set(produced.values) != set(group.features):
        raise RuntimeError(
            f"{group.name} cue produced {sorted(produced.values)}, expected {sorted(group.features)}"
        )
