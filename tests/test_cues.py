"""Cues on generated images whose answers are known by construction."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw, ImageFont

from brandsentry.config import config_dir
from brandsentry.cues import (
    BrandAssetCache,
    CueConfig,
    CueResult,
    Neighbours,
    build_brand_assets,
    cheap_cues,
    compute_cues,
    expensive_cues,
    feature_names,
)
from brandsentry.cues.imagestats import ListingPixels, banding, halftone_energy, resize_longest
from brandsentry.cues.logo import homography_problem, logo_cues
from brandsentry.cues.packaging import packaging_cues
from brandsentry.cues.quality import quality_cues
from brandsentry.cues.records import ReferenceImages
from brandsentry.cues.seller import seller_cues
from brandsentry.cues.similarity import similarity_cues
from brandsentry.cues.text import compare_wordmarks, merge_overlapping, ocr_engine, text_cues
from brandsentry.errors import ConfigError

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
CFG = CueConfig.from_config(OmegaConf.load(config_dir() / "cues" / "default.yaml"))
QUAD = np.array([[300, 180], [560, 210], [540, 470], [280, 430]], dtype=np.float64)


def font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), size)


def colour(rng) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def make_logo(size: int = 320, word: str = "KORVALIS", seed: int = 1) -> np.ndarray:
    """A textured, asymmetric emblem over a wordmark."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (250, 246, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 10, 300, 230), fill=(180, 30, 40), outline=(20, 20, 60), width=6)
    for _ in range(40):
        x, y = rng.integers(40, 260, 2)
        r = int(rng.integers(4, 18))
        draw.polygon([(x, y - r), (x + r, y + r), (x - r // 2, y + r // 3)], fill=colour(rng))
    draw.text((60, 60), "K", font=font(110), fill=(250, 220, 60))
    draw.text((18, 250), word, font=font(46), fill=(20, 30, 90))
    return np.asarray(image)


def clutter(width: int = 800, height: int = 600, seed: int = 2) -> np.ndarray:
    """A busy scene of shapes, stray words and sensor noise."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (120, 130, 125))
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = (x0, y0, x0 + int(rng.integers(10, 200)), y0 + int(rng.integers(10, 200)))
        (draw.rectangle if rng.integers(0, 2) else draw.ellipse)(box, fill=colour(rng))
    for _ in range(15):
        position = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        word = str(rng.choice(["sale", "ORIGINAL", "best", "quality", "2024", "shop"]))
        draw.text(position, word, font=font(int(rng.integers(14, 40)), bold=False), fill=colour(rng))
    noisy = np.asarray(image).astype(np.int16) + rng.normal(0, 4, (height, width, 3)).astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def paste(scene: np.ndarray, logo: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """`logo` warped so that its corners land on `quad` (clockwise from top-left)."""
    height, width = logo.shape[:2]
    outline = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    homography = cv2.getPerspectiveTransform(outline, np.float32(quad))
    size = scene.shape[1::-1]
    warped = cv2.warpPerspective(logo, homography, size)
    mask = cv2.warpPerspective(np.full((height, width), 255, np.uint8), homography, size) > 127
    out = scene.copy()
    out[mask] = warped[mask]
    return out


def make_package(seed: int = 3) -> np.ndarray:
    """A product front: gradient, colour bands, a wordmark."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:300, 0:400]
    base = np.stack([80 + 100 * x / 400, 60 + 120 * y / 300, 150 + 0 * x], axis=2).astype(np.uint8)
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    for i in range(6):
        draw.rectangle((20 + 60 * i, 40, 70 + 60 * i, 140), fill=colour(rng))
    draw.text((30, 180), "KORVALIS", font=font(48), fill=(240, 230, 40))
    return np.asarray(image)


def rephoto(rgb: np.ndarray, seed: int = 4) -> np.ndarray:
    """The same object photographed again: slight perspective, exposure, blur and noise."""
    rng = np.random.default_rng(seed)
    height, width = rgb.shape[:2]
    outline = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = outline + rng.uniform(-8, 8, outline.shape).astype(np.float32)
    warped = cv2.warpPerspective(
        rgb, cv2.getPerspectiveTransform(outline, moved), (width, height), borderMode=cv2.BORDER_REPLICATE
    )
    shot = cv2.GaussianBlur(warped, (0, 0), 0.8).astype(np.float32) * 1.04 + rng.normal(0, 3, rgb.shape)
    return np.clip(shot, 0, 255).astype(np.uint8)


def hue_shift(rgb: np.ndarray, degrees: int) -> np.ndarray:
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + degrees // 2) % 180
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def neighbours(*rows: tuple[int, float, str, str | None]) -> Neighbours:
    return Neighbours(
        ref_ids=[r[0] for r in rows],
        similarities=[r[1] for r in rows],
        brands=[r[2] for r in rows],
        products=[r[3] for r in rows],
    )


def no_lookup(ref_id: int) -> np.ndarray:
    raise KeyError(f"reference {ref_id} not in this test")


@pytest.fixture(scope="module")
def logo() -> np.ndarray:
    return make_logo()


@pytest.fixture(scope="module")
def assets(logo):
    return build_brand_assets("Korvalis", ["Korvalis"], {7: logo}, CFG, authorised_sellers={"shop-1"})


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return clutter()


# --- configuration ---------------------------------------------------------------------------------------


def cues_with(changes: dict) -> DictConfig:
    """configs/cues/default.yaml with `changes` merged in (new keys too)."""
    return OmegaConf.merge(OmegaConf.load(config_dir() / "cues" / "default.yaml"), changes)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"logo": {"detector": "surf"}}, "surf"),
        (
            {"cascade": {"max_escalation": 1.5}},
            r"cues\.cascade\.max_escalation must lie in \[0, 1\], got 1\.5",
        ),
        ({"logo": {"ratoi": 0.7}}, r"cues\.logo\.ratoi \(did you mean cues\.logo\.ratio\?\)"),
        ({"ocr": {}}, r"cues\.ocr; valid keys of cues: cascade, similarity"),
        ({"placement": {"min_template_correlation": 1.5}}, "1.5"),
        ({"placement": {"correlation_scale_step": 1.0}}, "correlation_scale_step"),
        ({"packaging": {"color_bins": [4, 12]}}, r"cues\.packaging\.color_bins needs 3 values"),
        ({"text": {"region_margin": 0.5}}, r"cues\.text\.region_margin must lie in \[0, 0\.5\), got 0\.5"),
        ({"text": {"detail_min_side": 0}}, r"cues\.text\.detail_min_side must be >= 1, got 0"),
    ],
)
def test_bad_config_is_refused_naming_the_value(raw, message):
    with pytest.raises(ConfigError, match=message):
        CueConfig.from_config(cues_with(raw))


