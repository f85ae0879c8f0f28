"""Placement cues on generated packages: the logo checked where the matched product reference has it."""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from brandsentry.cues import build_brand_assets, compute_cues, feature_names
from brandsentry.cues import logo as logo_module
from brandsentry.cues.imagestats import ListingPixels
from brandsentry.cues.keypoints import extract
from brandsentry.cues.logo import logo_cues, work_image
from brandsentry.cues.placement import FEATURES, placement_cues, reference_layout
from brandsentry.cues.records import ReferenceImages
from test_cues import CFG as DEFAULT_CFG
from test_cues import QUAD, clutter, hue_shift, make_logo, neighbours, paste, rephoto

REFERENCE_ID, LOGO_ID = 11, 7
CFG = replace(DEFAULT_CFG, placement=replace(DEFAULT_CFG.placement, enabled=True))


@pytest.fixture(scope="module")
def world():
    logo = make_logo()
    background = clutter(seed=5)
    return {
        "logo": logo,
        "background": background,
        "reference": paste(background, logo, QUAD),
        "assets": build_brand_assets("Korvalis", [], {LOGO_ID: logo}, CFG),
    }


class Lookup(dict):
    """A reference lookup with a memo, as the scorer's reference store has."""

    def __init__(self, images):
        super().__init__(images)
        self.memo = {}

    def __call__(self, ref_id):
        return self[ref_id]


def placement(world, listing, lookup=None, params=CFG.placement, assets=None, logo=CFG.logo):
    found = neighbours((LOGO_ID, 0.95, "Korvalis", "Tonic"), (REFERENCE_ID, 0.9, "Korvalis", "Tonic"))
    lookup = Lookup({REFERENCE_ID: world["reference"]}) if lookup is None else lookup
    return placement_cues(
        ListingPixels(listing), found, "Korvalis", "Tonic", assets or world["assets"], ReferenceImages(lookup),
        logo, params,
    )  # fmt: skip


def test_an_authentic_rephoto_has_its_logo_where_the_reference_has_it(world):
    result = placement(world, rephoto(world["reference"]))
    v = result.values
    assert set(v) == set(FEATURES) and not result.reasons
    assert result.evidence["placement"]["reference_id"] == REFERENCE_ID  # the logo reference is skipped
    assert v["placement_package_inliers"] >= 100 and v["placement_package_ncc"] > 0.8
    assert v["placement_logo_ncc"] > 0.8 and v["placement_logo_delta_e"] < 10
    assert v["placement_logo_offset"] < 0.05
    expected = np.array(result.evidence["placement"]["expected_quad"])
    assert np.abs(expected - QUAD).max() < 12  # rephoto moves corners by up to 8 px


def test_a_moved_logo_leaves_its_place_unlike_the_template_and_verifies_away_from_it(world):
    moved = rephoto(paste(world["background"], world["logo"], QUAD + [180, 40]))
    v = placement(world, moved).values
    assert v["placement_package_inliers"] >= 50  # the package outside the logo still registers
    assert v["placement_logo_ncc"] < 0.5 and v["placement_logo_offset"] > 0.4


def test_a_mirrored_logo_in_its_place_correlates_less_and_does_not_verify(world):
    mirrored = rephoto(paste(world["background"], np.ascontiguousarray(world["logo"][:, ::-1]), QUAD))
    result = placement(world, mirrored)
    # the emblem's ellipse is symmetric, its contents are not: well below the authentic ~0.98
    assert result.values["placement_logo_ncc"] < 0.8 and result.values["placement_logo_delta_e"] > 15
    assert math.isnan(result.values["placement_logo_offset"])
    assert "not verified" in result.reasons["placement_logo_offset"]


def relit(rgb: np.ndarray) -> np.ndarray:
    """Other light and white balance, with a gamma: a smooth per-channel change of the whole photo."""
    image = (rgb.astype(np.float32) / 255.0) * np.array([1.08, 0.97, 0.9], np.float32)
    return (np.clip(image, 0, 1) ** 0.85 * 255 + 0.5).astype(np.uint8)


