"""Per-listing cost and detection quality of each cue group, and how far two code versions' cues agree.

    .venv/bin/python scripts/bench_cues.py [speed] [--n 20] [--threads 1] [--detectors sift] [--no-ocr] [--profile]
                                           [--images 'GLOB']
    .venv/bin/python scripts/bench_cues.py world OUT.parquet MANIFEST workspace=DIR [embedder=...]
    .venv/bin/python scripts/bench_cues.py agree BEFORE.parquet AFTER.parquet

`speed` generates ~1000x750 listings (a logo under perspective in clutter, a caption) with a fixed seed and
prints median and p90 ms per cue group, each also as a multiple of a fixed reference timed on the same
listings in the same run: the pre-issue-17 expensive path built from the libraries alone (RapidOCR's own
pipeline on the listing at 1024 px, SIFT with 1500 features at 800 px), so runs on a busy box compare by
ratio. Its quality lines give, per listing variant, the share where OCR reads the wordmark exactly, reads a
near miss, and where the logo is verified. Reference images are handed over already decoded (the catalog's
decode, ~10 ms each, is not counted). `--profile` splits the OCR (coarse text map / lines in detail /
recognise) and SIFT (detect and describe / match / RANSAC) stages of the current code; `--images` times
image files (a synthetic world's listings) instead of the generated ones.

`world` computes every cue of a labelled manifest the way training does (`ScoringContext.featurize_all`)
and stores them; `agree` compares two such files (e.g. before and after a change to the cues, run with
PYTHONPATH pointing at each version) column by column.
"""

from __future__ import annotations

import argparse
import glob
import time
from dataclasses import replace
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from brandsentry.cues import CueConfig, Neighbours, build_brand_assets, compute_cues
from brandsentry.settings import default_settings

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
WIDTH, HEIGHT = 1000, 750
WORDMARK = "KORVALIS"
# listing variants: (caption and logo word, caption font px, logo side range px, mirrored logo, image scale)
VARIANTS = {
    "plain": (WORDMARK, 40, (220, 380), False, 1.0),
    "small_text": (WORDMARK, 22, (150, 220), False, 1.0),
    "large_2x": (WORDMARK, 40, (220, 380), False, 2.0),
    "small_0.6x": (WORDMARK, 40, (220, 380), False, 0.6),
    "misspelt": ("KORVAL1S", 40, (220, 380), False, 1.0),
    "mirrored": (WORDMARK, 40, (220, 380), True, 1.0),
}


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / "DejaVuSans-Bold.ttf"), size)