def test_a_missing_cue_setting_is_named():
    raw = OmegaConf.to_container(OmegaConf.load(config_dir() / "cues" / "default.yaml"))
    del raw["text"]["min_score"]
    with pytest.raises(ConfigError, match=r"cues\.text\.min_score not set"):
        CueConfig.from_config(raw)


# --- records ---------------------------------------------------------------------------------------------


def test_cue_result_refuses_nan_without_reason():
    with pytest.raises(ValueError, match="without a reason"):
        CueResult({"a": math.nan})
    with pytest.raises(ValueError, match="not NaN"):
        CueResult({"a": 1.0}, {"a": "why"})


def test_neighbours_from_search_drops_faiss_padding():
    found = Neighbours.from_search([4, 9, -1], [0.9, 0.8, -3.4e38], {4: "A", 9: "B"}, {4: "p"})
    assert found.ref_ids == (4, 9) and found.brands == ("A", "B") and found.products == ("p", None)
    with pytest.raises(ValueError, match="differ in length"):
        Neighbours((1, 2), (0.5,), ("A",), (None,))


# --- similarity ------------------------------------------------------------------------------------------


def test_similarity_cues_on_a_hand_built_neighbour_list():
    found = neighbours(
        (1, 0.95, "Other", "x"),
        (2, 0.90, "korvalis ", "Tonic"),  # same brand: names compare without case and stray spaces
        (3, 0.85, "Korvalis", "Soap"),
        (4, 0.80, "Third", None),
        (5, 0.70, "Korvalis", "Tonic"),
        (6, 0.60, "Korvalis", "Tonic"),
    )
    result = similarity_cues(found, "Korvalis", "tonic", replace(CFG.similarity, top_k=2))
    v = result.values
    assert v["sim_top1"] == pytest.approx(0.95)
    assert v["sim_brand_top1"] == pytest.approx(0.90)
    assert v["sim_brand_mean_topk"] == pytest.approx((0.90 + 0.85) / 2)
    assert v["sim_product_top1"] == pytest.approx(0.90)
    assert v["sim_product_mean_topk"] == pytest.approx((0.90 + 0.70) / 2)
    assert v["sim_other_top1"] == pytest.approx(0.95)
    assert v["sim_margin"] == pytest.approx(-0.05)
    assert v["sim_brand_rank"] == 2
    assert v["sim_brand_fraction"] == pytest.approx(0.5)
    assert not result.reasons


