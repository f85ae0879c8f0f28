"""Per-listing cost of each cue group on generated ~1000x750 listings (a logo pasted into clutter).

    .venv/bin/python scripts/bench_cues.py [--n 20] [--threads 1] [--detectors sift orb] [--no-ocr]

Reference images are handed over already decoded, so the packaging/seller figures exclude the catalog's
decode of the references (~10 ms each, see PERFORMANCE.md). Prints median and p90 ms per group.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from brandsentry.cues import CueConfig, Neighbours, build_brand_assets, compute_cues
from brandsentry.settings import default_settings

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
WIDTH, HEIGHT = 1000, 750


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / "DejaVuSans-Bold.ttf"), size)


def logo_image(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("RGB", (320, 320), (250, 246, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 10, 300, 230), fill=(180, 30, 40), outline=(20, 20, 60), width=6)
    for _ in range(40):
        x, y = rng.integers(40, 260, 2)
        r = int(rng.integers(4, 18))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.polygon([(x, y - r), (x + r, y + r), (x - r // 2, y + r // 3)], fill=fill)
    draw.text((18, 250), "KORVALIS", font=font(46), fill=(20, 30, 90))
    return np.asarray(image)


def listing_image(rng: np.random.Generator, logo: np.ndarray) -> np.ndarray:
    """Clutter, a caption and the logo under a random perspective."""
    image = Image.new("RGB", (WIDTH, HEIGHT), tuple(int(v) for v in rng.integers(60, 200, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(150):
        x0, y0 = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        box = (x0, y0, x0 + int(rng.integers(10, 220)), y0 + int(rng.integers(10, 220)))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.integers(0, 2) else draw.ellipse)(box, fill=fill)
    draw.text((60, 660), "KORVALIS premium 250 ml", font=font(40), fill=(10, 10, 10))
    scene = np.asarray(image).copy()
    side = rng.uniform(220, 380)
    centre = rng.uniform([250, 200], [WIDTH - 250, HEIGHT - 250])
    quad = (
        centre + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * side / 2 + rng.normal(0, side / 12, (4, 2))
    )
    outline = np.float32([[0, 0], [320, 0], [320, 320], [0, 320]])
    homography = cv2.getPerspectiveTransform(outline, np.float32(quad))
    warped = cv2.warpPerspective(logo, homography, (WIDTH, HEIGHT))
    mask = cv2.warpPerspective(np.full((320, 320), 255, np.uint8), homography, (WIDTH, HEIGHT)) > 127
    scene[mask] = warped[mask]
    noisy = scene.astype(np.int16) + rng.normal(0, 3, scene.shape).astype(np.int16)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="listings per detector")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV and ONNX Runtime threads")
    parser.add_argument("--detectors", nargs="+", default=["sift", "orb"])
    parser.add_argument("--no-ocr", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    logo = logo_image(rng)
    listings = [listing_image(rng, logo) for _ in range(args.n)]
    references = {i: listing_image(rng, logo) for i in range(3)}
    neighbours = Neighbours(
        (0, 1, 2), (0.93, 0.9, 0.81), ("Korvalis", "Korvalis", "Other"), ("Tonic", "Soap", None)
    )
    print(f"{args.n} listings {WIDTH}x{HEIGHT}, {args.threads} thread(s), references pre-decoded")
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
        compute_cues(
            listings[0], neighbours, "Korvalis", "Tonic", "s1", assets, references.get, cfg, True
        )  # warm
        timings: dict[str, list[float]] = {}
        verified = 0
        for listing in listings:
            result = compute_cues(
                listing, neighbours, "Korvalis", "Tonic", "s1", assets, references.get, cfg, True
            )
            verified += result.values["logo_verified"] == 1.0
            for group, ms in result.timings_ms.items():
                timings.setdefault(group, []).append(ms)
        print(
            f"\ndetector={detector}: logo template build {build_ms:.0f} ms; verified {verified}/{len(listings)}"
        )
        print(f"{'cue':<12}{'median ms':>10}{'p90 ms':>10}")
        cheap = np.sum([timings[g] for g in ("similarity", "quality", "seller", "packaging")], axis=0)
        rows = [*timings.items(), ("= cheap", cheap)]
        for group, values in rows:
            print(f"{group:<12}{np.median(values):>10.1f}{np.percentile(values, 90):>10.1f}")


if __name__ == "__main__":
    main()