def logo_image(rng: np.random.Generator, word: str = WORDMARK) -> np.ndarray:
    image = Image.new("RGB", (320, 320), (250, 246, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 10, 300, 230), fill=(180, 30, 40), outline=(20, 20, 60), width=6)
    for _ in range(40):
        x, y = rng.integers(40, 260, 2)
        r = int(rng.integers(4, 18))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.polygon([(x, y - r), (x + r, y + r), (x - r // 2, y + r // 3)], fill=fill)
    draw.text((18, 250), word, font=font(46), fill=(20, 30, 90))
    return np.asarray(image)


def listing_image(
    rng: np.random.Generator,
    logo: np.ndarray,
    word: str = WORDMARK,
    caption_px: int = 40,
    logo_side: tuple[int, int] = (220, 380),
    scale: float = 1.0,
) -> np.ndarray:
    """Clutter, a caption and the logo under a random perspective, drawn at `scale` x 1000x750."""
    width, height = round(WIDTH * scale), round(HEIGHT * scale)
    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(150):
        x0, y0 = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        box = (x0, y0, x0 + int(rng.integers(10, 220)), y0 + int(rng.integers(10, 220)))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.integers(0, 2) else draw.ellipse)([round(v * scale) for v in box], fill=fill)
    caption = f"{word} premium 250 ml"
    draw.text(
        (round(60 * scale), round(660 * scale)),
        caption,
        font=font(round(caption_px * scale)),
        fill=(10, 10, 10),
    )
    scene = np.asarray(image).copy()
    side = rng.uniform(*logo_side)
    centre = rng.uniform([250, 200], [WIDTH - 250, HEIGHT - 250])
    quad = (
        centre + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * side / 2 + rng.normal(0, side / 12, (4, 2))
    )
    outline = np.float32([[0, 0], [320, 0], [320, 320], [0, 320]])
    homography = cv2.getPerspectiveTransform(outline, np.float32(quad * scale))
    warped = cv2.warpPerspective(logo, homography, (width, height))
    mask = cv2.warpPerspective(np.full((320, 320), 255, np.uint8), homography, (width, height)) > 127
    scene[mask] = warped[mask]
    noisy = scene.astype(np.int16) + rng.normal(0, 3, scene.shape).astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def variant_listings(n: int, seed: int) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """The authentic logo and `n` listings of every variant (the same seed gives the same pixels)."""
    rng = np.random.default_rng(seed)
    logo = logo_image(rng)
    listings = {}
    for name, (word, caption_px, logo_side, mirrored, scale) in VARIANTS.items():
        shown = logo_image(np.random.default_rng(seed), word)  # the same emblem, perhaps another word
        shown = shown[:, ::-1].copy() if mirrored else shown
        listings[name] = [listing_image(rng, shown, word, caption_px, logo_side, scale) for _ in range(n)]
    return logo, listings


class LegacyReference:
    """The fixed yardstick: the expensive path as it was before issue 17, built from the libraries alone."""

    def __init__(self, threads: int):
        from rapidocr_onnxruntime import RapidOCR

        self.ocr = RapidOCR(intra_op_num_threads=threads)
        self.sift = cv2.SIFT_create(nfeatures=1500)

    def __call__(self, rgb: np.ndarray) -> dict[str, float]:
        """ms of each stage for one listing."""
        times = {}
        started = time.perf_counter()
        image = resize_to(rgb, 1024)
        _, elapsed = self.ocr(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        times["ref ocr"] = (time.perf_counter() - started) * 1000
        for stage, seconds in zip(("det", "cls", "rec"), elapsed or (), strict=False):
            times[f"ref ocr {stage}"] = seconds * 1000
        started = time.perf_counter()
        self.sift.detectAndCompute(resize_to(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 800), None)
        times["ref sift"] = (time.perf_counter() - started) * 1000
        return times


def decoded(path: str) -> np.ndarray | None:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError:  # the world's deliberately undecodable listings
        return None


def resize_to(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    if max(height, width) <= side:
        return image
    factor = side / max(height, width)
    size = (round(width * factor), round(height * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def profile_current(listing: np.ndarray, assets, cfg: CueConfig) -> dict[str, float]:
    """ms of the current code's OCR and SIFT stages for one listing."""
    from brandsentry.cues import keypoints, logo, text
    from brandsentry.cues.imagestats import ListingPixels

    times = {}
    pixels = ListingPixels(listing)
    started = time.perf_counter()
    text.text_regions(pixels, cfg.text)
    times["ocr coarse"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    boxes = text.detect_boxes(pixels, cfg.text)  # the coarse pass again, and the regions in detail
    times["ocr detail"] = (time.perf_counter() - started) * 1000 - times["ocr coarse"]
    started = time.perf_counter()
    text.recognise(pixels, boxes, cfg.text)
    times["ocr recognise"] = (time.perf_counter() - started) * 1000
    times["ocr boxes"] = float(len(boxes))
    started = time.perf_counter()
    work, _ = logo.work_image(pixels, cfg.logo)
    features = keypoints.extract(work, cfg.logo)
    times["sift detect+describe"] = (time.perf_counter() - started) * 1000
    times["sift keypoints"] = float(len(features))
    times["sift match"] = times["sift ransac"] = 0.0
    for template in assets.logos:
        started = time.perf_counter()
        template_idx, listing_idx = keypoints.match(template.features, features, cfg.logo.ratio)
        times["sift match"] += (time.perf_counter() - started) * 1000
        if len(template_idx) >= 4:
            started = time.perf_counter()
            cv2.findHomography(
                template.features.points[template_idx],
                features.points[listing_idx],
                cv2.RANSAC,
                cfg.logo.ransac_threshold,
                maxIters=2000,
                confidence=0.995,
            )
            times["sift ransac"] += (time.perf_counter() - started) * 1000
    return times


def speed(args: argparse.Namespace) -> None:
    cv2.setNumThreads(args.threads)
    logo, listings = variant_listings(args.n, args.seed)
    if args.images:  # time these instead (the generated brand's assets still drive the logo and text cues)
        listings = {
            "files": [
                image for image in map(decoded, sorted(glob.glob(args.images))[: args.n]) if image is not None
            ]
        }
    timed = next(iter(listings))
    references = {i: listing_image(np.random.default_rng(args.seed + 1 + i), logo) for i in range(3)}
    neighbours = Neighbours(
        (0, 1, 2), (0.93, 0.9, 0.81), ("Korvalis", "Korvalis", "Other"), ("Tonic", "Soap", None)
    )
    reference = LegacyReference(args.threads)
    shown = (
        args.images or f"{args.n} generated listings per variant (plain: {WIDTH}x{HEIGHT}, seed {args.seed})"
    )
    print(f"{shown}, {args.threads} thread(s), references pre-decoded")
    for detector in args.detectors:
        base = default_settings(CueConfig, "cues")
        cfg = replace(
            base,
            logo=replace(base.logo, detector=detector),
            text=replace(base.text, enabled=not args.no_ocr, threads=args.threads),
        )
        started = time.perf_counter()
        assets = build_brand_assets("Korvalis", ["Korvalis"], {9: logo}, cfg, authorised_sellers={"s1"})
        build_ms = (time.perf_counter() - started) * 1000
        first = listings[timed][0]
        compute_cues(first, neighbours, "Korvalis", "Tonic", "s1", assets, references.get, cfg, True)  # warm
        reference(first)
        timings: dict[str, list[float]] = {}
        ref_times: dict[str, list[float]] = {}
        quality: dict[str, dict[str, float]] = {}
        for name, images in listings.items():
            counts = {"text_exact": 0, "text_near_miss": 0, "logo_verified": 0}
            for listing in images:
                result = compute_cues(
                    listing, neighbours, "Korvalis", "Tonic", "s1", assets, references.get, cfg, True
                )
                for key in counts:
                    counts[key] += result.values.get(key) == 1.0
                if name == timed:  # timings and the reference on the same listings, interleaved
                    for group, ms in result.timings_ms.items():
                        timings.setdefault(group, []).append(ms)
                    for stage, ms in reference(listing).items():
                        ref_times.setdefault(stage, []).append(ms)
                    if args.profile:
                        for stage, ms in profile_current(listing, assets, cfg).items():
                            timings.setdefault(f"  {stage}", []).append(ms)
            quality[name] = {key: count / len(images) for key, count in counts.items()}
        ref = np.add(ref_times["ref ocr"], ref_times["ref sift"])
        print(f"\ndetector={detector}: logo template build {build_ms:.0f} ms (once per brand)")
        print(f"{timed + ' listings':<24}{'median ms':>10}{'p90 ms':>10}{'x ref':>8}")
        cheap = np.sum([timings[g] for g in ("similarity", "quality", "seller", "packaging")], axis=0)
        expensive = np.sum([timings[g] for g in ("logo", "placement", "text") if g in timings], axis=0)
        rows = [*timings.items(), ("= cheap", cheap), ("= expensive", expensive), *ref_times.items()]
        rows.append(("= ref (ocr + sift)", ref))
        for group, values in rows:
            counted = "keypoints" in group or "boxes" in group
            ratio = "" if counted else f"{np.median(np.divide(values, ref)):>8.3f}"
            print(f"{group:<24}{np.median(values):>10.1f}{np.percentile(values, 90):>10.1f}{ratio}")
        if args.images:
            continue
        print(f"\n{'quality (share)':<16}{'text_exact':>12}{'near_miss':>12}{'logo_verified':>15}")
        for name, shares in quality.items():
            print(
                f"{name:<16}{shares['text_exact']:>12.2f}{shares['text_near_miss']:>12.2f}"
                f"{shares['logo_verified']:>15.2f}"
            )


def world(args: argparse.Namespace) -> None:
    """Every cue of the manifest's listings, as training computes them, stored with per-group timings."""
    from brandsentry.config import load_config
    from brandsentry.features import ScoringContext, read_listings

    cv2.setNumThreads(1)
    context = ScoringContext.from_config(load_config(args.overrides))
    listings = read_listings(args.manifest)
    started = time.perf_counter()
    table = context.featurize_all(listings, expensive=True)
    seconds = time.perf_counter() - started
    frame = table.features.copy()
    frame.insert(0, "listing_id", table.listing_ids)
    timings = table.timings_ms.add_prefix("ms_")
    pd.concat([frame, timings], axis=1).to_parquet(args.out)
    print(f"{len(frame)} listings in {seconds:.1f} s -> {args.out}")
    for group in table.timings_ms.columns:
        values = table.timings_ms[group].dropna()
        print(f"{group:<12} median {values.median():7.1f} ms  p90 {values.quantile(0.9):7.1f} ms")


def agree(args: argparse.Namespace) -> None:
    """Per cue column: rows compared, equal share (within 1e-6 or both NaN), NaN-pattern agreement, Pearson r."""
    before = pd.read_parquet(args.before).set_index("listing_id")
    after = pd.read_parquet(args.after).set_index("listing_id").loc[before.index]
    print(
        f"{len(before)} listings; {'column':<34}{'equal':>7}{'nan same':>9}{'pearson':>9}{'before':>9}{'after':>9}"
    )
    for column in before.columns:
        if column.startswith("ms_") or column not in after:
            continue
        a, b = before[column].to_numpy(float), after[column].to_numpy(float)
        both = ~np.isnan(a) & ~np.isnan(b)
        equal = np.mean(np.isclose(a, b, atol=1e-6, equal_nan=True))
        nan_same = np.mean(np.isnan(a) == np.isnan(b))
        spread = both.sum() > 2 and np.std(a[both]) > 0 and np.std(b[both]) > 0
        r = np.corrcoef(a[both], b[both])[0, 1] if spread else np.nan
        print(
            f"{'':<14}{column:<34}{equal:>7.2f}{nan_same:>9.2f}{r:>9.3f}"
            f"{np.nanmean(a) if (~np.isnan(a)).any() else np.nan:>9.3f}"
            f"{np.nanmean(b) if (~np.isnan(b)).any() else np.nan:>9.3f}"
        )
    for column in sorted(c for c in before.columns if c.startswith("ms_") and c in after):
        a, b = before[column].dropna(), after[column].dropna()
        print(
            f"{column:<20} median ms before {a.median():8.1f}  after {b.median():8.1f}  p90 {a.quantile(0.9):8.1f} -> {b.quantile(0.9):8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    bench = commands.add_parser("speed", help="cost and detection rates on generated listings (default)")
    for target in (parser, bench):
        target.add_argument("--n", type=int, default=20, help="listings per variant")
        target.add_argument("--seed", type=int, default=0)
        target.add_argument("--threads", type=int, default=1, help="OpenCV and ONNX Runtime threads")
        target.add_argument("--detectors", nargs="+", default=["sift"])
        target.add_argument("--no-ocr", action="store_true")
        target.add_argument("--profile", action="store_true", help="split the OCR and SIFT stages")
        target.add_argument("--images", help="time the first --n image files of this glob instead")
    dump = commands.add_parser("world", help="cues of a labelled manifest, as training computes them")
    dump.add_argument("out", type=Path)
    dump.add_argument("manifest", type=Path)
    dump.add_argument("overrides", nargs="*", help="config overrides (workspace=..., embedder=...)")
    compare = commands.add_parser("agree", help="compare two `world` files column by column")
    compare.add_argument("before", type=Path)
    compare.add_argument("after", type=Path)
    args = parser.parse_args()
    {"world": world, "agree": agree}.get(args.command, speed)(args)


if __name__ == "__main__":
    main()