def test_similarity_is_nan_with_reason_without_claimed_brand_neighbours():
    found = neighbours((1, 0.9, "Other", None), (2, 0.8, "Third", None))
    result = similarity_cues(found, "Korvalis", None, CFG.similarity)
    for name in ("sim_brand_top1", "sim_brand_mean_topk", "sim_margin", "sim_brand_rank"):
        assert math.isnan(result.values[name]) and "Korvalis" in result.reasons[name]
    assert result.values["sim_brand_fraction"] == 0.0
    assert result.reasons["sim_product_top1"] == "no claimed product"
    empty = similarity_cues(neighbours(), "Korvalis", None, CFG.similarity)
    assert set(empty.reasons.values()) == {"no neighbours"}


# --- logo ------------------------------------------------------------------------------------------------


def test_logo_in_clutter_is_verified_with_the_known_box(assets, scene, logo):
    listing = paste(scene, logo, QUAD)
    result = logo_cues(ListingPixels(listing), assets, "Korvalis", CFG.logo, CFG.packaging)
    v = result.values
    assert v["logo_verified"] == 1.0
    assert v["logo_inliers"] >= 50 and v["logo_inlier_ratio"] > 0.5 and v["logo_reproj_error"] < 2.0
    assert np.abs(np.array(result.evidence["logo"]["quad"]) - QUAD).max() < 3.0
    x0, y0, x1, y1 = result.evidence["logo"]["box"]
    assert abs(x0 - 280) < 3 and abs(y0 - 180) < 3 and abs(x1 - 560) < 3 and abs(y1 - 470) < 3
    assert len(result.evidence["logo"]["inlier_points"]) == v["logo_inliers"]
    # aligned with the authentic logo, the region's colours agree (it is the same logo)
    assert v["region_delta_e"] < 10 and v["region_color_distance"] < 0.4


def test_logo_found_in_a_listing_larger_than_the_working_size(assets, logo):
    """The box comes back in listing pixels even though features were found on a downscaled copy."""
    big = cv2.resize(clutter(), (1200, 900), interpolation=cv2.INTER_LINEAR)
    listing = paste(big, logo, QUAD * 1.5)
    result = logo_cues(ListingPixels(listing), assets, "Korvalis", CFG.logo, CFG.packaging)
    assert result.values["logo_verified"] == 1.0
    assert np.abs(np.array(result.evidence["logo"]["quad"]) - QUAD * 1.5).max() < 4.5


