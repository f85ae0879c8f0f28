"""Seller cues: is the seller authorised by the brand, and is the photo a reused official one?"""

from __future__ import annotations

import math

import imagehash
import numpy as np

from brandsentry.cues.assets import BrandAssets
from brandsentry.cues.config import SellerParams
from brandsentry.cues.imagestats import resize_longest
from brandsentry.cues.records import CueResult, Neighbours, ReferenceImages
from brandsentry.images import perceptual_hash

FEATURES = ("seller_authorised", "copy_phash_distance", "copy_reused")


def _reuse_hash(rgb: np.ndarray) -> imagehash.ImageHash:
    """The pHash of a copy shrunk to 128 px first (full size costs 7.6 vs 2.2 ms at 1000x750 on the dev box).

    Listing and reference are hashed the same way, so their distance is what counts, not the bits: these
    are not the catalog's hashes (those are of the full decoded photo).
    """
    small, _ = resize_longest(rgb, 128)
    return perceptual_hash(small)


def seller_cues(
    rgb: np.ndarray,
    neighbours: Neighbours,
    claimed_brand: str,
    seller_id: str | None,
    assets: BrandAssets | None,
    references: ReferenceImages,
    params: SellerParams,
) -> CueResult:
    """Authorised-seller membership, and reuse of the claimed brand's closest reference photo.

    A photo counts as reused when its similarity to that reference reaches `copy_similarity` or their
    perceptual hashes lie within `copy_phash_distance` bits of each other.
    """
    values: dict[str, float] = {}
    reasons: dict[str, str] = {}
    evidence: dict = {}
    if seller_id is None or not str(seller_id).strip():
        values["seller_authorised"], reasons["seller_authorised"] = math.nan, "no seller id"
    elif assets is None or assets.authorised_sellers is None:
        values["seller_authorised"] = math.nan
        reasons["seller_authorised"] = f"no authorised-seller list for brand {claimed_brand!r}"
    else:
        values["seller_authorised"] = float(str(seller_id) in assets.authorised_sellers)

    hits = neighbours.of_brand(claimed_brand)
    if not hits:
        reason = f"no neighbour of claimed brand {claimed_brand!r}"
        return CueResult(
            {**values, "copy_phash_distance": math.nan, "copy_reused": math.nan},
            {**reasons, "copy_phash_distance": reason, "copy_reused": reason},
        )
    top = hits[0]
    ref_id = neighbours.ref_ids[top]
    top_similarity = neighbours.similarities[top]
    evidence["copy_reference_id"] = ref_id
    reference = references.derived(ref_id, "phash", _reuse_hash)  # once per reference and scorer
    if reference is None:
        values["copy_phash_distance"] = math.nan
        reasons["copy_phash_distance"] = f"reference {ref_id} unavailable: {references.failures[ref_id]}"
    else:
        values["copy_phash_distance"] = float(_reuse_hash(rgb) - reference)
    if top_similarity >= params.copy_similarity:
        values["copy_reused"] = 1.0
    elif reference is None:
        values["copy_reused"], reasons["copy_reused"] = math.nan, reasons["copy_phash_distance"]
    else:
        values["copy_reused"] = float(values["copy_phash_distance"] <= params.copy_phash_distance)
    return CueResult(values, reasons, evidence)
