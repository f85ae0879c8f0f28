"""Placement cues: the listing registered onto its matched product reference, the logo checked where it belongs.

A package's design fixes where its logo sits. The listing is aligned with the best claimed-brand product
reference by one homography over the whole package (local features + RANSAC: the logo is a small share of
the package's features, so it does not steer the fit); the brand's logo templates are located in that
reference (by local features, or for a logo with too few corners by cross-correlation over scales); then
the listing region where the logo must be is warped into the template's frame and compared
with the template, and a logo that verifies in the listing is compared with that expected place.

What each tamper leaves there: a moved logo leaves its old place unlike the template (and verifies away from
it), a mirrored, replaced or retyped logo leaves a region that does not correlate with the template, a
blurred or badly printed one loses sharpness, a recoloured one differs in colour. None of this needs the
listing's own logo to verify, which small, rotated logos often do not. `placement_package_*` describe the
registration itself (how well the package as a whole matches), so the classifier can tell a changed logo
from a generally different photo. The `*_color_residual` and `placement_logo_sharpness_rel` values compare
the logo's place with the package around it after the photo's light and colour are matched to the
reference, so a re-photographed authentic package (other light, white balance, focus) does not look
recoloured or blurred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from brandsentry.cues.assets import BrandAssets, LogoTemplate
from brandsentry.cues.config import LogoParams, PlacementParams
from brandsentry.cues.imagestats import ListingPixels, mean_delta_e, sharpness, to_grey
from brandsentry.cues.keypoints import LocalFeatures, extract, match
from brandsentry.cues.logo import (
    ListingView,
    homography_problem,
    inlier_spread,
    is_verified,
    listing_view,
    project,
    templates_usable,
    verify_template,
    work_image,
)
from brandsentry.cues.records import CueResult, Neighbours, ReferenceImages

FEATURES = (
    "placement_package_inliers",
    "placement_package_ncc",
    "placement_package_delta_e",
    "placement_logo_ncc",
    "placement_logo_delta_e",
    "placement_logo_sharpness_diff",
    "placement_logo_offset",
    "placement_logo_color_residual",
    "placement_surround_color_residual",
    "placement_logo_sharpness_rel",
)
LOGO_REGION = FEATURES[3:6]
RELATIVE = FEATURES[7:]  # the logo's place against the package around it, the photo's colours matched


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class ReferenceLayout:
    """What placement needs of one product reference, at its feature working scale (computed once per scorer)."""

    features: LocalFeatures
    shape: tuple[int, int]
    rgb: np.ndarray  # the reference at the working scale
    logo: LogoTemplate | None  # the brand logo template found in the reference, if any
    logo_homography: np.ndarray | None  # template -> reference working pixels
    logo_located_by: str | None = None  # "features" (verified, most inliers) or "correlation"


def locate_by_correlation(
    work: np.ndarray, template: LogoTemplate, params: PlacementParams, min_box_side: int
) -> tuple[float, np.ndarray] | None:
    """(peak correlation, template -> `work` homography) of the template's best axis-aligned placement.

    Normalised cross-correlation over a geometric series of template scales (1 among them): the fallback
    for logos with too few corners for local features, typically a small crop of the product photo itself.
    Scales run from a projected box of `min_box_side` up to the largest that fits in the reference.
    """
    pattern = to_grey(template.image)
    t_height, t_width = pattern.shape
    height, width = work.shape
    if pattern.std() < 1.0:  # a flat template correlates with nothing (or with every flat patch)
        return None
    step = math.log(params.correlation_scale_step)
    lowest = math.ceil(math.log(min_box_side / math.sqrt(t_height * t_width)) / step)
    highest = math.floor(math.log(min(height / t_height, width / t_width)) / step)
    best: tuple[float, np.ndarray] | None = None
    for power in range(lowest, highest + 1):
        factor = params.correlation_scale_step**power
        size = (max(1, round(t_width * factor)), max(1, round(t_height * factor)))
        if size[0] > width or size[1] > height:
            continue
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        scaled = cv2.resize(pattern, size, interpolation=interpolation)
        if scaled.std() < 1.0:
            continue
        scores = cv2.matchTemplate(work, scaled, cv2.TM_CCOEFF_NORMED)
        _, peak, _, (x, y) = cv2.minMaxLoc(scores)
        if best is None or peak > best[0]:
            sx, sy = size[0] / t_width, size[1] / t_height
            best = (float(peak), np.array([[sx, 0.0, x], [0.0, sy, y], [0.0, 0.0, 1.0]]))
    return best


def reference_layout(
    rgb: np.ndarray, templates: tuple[LogoTemplate, ...], params: LogoParams, placement: PlacementParams
) -> ReferenceLayout:
    """Local features of a product reference and where the brand's logo lies in it.

    A template verified by local features wins (most inliers); when none verifies, the template that
    correlates best, at or above `placement.min_template_correlation`, is taken.
    """
    work, scale = work_image(ListingPixels(rgb), params)
    shrink = work.shape[0] < rgb.shape[0]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    work_rgb = cv2.resize(rgb, (work.shape[1], work.shape[0]), interpolation=interpolation)
    features = extract(work, params)
    best, best_key = None, (0, 0.0)
    for template in templates:
        found, _, _ = verify_template(template, features, work.shape, params)
        if found is None:
            continue
        inliers, spread = len(found.inlier_listing_points), inlier_spread(found)
        if is_verified(inliers, spread, params) and (inliers, spread) > best_key:
            best, best_key = found, (inliers, spread)
    if best is not None:
        return ReferenceLayout(features, work.shape, work_rgb, best.template, best.homography, "features")
    least, located = placement.min_template_correlation, None
    for template in templates:
        found = locate_by_correlation(work, template, placement, params.min_box_side)
        if found is not None and found[0] >= least:
            least, located = found[0], (template, found[1])
    if located is None:
        return ReferenceLayout(features, work.shape, work_rgb, None, None)
    return ReferenceLayout(features, work.shape, work_rgb, *located, "correlation")


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Zero-mean normalised cross-correlation of two aligned greyscale images over `mask`, in [-1, 1]."""
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    if x.size < 16:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 1e-9 else 0.0