@pytest.mark.parametrize("detector", ["sift", "orb"])
def test_mirrored_logo_is_not_verified(logo, scene, detector):
    cfg = replace(CFG, logo=replace(CFG.logo, detector=detector))
    brand = build_brand_assets("Korvalis", [], {7: logo}, cfg)
    genuine = paste(scene, logo, QUAD)
    mirrored = paste(scene, np.ascontiguousarray(logo[:, ::-1]), QUAD)
    assert (
        logo_cues(ListingPixels(genuine), brand, "Korvalis", cfg.logo, cfg.packaging).values["logo_verified"]
        == 1
    )
    result = logo_cues(ListingPixels(mirrored), brand, "Korvalis", cfg.logo, cfg.packaging)
    assert result.values["logo_verified"] == 0.0
    assert math.isnan(result.values["region_delta_e"])


def test_homography_check_rejects_mirrors_and_accepts_rotations():
    outline = np.array([[0, 0], [100, 0], [100, 80], [0, 80]], dtype=np.float64)
    mirror = np.array([[-1.0, 0, 300], [0, 1, 50], [0, 0, 1]])
    assert "mirrored" in homography_problem(mirror, outline, (600, 800), 16)
    angle = np.deg2rad(150)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 400], [np.sin(angle), np.cos(angle), 300], [0, 0, 1]]
    )
    assert homography_problem(rotation, outline, (600, 800), 16) is None
    perspective = np.array([[1.0, 0.1, 200], [0.05, 1.1, 100], [0.0008, 0.0004, 1]])
    assert homography_problem(perspective, outline, (600, 800), 16) is None
    assert "horizon" in homography_problem(
        np.array([[1.0, 0, 0], [0, 1, 0], [-0.02, 0, 1]]), outline, (600, 800), 16
    )
    assert "smaller" in homography_problem(np.diag([0.05, 0.05, 1.0]), outline, (600, 800), 16)
    assert homography_problem(None, outline, (600, 800), 16) == "no homography"


def test_logo_cues_are_nan_with_reason_without_logo_references(scene):
    wordmarks_only = build_brand_assets("Korvalis", ["Korvalis"], {}, CFG)
    result = logo_cues(ListingPixels(scene), wordmarks_only, "Korvalis", CFG.logo, CFG.packaging)
    assert all(math.isnan(v) for v in result.values.values())
    assert "no logo references" in result.reasons["logo_inliers"]
    flat = build_brand_assets("Korvalis", [], {3: np.full((100, 100, 3), 128, np.uint8)}, CFG)
    assert flat.skipped_logos and flat.skipped_logos[0][0] == 3  # a featureless logo is reported, not lost
    missing = logo_cues(ListingPixels(scene), None, "Korvalis", CFG.logo, CFG.packaging)
    assert "no brand assets" in missing.reasons["logo_verified"]


# --- packaging and quality -------------------------------------------------------------------------------


def test_colour_shifted_package_is_further_than_a_rephoto():
    package = make_package()
    found = neighbours((11, 0.9, "Korvalis", "Tonic"))
    references = {11: package}

    def distance(listing):
        refs = ReferenceImages(references.__getitem__)
        result = packaging_cues(ListingPixels(listing), found, "Korvalis", "Tonic", refs, CFG.packaging)
        assert result.evidence["packaging_reference_id"] == 11
        return result.values["pack_color_distance"]

    same, shifted = distance(rephoto(package)), distance(rephoto(hue_shift(package, 40)))
    assert shifted > same + 0.1


def test_blur_lowers_sharpness():
    sharp = make_package()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.5)
    assert quality_cues(ListingPixels(blurred), CFG.quality).values["quality_sharpness"] < (
        quality_cues(ListingPixels(sharp), CFG.quality).values["quality_sharpness"] - 0.3
    )
    sizes = quality_cues(ListingPixels(sharp), CFG.quality).values
    assert sizes["quality_min_side"] == 300 and sizes["quality_megapixels"] == pytest.approx(0.12)


