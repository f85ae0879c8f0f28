"""Packaging cues: colour and print quality of the listing against its best-matching authentic references.

Counterfeit packaging is typically re-printed from a scan: colours drift, fine detail softens, smooth
gradients posterise (banding) and the print screen's dot pattern shows (halftone energy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from brandsentry.cues.config import PackagingParams
from brandsentry.cues.imagestats import (
    ListingPixels,
    banding,
    halftone_energy,
    histogram_distance,
    lab_histogram,
    sharpness,
    to_grey,
)
from brandsentry.cues.records import CueResult, Neighbours, ReferenceImages

FEATURES = (
    "pack_color_distance",
    "pack_sharpness_diff",
    "pack_banding",
    "pack_banding_diff",
    "pack_halftone",
    "pack_halftone_diff",
)


@dataclass(frozen=True)
class PrintStats:
    """Colour histogram and print-quality statistics of one image (or aligned region)."""

    histogram: np.ndarray
    sharpness: float
    banding: float
    halftone: float


def print_stats(pixels: ListingPixels, params: PackagingParams) -> PrintStats:
    """Histogram and sharpness at the working size; banding and halftone at native resolution."""
    work, _ = pixels.rgb_at(params.work_side)
    return PrintStats(
        histogram=lab_histogram(work, params.color_bins),
        sharpness=sharpness(to_grey(work)),
        banding=banding(pixels.grey),
        halftone=halftone_energy(
            pixels.grey, params.halftone_crop, params.halftone_band, params.halftone_peak_factor
        ),
    )


def packaging_cues(
    pixels: ListingPixels,
    neighbours: Neighbours,
    claimed_brand: str,
    claimed_product: str | None,
    references: ReferenceImages,
    params: PackagingParams,
) -> CueResult:
    """Compare against the closest-coloured of the top `max_references` claimed-brand (product) neighbours."""
    hits = neighbours.of_claim(claimed_brand, claimed_product)
    if not hits:
        return CueResult.missing(FEATURES, f"no neighbour of claimed brand {claimed_brand!r}")
    listing = print_stats(pixels, params)
    best: tuple[float, int, PrintStats] | None = None
    tried = []
    for position in hits:
        if len(tried) == params.max_references:
            break
        ref_id = neighbours.ref_ids[position]
        # a reference's statistics do not depend on the listing: computed once per scorer (memo)
        stats = references.derived(
            ref_id, ("print_stats", params), lambda image: print_stats(ListingPixels(image), params)
        )
        if stats is None:
            continue
        tried.append(ref_id)
        distance = histogram_distance(listing.histogram, stats.histogram)
        if best is None or distance < best[0]:
            best = (distance, ref_id, stats)
    if best is None:
        failures = "; ".join(f"{i}: {references.failures[i]}" for i in (neighbours.ref_ids[p] for p in hits))
        return CueResult.missing(FEATURES, f"no claimed-brand reference image available ({failures})")
    distance, ref_id, reference = best
    values = {
        "pack_color_distance": distance,
        "pack_sharpness_diff": listing.sharpness - reference.sharpness,
        "pack_banding": listing.banding,
        "pack_banding_diff": listing.banding - reference.banding,
        "pack_halftone": listing.halftone,
        "pack_halftone_diff": listing.halftone - reference.halftone,
    }
    reasons = {name: "image smaller than 16 px" for name, value in values.items() if math.isnan(value)}
    return CueResult(values, reasons, {"packaging_reference_id": ref_id, "packaging_compared_ids": tried})
