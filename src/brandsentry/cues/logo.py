"""Logo cues: geometric verification of the brand's logo templates in the listing (local features + RANSAC).

A match only counts when one homography explains it and that homography is a plausible view of a printed
logo: finite, in front of the camera, convex and orientation-preserving. The last check is what keeps a
mirrored logo (a classic knock-off trick) from verifying: a mirror image maps the template's clockwise
outline onto an anticlockwise one, i.e. the projected outline's signed area changes sign.

Where the logo verifies, the listing is warped into the template's frame and its colour and print
statistics are compared pixel-aligned with the authentic logo (the `region_*` values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from brandsentry.cues.assets import BrandAssets, LogoTemplate
from brandsentry.cues.config import LogoParams, PackagingParams
from brandsentry.cues.imagestats import (
    ListingPixels,
    enlarge_longest,
    halftone_energy,
    histogram_distance,
    lab_histogram,
    mean_delta_e,
    sharpness,
    to_grey,
)
from brandsentry.cues.keypoints import LocalFeatures, extract, match
from brandsentry.cues.records import CueResult

LOGO_FEATURES = (
    "logo_matches",
    "logo_inliers",
    "logo_inlier_ratio",
    "logo_inlier_spread",
    "logo_reproj_error",
    "logo_verified",
)
REGION_FEATURES = ("region_color_distance", "region_delta_e", "region_sharpness_diff", "region_halftone")
FEATURES = LOGO_FEATURES + REGION_FEATURES


def work_image(pixels: ListingPixels, params: LogoParams) -> tuple[np.ndarray, tuple[float, float]]:
    """The greyscale image local features are found in, and its (sx, sy) scale from the original pixels.

    Downscaled to `max_side`; a smaller image is enlarged (bicubic) until its longest side reaches
    `min_side` (0: never), so the few-pixel corners of a small logo become detectable at all.
    """
    work, (sx, sy) = pixels.grey_at(params.max_side)
    work, (fx, fy) = enlarge_longest(work, params.min_side)
    return work, (sx * fx, sy * fy)


def signed_area(polygon: np.ndarray) -> float:
    """Shoelace area; positive for clockwise vertices in image coordinates (y down)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def project(homography: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projected points (N x 2) and their homogeneous scale w (N,)."""
    homogeneous = np.c_[points, np.ones(len(points))] @ homography.T
    w = homogeneous[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return homogeneous[:, :2] / w[:, None], w


def homography_problem(
    homography: np.ndarray | None, outline: np.ndarray, listing_shape: tuple[int, int], min_box_side: int
) -> str | None:
    """Why `homography` (template -> listing) is not a plausible view of the logo, or None when it is."""
    if homography is None or not np.all(np.isfinite(homography)):
        return "no homography"
    quad, w = project(homography, outline)
    if np.any(w <= 1e-9) or not np.all(np.isfinite(quad)):
        return "logo outline crosses the horizon"
    template_area, area = signed_area(outline), signed_area(quad)
    if area * template_area <= 0:
        return "mirrored (orientation-reversing) homography"
    edges = np.roll(quad, -1, axis=0) - quad
    turns = edges[:, 0] * np.roll(edges[:, 1], -1) - edges[:, 1] * np.roll(edges[:, 0], -1)
    if np.any(turns * template_area <= 0):
        return "projected logo outline is not convex"
    if abs(area) < min_box_side**2:
        return f"projected logo smaller than {min_box_side}x{min_box_side} px"
    height, width = listing_shape
    if abs(area) > 4 * height * width:
        return "projected logo more than 4x larger than the listing"
    return None


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class LogoMatch:
    """The best valid homography found for one template, in the listing's working pixels."""

    template: LogoTemplate
    homography: np.ndarray
    matches: int
    inlier_template_points: np.ndarray
    inlier_listing_points: np.ndarray
    reprojection_error: float


def verify_template(
    template: LogoTemplate, listing: LocalFeatures, listing_shape: tuple[int, int], params: LogoParams
) -> tuple[LogoMatch | None, int, str | None]:
    """(match or None, good matches, why not) for one template against the listing's features."""
    template_idx, listing_idx = match(template.features, listing, params.ratio)
    matches = len(template_idx)
    if matches < params.min_matches:
        return None, matches, f"{matches} good matches (< {params.min_matches})"
    source = template.features.points[template_idx].astype(np.float64)
    target = listing.points[listing_idx].astype(np.float64)
    homography, mask = cv2.findHomography(
        source, target, cv2.RANSAC, params.ransac_threshold, maxIters=2000, confidence=0.995
    )
    problem = homography_problem(homography, template.corners, listing_shape, params.min_box_side)
    if problem is not None:
        return None, matches, problem
    inliers = mask.ravel().astype(bool)
    projected, _ = project(homography, source[inliers])
    error = float(np.linalg.norm(projected - target[inliers], axis=1).mean())
    return LogoMatch(template, homography, matches, source[inliers], target[inliers], error), matches, None


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class ListingView:
    """A listing's local features at the logo working scale and every brand template verified against
    them (`verdicts`: each template with `verify_template`'s answer): computed once per listing and read
    by both the logo and the placement cue."""

    shape: tuple[int, int]  # of the working image
    scale: tuple[float, float]  # listing pixels -> working pixels
    features: LocalFeatures
    verdicts: tuple[tuple[LogoTemplate, LogoMatch | None, int, str | None], ...]


def listing_view(
    pixels: ListingPixels, templates: tuple[LogoTemplate, ...], params: LogoParams
) -> ListingView:
    work, scale = work_image(pixels, params)
    features = extract(work, params)
    verdicts = tuple((t, *verify_template(t, features, work.shape, params)) for t in templates)
    return ListingView(work.shape, scale, features, verdicts)


def templates_usable(assets: BrandAssets | None, params: LogoParams) -> bool:
    """Whether `assets` hold logo templates this config can match (some, built with its detector)."""
    return assets is not None and bool(assets.logos) and assets.detector == params.detector


def is_verified(inliers: int, spread: float, params: LogoParams) -> bool:
    """Enough RANSAC inliers, spread over enough of the template: the logo counts as found."""
    return inliers >= params.min_inliers and spread >= params.min_inlier_spread


def inlier_spread(found: LogoMatch) -> float:
    """Share of the template covered by the convex hull of the inliers.

    Many inliers crowded into a sliver (a few repeated letters, one symmetric ring) are weak evidence:
    such a local patch can be consistent with a wrong, even mirrored, placement of the whole logo.
    """
    points = found.inlier_template_points.astype(np.float32)
    if len(points) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(points))) / abs(signed_area(found.template.corners))