def test_halftone_screen_and_posterisation_are_measured():
    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    smooth = 128 + 60 * np.sin(x / 40) * np.cos(y / 55)
    rng = np.random.default_rng(0)
    continuous = np.clip(smooth + rng.normal(0, 2, smooth.shape), 0, 255).astype(np.uint8)
    screen = 0.5 + 0.5 * np.cos(2 * np.pi * (x + y) / 5.0) * np.cos(2 * np.pi * (x - y) / 5.0)
    halftoned = np.where(smooth / 255 > screen, 255, 0).astype(np.uint8)
    band, peak = CFG.packaging.halftone_band, CFG.packaging.halftone_peak_factor
    assert halftone_energy(halftoned, 256, band, peak) > 10 * halftone_energy(continuous, 256, band, peak)
    posterised = (continuous // 32 * 32).astype(np.uint8)
    assert banding(posterised) > 0.8 > 0.1 > banding(continuous)


# --- seller ----------------------------------------------------------------------------------------------


def test_seller_authorisation_and_reused_official_photo(assets):
    official = make_package()
    found = neighbours((21, 0.93, "Korvalis", "Tonic"), (22, 0.5, "Other", None))
    refs = {21: official}

    def run(listing, seller):
        return seller_cues(
            listing, found, "Korvalis", seller, assets, ReferenceImages(refs.__getitem__), CFG.seller
        )

    reused = run(official.copy(), "shop-9").values
    assert (
        reused["seller_authorised"] == 0.0
        and reused["copy_phash_distance"] == 0
        and reused["copy_reused"] == 1
    )
    own_photo = run(clutter(400, 300, seed=8), "shop-1").values
    assert own_photo["seller_authorised"] == 1.0 and own_photo["copy_phash_distance"] > 10
    assert own_photo["copy_reused"] == 0.0
    unknown = run(official, None)
    assert unknown.reasons["seller_authorised"] == "no seller id"
    no_list = seller_cues(official, found, "Korvalis", "shop-1", None, ReferenceImages(no_lookup), CFG.seller)
    assert "authorised-seller list" in no_list.reasons["seller_authorised"]
    assert "unavailable" in no_list.reasons["copy_phash_distance"] and math.isnan(
        no_list.values["copy_reused"]
    )


def test_working_sizes_are_resize_longest_computed_once():
    image = clutter(1700, 1100)
    pixels = ListingPixels(image)
    for side in (256, 512, 640, 2000):
        rgb, scale = pixels.rgb_at(side)
        expected, expected_scale = resize_longest(image, side)
        assert np.array_equal(rgb, expected) and scale == expected_scale
        assert np.array_equal(
            pixels.grey_at(side)[0], resize_longest(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), side)[0]
        )
    assert pixels.rgb_at(640)[0] is pixels.rgb_at(640)[0]
    assert pixels.rgb_at(2000)[0] is image  # never enlarged


# --- text ------------------------------------------------------------------------------------------------


def test_overlapping_text_regions_merge_into_one():
    assert merge_overlapping([(0, 0, 10, 10), (50, 50, 60, 60), (5, 5, 20, 20), (19, 0, 52, 52)]) == [
        (0, 0, 60, 60)
    ]
    assert sorted(merge_overlapping([(0, 0, 10, 10), (10, 0, 20, 10)])) == [(0, 0, 10, 10), (10, 0, 20, 10)]