def test_a_recoloured_or_blurred_logo_stands_out_from_its_package_under_other_light(world):
    authentic = placement(world, relit(rephoto(world["reference"]))).values
    recoloured_logo = paste(world["background"], hue_shift(world["logo"], 120), QUAD)
    recoloured = placement(world, relit(rephoto(recoloured_logo))).values
    blurred_logo = paste(world["background"], cv2.GaussianBlur(world["logo"], (0, 0), 4), QUAD)
    blurred = placement(world, relit(rephoto(blurred_logo))).values
    # the light is explained by the colour match: the authentic logo's place is as close as its surround
    assert authentic["placement_logo_color_residual"] < 12
    assert authentic["placement_surround_color_residual"] < 6
    assert abs(authentic["placement_logo_sharpness_rel"]) < 0.3
    # ... which the raw comparison of the registered package still shows
    assert authentic["placement_package_delta_e"] > 3 * authentic["placement_surround_color_residual"]
    assert recoloured["placement_logo_color_residual"] > 3 * authentic["placement_logo_color_residual"]
    assert blurred["placement_logo_sharpness_rel"] < authentic["placement_logo_sharpness_rel"] - 0.5


def test_an_unrelated_photo_is_not_registered_and_nothing_is_guessed(world):
    other = clutter(seed=9)
    result = placement(world, other)
    # a few inliers may line up (both scenes show the same stray words), but crowded into one spot
    assert result.values["placement_package_inliers"] < 50
    for name in FEATURES[1:]:
        assert math.isnan(result.values[name]) and "not registered" in result.reasons[name]


def test_missing_inputs_give_nan_with_reasons_and_the_reference_layout_is_memoised(world):
    only_logo = neighbours((LOGO_ID, 0.95, "Korvalis", "Tonic"))
    refs = ReferenceImages(Lookup({}))
    listing = world["reference"]
    nothing = placement_cues(ListingPixels(listing), only_logo, "Korvalis", None, world["assets"], refs,
                             CFG.logo, CFG.placement)  # fmt: skip
    assert all(math.isnan(v) for v in nothing.values.values())
    assert "no product reference" in nothing.reasons["placement_logo_ncc"]
    no_assets = placement_cues(ListingPixels(listing), only_logo, "Korvalis", None, None, refs,
                               CFG.logo, CFG.placement)  # fmt: skip
    assert "no usable logo templates" in no_assets.reasons["placement_package_inliers"]
    unreadable = placement(world, listing, Lookup({}))
    assert "no product reference image available" in unreadable.reasons["placement_logo_ncc"]
    lookup = Lookup({REFERENCE_ID: world["reference"]})
    placement(world, listing, lookup)
    assert len(lookup.memo) == 1  # computed once per scorer, not once per listing
    layout = next(iter(lookup.memo.values()))
    assert layout.logo is not None and layout.logo.ref_id == LOGO_ID


def test_placement_is_an_expensive_cue_that_needs_the_logo_cue(world):
    assert not set(FEATURES) & set(feature_names(DEFAULT_CFG))  # off by default (see configs/cues)
    assert set(FEATURES) <= set(feature_names(CFG, expensive=True))
    without_logo = replace(CFG, logo=replace(CFG.logo, enabled=False))
    assert not set(FEATURES) & set(feature_names(without_logo))
    listing = rephoto(world["reference"])
    found = neighbours((REFERENCE_ID, 0.9, "Korvalis", "Tonic"))
    lookup = Lookup({REFERENCE_ID: world["reference"]})
    args = (listing, found, "Korvalis", "Tonic", None, world["assets"], lookup, CFG)
    full = compute_cues(*args, expensive=True)
    assert full.values["placement_logo_ncc"] > 0.8 and "placement" in full.timings_ms
    cheap = compute_cues(*args, expensive=False)
    assert math.isnan(cheap.values["placement_logo_ncc"])


def test_the_logo_and_placement_cues_share_one_extraction_and_give_what_they_give_alone(world, monkeypatch):
    listing = relit(rephoto(paste(world["background"], world["logo"], QUAD + [60, 20])))
    found = neighbours((REFERENCE_ID, 0.9, "Korvalis", "Tonic"))
    alone = {
        **logo_cues(ListingPixels(listing), world["assets"], "Korvalis", CFG.logo, CFG.packaging).values,
        **placement(world, listing).values,
    }
    extractions = []
    monkeypatch.setattr(logo_module, "extract", lambda *a: extractions.append(1) or extract(*a))
    lookup = Lookup({REFERENCE_ID: world["reference"]})
    shared = compute_cues(
        listing, found, "Korvalis", "Tonic", None, world["assets"], lookup, CFG, expensive=True
    )
    assert len(extractions) == 1  # the listing's SIFT features, once for both cues
    assert {name: shared.values[name] for name in alone} == pytest.approx(alone, nan_ok=True, abs=0)