def colour_matched(source: np.ndarray, target: np.ndarray, mask: np.ndarray, samples: int = 20_000):
    """`source` recoloured towards `target` by one quadratic per channel fitted over `mask` (None if too few
    pixels): light, contrast, white balance and gamma of a re-photographed package are smooth per-channel
    maps, so they fit; a recoloured logo outside `mask` does not follow the map and stays different."""
    rows, cols = np.nonzero(mask)
    if rows.size < 64:
        return None
    step = max(1, rows.size // samples)  # a regular subsample: deterministic, and plenty for 3 coefficients
    x = source[rows[::step], cols[::step]].astype(np.float64) / 255.0
    y = target[rows[::step], cols[::step]].astype(np.float64) / 255.0
    image = source.astype(np.float32) / 255.0
    out = np.empty_like(image)
    for channel in range(3):
        design = np.stack([x[:, channel] ** 2, x[:, channel], np.ones(len(x))], axis=1)
        (a, b, c), *_ = np.linalg.lstsq(design, y[:, channel], rcond=None)
        values = image[..., channel]
        out[..., channel] = (a * values + b) * values + c
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def relative_region_cues(warped: np.ndarray, reference: np.ndarray, overlap: np.ndarray, quad: np.ndarray):
    """The logo's place compared with the rest of the package, both in the reference's frame.

    Colour: the listing's colours are matched to the reference over the package around the logo, both
    are smoothed a little (a registration a pixel off must not read as a colour change at every edge), and
    the colour difference left (CIE76) is measured inside the logo's place (its 90th percentile: a logo
    often has one coloured part among neutral ones) and around it (the mean: how well the photo's colours
    were explained at all). Sharpness: the log ratio of the logo place's sharpness (listing over
    reference) against the same ratio around it, so a blurred or badly reprinted logo stands out from a
    photo that is soft all over. Blur and percentile were chosen on the tampered-logo validation split.
    """
    place = np.zeros(overlap.shape, np.uint8)
    cv2.fillConvexPoly(place, np.round(quad).astype(np.int32), 1)
    size = max(3, int(round(0.1 * math.sqrt(max(cv2.contourArea(quad.astype(np.float32)), 1.0)))))
    around = overlap & (cv2.dilate(place, np.ones((size, size), np.uint8)) == 0)
    place = overlap & (place == 1)
    if place.sum() < 64 or around.sum() < 64:
        return None
    matched = colour_matched(warped, reference, around)
    if matched is None:
        return None
    lab = [
        cv2.cvtColor(cv2.GaussianBlur(image, (0, 0), 1.5).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
        for image in (matched, reference)
    ]
    delta_e = np.linalg.norm(lab[0] - lab[1], axis=2)
    grey_warped, grey_reference = to_grey(warped), to_grey(reference)

    def sharpness_ratio(mask: np.ndarray) -> float:
        return sharpness(grey_warped, mask) - sharpness(grey_reference, mask)  # log10 values: a log ratio

    return {
        "placement_logo_color_residual": float(np.percentile(delta_e[place], 90)),
        "placement_surround_color_residual": float(delta_e[around].mean()),
        "placement_logo_sharpness_rel": sharpness_ratio(place) - sharpness_ratio(around),
    }


def _register(
    listing: LocalFeatures,
    listing_shape: tuple[int, int],
    layout: ReferenceLayout,
    params: PlacementParams,
    ratio: float,
) -> tuple[np.ndarray | None, int]:
    """(homography listing work -> reference work pixels, inliers); None when no plausible one is found."""
    listing_idx, reference_idx = match(listing, layout.features, ratio)
    if len(listing_idx) < max(4, params.min_inliers):
        return None, 0
    source = listing.points[listing_idx].astype(np.float64)
    target = layout.features.points[reference_idx].astype(np.float64)
    homography, mask = cv2.findHomography(
        source, target, cv2.RANSAC, params.ransac_threshold, maxIters=2000, confidence=0.995
    )
    height, width = listing_shape
    outline = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    if homography_problem(homography, outline, layout.shape, 1) is not None:
        return None, 0
    kept = mask.ravel().astype(bool)
    inliers = int(kept.sum())
    # inliers crowded into one spot (a word both images happen to show) do not register two packages
    hull = cv2.contourArea(cv2.convexHull(source[kept].astype(np.float32))) if inliers >= 3 else 0.0
    spread = hull / float(height * width)
    if inliers < params.min_inliers or spread < params.min_inlier_spread:
        return None, inliers
    return homography, inliers


def placement_cues(
    pixels: ListingPixels,
    neighbours: Neighbours,
    claimed_brand: str,
    claimed_product: str | None,
    assets: BrandAssets | None,
    references: ReferenceImages,
    logo: LogoParams,
    params: PlacementParams,
    view: ListingView | None = None,
) -> CueResult:
    """Register the listing onto its best claimed-brand product reference and check the logo's place.

    `view`: the listing's `listing_view` as the logo cue computed it (it is computed otherwise).
    """
    if not templates_usable(assets, logo):
        return CueResult.missing(FEATURES, f"no usable logo templates for claimed brand {claimed_brand!r}")
    hits = neighbours.of_claim(claimed_brand, claimed_product)
    template_ids = {template.ref_id for template in assets.logos}
    candidates = [neighbours.ref_ids[p] for p in hits if neighbours.ref_ids[p] not in template_ids]
    candidates = candidates[: params.max_references]
    if not candidates:
        return CueResult.missing(FEATURES, f"no product reference of claimed brand {claimed_brand!r} nearby")

    view = view or listing_view(pixels, assets.logos, logo)
    listing, (sx, sy) = view.features, view.scale
    key = ("placement_layout", logo, params, tuple(sorted(template_ids)))
    best: tuple[int, int, ReferenceLayout, np.ndarray | None] | None = None
    for ref_id in candidates:
        layout = references.derived(
            ref_id, key, lambda image: reference_layout(image, assets.logos, logo, params)
        )
        if layout is None:
            continue
        homography, inliers = _register(listing, view.shape, layout, params, logo.ratio)
        if best is None or (homography is not None, inliers) > (best[3] is not None, best[0]):
            best = (inliers, ref_id, layout, homography)
    if best is None:
        failures = "; ".join(f"{i}: {references.failures.get(i)}" for i in candidates)
        return CueResult.missing(FEATURES, f"no product reference image available ({failures})")
    inliers, ref_id, layout, to_reference = best
    evidence = {"placement": {"reference_id": ref_id, "package_inliers": inliers}}
    if to_reference is None:
        values = {"placement_package_inliers": float(inliers)}
        return CueResult(values, evidence=evidence).merged(
            CueResult.missing(FEATURES[1:], "listing not registered onto a product reference")
        )

    # the whole package, listing warped onto the reference (working scale)
    rgb = pixels.rgb
    to_work = np.diag([sx, sy, 1.0])  # listing pixels -> listing working pixels
    listing_to_reference = to_reference @ to_work
    height, width = layout.shape
    warped = cv2.warpPerspective(rgb, listing_to_reference, (width, height), flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(np.full(rgb.shape[:2], 255, np.uint8), listing_to_reference, (width, height))
    overlap = cv2.erode(inside, np.ones((5, 5), np.uint8)) == 255
    values = {
        "placement_package_inliers": float(inliers),
        "placement_package_ncc": ncc(to_grey(warped), to_grey(layout.rgb), overlap),
        "placement_package_delta_e": mean_delta_e(warped, layout.rgb, overlap) if overlap.any() else math.nan,
    }
    if layout.logo is None:
        return CueResult(values, evidence=evidence).merged(
            CueResult.missing(FEATURES[3:], "no logo template verified in the product reference")
        )

    # the logo's place against the rest of the package, in the reference's frame
    template = layout.logo
    own = project(layout.logo_homography, template.corners)[0]
    relative = relative_region_cues(warped, layout.rgb, overlap, own)
    if relative is None:
        values.update(dict.fromkeys(RELATIVE, math.nan))
        reasons = dict.fromkeys(
            RELATIVE, "too little of the logo's place or its surround lies in the listing"
        )
    else:
        values.update(relative)
        reasons = {}

    # where the logo must be in the listing: template -> reference -> listing pixels
    expected = np.linalg.inv(listing_to_reference) @ layout.logo_homography
    quad, _ = project(expected, template.corners)
    evidence["placement"].update(
        logo_reference_id=template.ref_id,
        logo_located_by=layout.logo_located_by,
        expected_quad=quad.round(2).tolist(),
    )
    t_height, t_width = template.image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    aligned = cv2.warpPerspective(rgb, expected, (t_width, t_height), flags=flags)
    covered = cv2.warpPerspective(
        np.full(rgb.shape[:2], 255, np.uint8), expected, (t_width, t_height), flags=flags
    )
    mask = cv2.erode(covered, np.ones((3, 3), np.uint8)) == 255
    if mask.sum() < 0.5 * mask.size:
        values.update(dict.fromkeys(LOGO_REGION, math.nan))
        reasons.update(
            dict.fromkeys(LOGO_REGION, "less than half of the expected logo place lies in the listing")
        )
    else:
        values.update(
            placement_logo_ncc=ncc(to_grey(aligned), to_grey(template.image), mask),
            placement_logo_delta_e=mean_delta_e(aligned, template.image, mask),
            placement_logo_sharpness_diff=sharpness(to_grey(aligned), mask)
            - sharpness(to_grey(template.image), mask),
        )

    # a logo that verifies in the listing: how far from its expected place, in logo sizes
    found = None
    for _, match_, _, _ in view.verdicts:
        if match_ is None:
            continue
        inliers = len(match_.inlier_listing_points)
        verified = is_verified(inliers, inlier_spread(match_), logo)
        if verified and (found is None or inliers > len(found.inlier_listing_points)):
            found = match_
    if found is None:
        values["placement_logo_offset"] = math.nan
        reasons["placement_logo_offset"] = "logo not verified in the listing"
    else:
        # both quads in reference working pixels, where the template's own outline is the yardstick
        seen = project(to_reference @ found.homography, found.template.corners)[0]
        centre_seen = seen.mean(axis=0)
        if found.template.ref_id == template.ref_id:
            offset = float(np.linalg.norm(seen - own, axis=1).mean())
        else:  # another template of the brand: compare centres only
            offset = float(np.linalg.norm(centre_seen - own.mean(axis=0)))
        size = math.sqrt(abs(float(cv2.contourArea(own.astype(np.float32)))))
        values["placement_logo_offset"] = offset / size if size > 0 else math.nan
    return CueResult(values, reasons, evidence)