def test_ocr_reads_nothing_where_the_detector_sees_no_text(assets, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("recognition ran on a listing without text")

    engine = ocr_engine(CFG.text.threads)
    monkeypatch.setattr(engine, "text_rec", never)
    monkeypatch.setattr(engine, "text_cls", never)
    flat = np.full((600, 800, 3), (200, 210, 190), np.uint8)
    result = text_cues(ListingPixels(flat), assets, "Korvalis", CFG.text)
    assert result.values["text_chars"] == 0.0 and result.evidence["ocr"] == []
    assert "no text recognised" in result.reasons["text_wordmark_similarity"]


def test_wordmark_comparison_without_ocr():
    marks = ("Korvalis", "Nike")
    exact = compare_wordmarks({"korvalis", "premium"}, marks, CFG.text)
    assert exact["exact"] and not exact["near_misses"] and exact["similarity"] == 1.0
    miss = compare_wordmarks({"korvaliz"}, marks, CFG.text)
    assert not miss["exact"] and miss["near_misses"] == [{"text": "korvaliz", "wordmark": "korvalis"}]
    assert not compare_wordmarks({"like"}, marks, CFG.text)["near_misses"]  # 4 letters tolerate no edit
    assert not compare_wordmarks({"kovaxiz"}, marks, CFG.text)["near_misses"]  # 3 edits is another word
    no_marks = text_cues(
        ListingPixels(make_package()), build_brand_assets("Korvalis", [], {}, CFG), "Korvalis", CFG.text
    )
    assert all("no wordmarks" in no_marks.reasons[name] for name in no_marks.values)


def ocr_listing(word: str) -> np.ndarray:
    image = Image.new("RGB", (640, 480), (200, 210, 190))
    draw = ImageDraw.Draw(image)
    draw.text((120, 160), word, font=font(64), fill=(20, 30, 90))
    draw.text((120, 300), "Premium quality 250 ml", font=font(30, bold=False), fill=(0, 0, 0))
    return np.asarray(image)


@pytest.mark.slow
def test_ocr_flags_a_misspelled_wordmark_and_not_the_real_one(assets):
    genuine = text_cues(ListingPixels(ocr_listing("KORVALIS")), assets, "Korvalis", CFG.text)
    assert genuine.values["text_exact"] == 1.0 and genuine.values["text_near_miss"] == 0.0
    assert genuine.values["text_wordmark_similarity"] == 1.0 and genuine.values["text_chars"] >= 20
    fake = text_cues(ListingPixels(ocr_listing("KORVALIZ")), assets, "Korvalis", CFG.text)
    assert fake.values["text_exact"] == 0.0 and fake.values["text_near_miss"] == 1.0
    assert fake.values["text_wordmark_similarity"] == pytest.approx(7 / 8)
    assert any("KORVALIZ" in line["text"] for line in fake.evidence["ocr"])


def test_ocr_models_run_by_openvino_give_onnx_runtimes_outputs_from_several_threads():
    """The text cue compiles RapidOCR's models with OpenVINO (half the time): the same detector map and line
    scores as RapidOCR's own ONNX Runtime sessions, also when two cue workers call one model at once."""
    from concurrent.futures import ThreadPoolExecutor

    from rapidocr_onnxruntime import RapidOCR
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    own, ours = RapidOCR(intra_op_num_threads=1), ocr_engine(CFG.text.threads)
    assert type(ours.text_det.infer).__name__ == "OpenVinoSession"
    listing = cv2.cvtColor(ocr_listing("KORVALIS"), cv2.COLOR_RGB2BGR)
    detector = ours.text_det
    batch = DetPreProcess(max(listing.shape[:2]), "max", detector.mean, detector.std)(listing)
    expected = own.text_det.infer(batch)[0]
    with ThreadPoolExecutor(2) as pool:
        maps = list(pool.map(lambda _: ours.text_det.infer(batch)[0], range(4)))
    assert all(np.abs(found - expected).max() < 1e-4 for found in maps)
    assert expected.max() > 0.9  # the map marks the wordmark: a map of zeros would match anything
    for session, own_session, width in (
        (ours.text_rec.session, own.text_rec.session, 320),
        (ours.text_cls.infer, own.text_cls.infer, 192),
    ):
        line = np.random.default_rng(width).random((2, 3, 48, width), dtype=np.float32)
        assert np.abs(session(line)[0] - own_session(line)[0]).max() < 1e-4


# --- the whole listing -----------------------------------------------------------------------------------


def test_compute_cues_rows_line_up_and_the_cascade_skips_expensive_cues(assets, scene, logo):
    listing = paste(scene, logo, QUAD)
    found = neighbours((31, 0.91, "Korvalis", "Tonic"), (32, 0.7, "Other", None))
    refs = {31: make_package()}
    cfg = replace(CFG, text=replace(CFG.text, enabled=False))
    args = (listing, found, "Korvalis", "Tonic", "shop-1", assets, refs.__getitem__, cfg)
    names = feature_names(cfg)
    assert not any(name.startswith("text_") for name in names)
    assert set(feature_names(cfg, expensive=False)) | set(feature_names(cfg, expensive=True)) == set(names)

    skipped = compute_cues(*args, expensive=False)
    assert list(skipped.values) == list(names) and skipped.row(names).shape == (len(names),)
    assert skipped.reasons["logo_verified"] == "skipped by the cascade"
    assert not math.isnan(skipped.values["pack_color_distance"])

    full = compute_cues(*args, expensive=True)
    assert set(full.values) == set(names) and full.values["logo_verified"] == 1.0
    assert set(full.timings_ms) == {"similarity", "quality", "seller", "packaging", "logo"}
    assert cheap_cues(*args).values.keys() == set(feature_names(cfg, expensive=False))
    assert expensive_cues(*args).values.keys() == set(feature_names(cfg, expensive=True))


def test_a_batch_never_sees_an_exception(assets):
    """Broken references, broken assets and a broken image become NaN + reason, column by column."""
    found = neighbours((41, 0.9, "Korvalis", None))
    cfg = replace(CFG, text=replace(CFG.text, enabled=False))
    listing = make_package()
    result = compute_cues(listing, found, "Korvalis", None, "shop-1", assets, no_lookup, cfg, expensive=True)
    assert "KeyError" in result.reasons["pack_color_distance"]
    broken = replace(assets, logos=("not a template",))
    result = compute_cues(listing, found, "Korvalis", None, None, broken, no_lookup, cfg, expensive=True)
    assert result.reasons["logo_inliers"].startswith("logo cue failed: AttributeError")
    assert not math.isnan(result.values["sim_brand_top1"])
    garbage = compute_cues(
        np.zeros((5, 5)), found, "Korvalis", None, None, assets, no_lookup, cfg, expensive=True
    )
    assert set(garbage.values) == set(feature_names(cfg)) and all(
        math.isnan(v) for v in garbage.values.values()
    )
    assert "HxWx3 uint8" in garbage.reasons["sim_top1"]
    tiny = np.full((8, 8, 3), 90, np.uint8)
    refs = {41: make_package()}.__getitem__
    result = compute_cues(tiny, found, "Korvalis", None, "shop-1", assets, refs, cfg, expensive=True)
    assert set(result.values) == set(feature_names(cfg))
    assert result.values["quality_min_side"] == 8 and result.values["logo_verified"] == 0.0
    assert "smaller than 16 px" in result.reasons["pack_halftone"]
    assert not any("cue failed" in reason for reason in result.reasons.values())


def test_brand_asset_cache_builds_each_brand_once(logo):
    built = []

    def factory(brand):
        built.append(brand)
        return build_brand_assets(brand, [brand], {1: logo}, CFG) if brand == "Korvalis" else None

    cache = BrandAssetCache(factory)
    assert cache("Korvalis") is cache(" korvalis") and cache("Nobody") is None and cache("nobody") is None
    assert built == ["Korvalis", "Nobody"]
    cache.invalidate("KORVALIS")
    cache("Korvalis")
    assert built == ["Korvalis", "Nobody", "Korvalis"]