def test_small_listings_are_enlarged_before_features_when_asked(world):
    params = replace(CFG.logo, min_side=600)
    small = cv2.resize(world["reference"], (200, 150), interpolation=cv2.INTER_AREA)
    work, (sx, sy) = work_image(ListingPixels(small), params)
    assert work.shape == (450, 600) and sx == sy == 3.0
    same, scale = work_image(ListingPixels(small), CFG.logo)
    assert same.shape == (150, 200) and scale == (1.0, 1.0)
    big, (bx, _) = work_image(ListingPixels(clutter(1600, 1200)), params)
    assert max(big.shape) == CFG.logo.max_side and bx == CFG.logo.max_side / 1600  # only ever reduced
    # the box still comes back in the listing's own pixels
    listing = paste(clutter(400, 300, seed=6), cv2.resize(world["logo"], (160, 160)), QUAD / 2)
    enlarged = logo_cues(ListingPixels(listing), world["assets"], "Korvalis", params, CFG.packaging)
    assert enlarged.values["logo_verified"] == 1.0
    assert np.abs(np.array(enlarged.evidence["logo"]["quad"]) - QUAD / 2).max() < 3.0


def test_tiny_logo_templates_are_enlarged_when_asked(world):
    tiny_logo = cv2.resize(world["logo"], (40, 40), interpolation=cv2.INTER_AREA)
    plain = build_brand_assets("Korvalis", [], {LOGO_ID: tiny_logo}, CFG)
    cfg = replace(CFG, logo=replace(CFG.logo, template_min_side=160))
    enlarged = build_brand_assets("Korvalis", [], {LOGO_ID: tiny_logo}, cfg)
    assert enlarged.logos[0].image.shape == (160, 160, 3)
    assert len(enlarged.logos[0].features) > (len(plain.logos[0].features) if plain.logos else 0)
    big = build_brand_assets("Korvalis", [], {LOGO_ID: world["logo"]}, cfg)
    assert big.logos[0].image.shape == world["logo"].shape  # only small templates grow


def test_a_logo_too_small_for_local_features_is_located_in_its_reference_by_correlation(world):
    tiny = cv2.resize(world["logo"], (40, 40), interpolation=cv2.INTER_AREA)
    assets = build_brand_assets("Korvalis", [], {LOGO_ID: tiny}, CFG)
    box = np.array([[300, 200], [348, 200], [348, 248], [300, 248]], dtype=np.float64)  # 1.2x the template
    small = cv2.resize(tiny, (48, 48), interpolation=cv2.INTER_CUBIC)
    reference = paste(world["background"], small, box)
    # the 800-px reference at its own resolution: reduced to the 640-px default working size, the 48-px logo
    # resamples to a correlation peak of 0.85, under the 0.9 it must reach
    native = replace(CFG.logo, max_side=800)
    layout = reference_layout(reference, assets.logos, native, CFG.placement)
    assert layout.logo_located_by == "correlation"  # its few corners do not verify
    projected = logo_module.project(layout.logo_homography, layout.logo.corners)[0]
    assert np.abs(projected - box).max() <= 3.0
    # a template the reference does not show (another brand's small wordmark) is not placed anywhere
    stranger = cv2.resize(make_logo(word="ZEPHYRA")[230:], (60, 15), interpolation=cv2.INTER_AREA)
    other = build_brand_assets("Zephyra", [], {LOGO_ID: stranger}, CFG)
    assert other.logos and reference_layout(reference, other.logos, native, CFG.placement).logo is None
    never = replace(CFG.placement, min_template_correlation=1.0)
    assert reference_layout(reference, assets.logos, native, never).logo is None
    # the listing's logo place is then checked as for any other logo
    lookup = Lookup({REFERENCE_ID: reference})
    authentic = placement(world, rephoto(reference), lookup, assets=assets, logo=native)
    recoloured = placement(
        world,
        rephoto(paste(world["background"], hue_shift(small, 120), box)),
        lookup,
        assets=assets,
        logo=native,
    )
    assert authentic.evidence["placement"]["logo_located_by"] == "correlation"
    assert authentic.values["placement_logo_ncc"] > 0.8
    residual = "placement_logo_color_residual"
    assert recoloured.values[residual] > 2 * authentic.values[residual]