def logo_cues(
    pixels: ListingPixels,
    assets: BrandAssets | None,
    claimed_brand: str,
    params: LogoParams,
    packaging: PackagingParams,
    view: ListingView | None = None,
) -> CueResult:
    """Verify each logo template; report the one with the most inliers under a valid homography.

    `view`: the listing's `listing_view` when the caller already has it (it is computed otherwise).
    """
    if assets is None:
        return CueResult.missing(FEATURES, f"no brand assets for claimed brand {claimed_brand!r}")
    if assets.detector != params.detector:
        reason = f"logo templates of {assets.brand!r} were built with {assets.detector}, config wants {params.detector}"
        return CueResult.missing(FEATURES, reason)
    if not assets.logos:
        skipped = f" ({len(assets.skipped_logos)} skipped: too few features)" if assets.skipped_logos else ""
        return CueResult.missing(FEATURES, f"no logo references for brand {assets.brand!r}{skipped}")
    view = view or listing_view(pixels, assets.logos, params)
    best: LogoMatch | None = None
    most_matches = 0
    rejected = []
    for template, found, matches, problem in view.verdicts:
        most_matches = max(most_matches, matches)
        if found is None:
            rejected.append({"reference_id": template.ref_id, "matches": matches, "why": problem})
        elif best is None or len(found.inlier_listing_points) > len(best.inlier_listing_points):
            best = found
    evidence = {"logo": {"listing_features": len(view.features), "rejected": rejected}}
    if best is None:
        values = {
            "logo_matches": float(most_matches),
            "logo_inliers": 0.0,
            "logo_inlier_ratio": 0.0 if most_matches else math.nan,
            "logo_inlier_spread": 0.0,
            "logo_reproj_error": math.nan,
            "logo_verified": 0.0,
        }
        reasons = {"logo_reproj_error": "no valid logo homography"}
        if not most_matches:
            reasons["logo_inlier_ratio"] = "no local-feature matches"
        return CueResult(values, reasons, evidence).merged(
            CueResult.missing(REGION_FEATURES, "logo not verified")
        )

    inliers = len(best.inlier_listing_points)
    spread = inlier_spread(best)
    verified = is_verified(inliers, spread, params)
    sx, sy = view.scale
    to_listing = np.diag([1 / sx, 1 / sy, 1.0]) @ best.homography  # template -> listing pixels
    quad, _ = project(to_listing, best.template.corners)
    evidence["logo"].update(
        reference_id=best.template.ref_id,
        quad=quad.round(2).tolist(),
        box=[*quad.min(axis=0).round(2).tolist(), *quad.max(axis=0).round(2).tolist()],
        inlier_points=(best.inlier_listing_points / [sx, sy]).round(2).tolist(),
        template_points=best.inlier_template_points.round(2).tolist(),
    )
    values = {
        "logo_matches": float(best.matches),
        "logo_inliers": float(inliers),
        "logo_inlier_ratio": inliers / best.matches,
        "logo_inlier_spread": spread,
        "logo_reproj_error": best.reprojection_error,
        "logo_verified": float(verified),
    }
    region = (
        region_cues(pixels, best.template, to_listing, quad, packaging)
        if verified
        else CueResult.missing(
            REGION_FEATURES,
            f"logo not verified ({inliers} inliers, need {params.min_inliers}; spread {spread:.3f}, "
            f"need {params.min_inlier_spread})",
        )
    )
    return CueResult(values, evidence=evidence).merged(region)


def region_cues(
    pixels: ListingPixels,
    template: LogoTemplate,
    to_listing: np.ndarray,
    quad: np.ndarray,
    params: PackagingParams,
) -> CueResult:
    """Colour and print statistics of the verified logo region, aligned pixel for pixel with the template."""
    rgb, grey = pixels.rgb, pixels.grey
    height, width = template.image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    aligned = cv2.warpPerspective(rgb, to_listing, (width, height), flags=flags)
    inside = cv2.warpPerspective(np.full(grey.shape, 255, np.uint8), to_listing, (width, height), flags=flags)
    mask = cv2.erode(inside, np.ones((5, 5), np.uint8)) == 255
    if mask.sum() < 0.25 * mask.size:
        return CueResult.missing(REGION_FEATURES, "less than a quarter of the logo lies inside the listing")
    x0, y0 = np.floor(quad.min(axis=0)).astype(int).clip(0)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    crop = grey[y0 : min(y1, grey.shape[0]), x0 : min(x1, grey.shape[1])]
    halftone = halftone_energy(crop, params.halftone_crop, params.halftone_band, params.halftone_peak_factor)
    values = {
        "region_color_distance": histogram_distance(
            lab_histogram(aligned, params.color_bins, mask),
            lab_histogram(template.image, params.color_bins, mask),
        ),
        "region_delta_e": mean_delta_e(aligned, template.image, mask),
        "region_sharpness_diff": sharpness(to_grey(aligned), mask) - sharpness(to_grey(template.image), mask),
        "region_halftone": halftone,
    }
    reasons = {"region_halftone": "logo region smaller than 16 px"} if math.isnan(halftone) else {}
    return CueResult(values, reasons)
