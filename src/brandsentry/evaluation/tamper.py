"""The tampered-logo benchmark: real package photos whose logo region is altered the way knock-offs are.

grocery230 gives three augmentations of each of 230 real packages with the logo region as a polygon.
One augmentation of each package becomes its references (the photo as view=product, its logo crops as
view=logo); the others become listings. An authentic listing is an untouched photo under photometric
changes (crop, light, JPEG); a counterfeit is the same photo with its logo regions tampered first, then
the same photometric changes, so the two classes differ only in the logo. A tamper that barely changes
the pixels (hue rotation of a grey logo, mirroring a symmetric one) would be a counterfeit label on an
authentic-looking photo: such a photo gets another kind instead, and the skip is counted.

Everything is drawn from `numpy.random.default_rng([seed, ...])` keyed by package and photo, so one seed
gives the same bytes whatever else changes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from brandsentry.errors import ConfigError
from brandsentry.evaluation.datasets import PackagePhoto, read_grocery230
from brandsentry.files import atomic_write_text
from brandsentry.settings import load_settings

TAMPER_KINDS = (
    "hue_rotated",
    "mirrored",
    "retyped_wordmark",
    "replaced_logo",
    "blurred",
    "low_quality_print",
    "shifted",
)
SPLITS = ("train", "validation", "test")
WORDMARK_FONT = "DejaVuSans-Bold.ttf"
# Letters a one-letter misprint tends to swap in (look-alikes first); anything else gets a random letter.
LOOKALIKES = {
    "a": "oe", "b": "dh", "c": "eo", "d": "bo", "e": "ca", "f": "t", "g": "q", "h": "bn", "i": "lj",
    "j": "i", "k": "x", "l": "i", "m": "n", "n": "mh", "o": "ac", "p": "q", "q": "g", "r": "n",
    "s": "z", "t": "f", "u": "vn", "v": "uy", "w": "v", "x": "k", "y": "v", "z": "s",
}  # fmt: skip
BENCHMARK_FILE = "benchmark.json"


@dataclass(frozen=True)
class Photometric:
    """Ranges of the capture changes every listing goes through (authentic and counterfeit alike)."""

    crop: float  # up to this share of the width/height cut from each side (logos stay inside)
    brightness: float
    contrast: float
    gamma: float
    white_balance: float  # per-channel gain spread
    jpeg_quality: tuple[int, int]  # (lowest, highest)


@dataclass(frozen=True)
class BenchmarkSettings:
    """How the benchmark is drawn (`eval.benchmark` of configs/eval/tampered_logo.yaml); its fingerprint
    decides whether a generated benchmark can be reused."""

    seed: int
    kinds: tuple[str, ...]
    authentic_per_photo: int
    counterfeits_per_photo: int
    split: dict[str, float]  # split -> fraction of the packages, in this order
    max_packages: int | None
    min_change: float  # mean |difference| (0-255) inside the logo regions a tamper must reach
    logo_margin: float  # logo reference crops extend the polygon's box by this share per side
    ocr_upscale: int  # logo crops are enlarged this much before OCR (small print reads badly)
    ocr_min_score: float
    ocr_threads: int
    photometric: Photometric

    def __post_init__(self):
        unknown = sorted(set(self.kinds) - set(TAMPER_KINDS))
        if unknown or not self.kinds:
            raise ConfigError(f"unknown tamper kind(s) {unknown}; choose from {list(TAMPER_KINDS)}")
        bad_splits = sorted(set(self.split) - set(SPLITS))
        if bad_splits or not any(fraction > 0 for fraction in self.split.values()):
            raise ConfigError(f"benchmark split {dict(self.split)} must give fractions to {list(SPLITS)}")
        if self.counterfeits_per_photo > len(self.kinds):
            raise ConfigError(
                f"counterfeits_per_photo={self.counterfeits_per_photo} exceeds the {len(self.kinds)} kinds"
            )
        if self.authentic_per_photo < 1 or self.counterfeits_per_photo < 1:
            raise ConfigError("authentic_per_photo and counterfeits_per_photo must be >= 1")

    @classmethod
    def from_config(cls, benchmark_cfg) -> BenchmarkSettings:
        """From the `eval.benchmark` section (kinds, split fractions, photometric ranges, ...)."""
        return load_settings(cls, benchmark_cfg, "eval.benchmark")

    def record(self) -> dict:
        """The settings as benchmark.json records them (the split as [name, fraction] pairs, in order)."""
        return {**asdict(self), "split": [[name, fraction] for name, fraction in self.split.items()]}

    def fingerprint(self) -> str:
        data = self.record()
        data.pop("ocr_threads")  # speed only
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Benchmark:
    """A generated benchmark: manifests for `refs import`, `brands import` and training, and its counts."""

    root: Path
    references: Path
    listings: Path
    wordmarks: Path
    summary: dict


# ---- regions ---------------------------------------------------------------------------------------------


def box_of(polygon: np.ndarray, shape: tuple[int, ...], margin: float = 0.0) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) around `polygon`, grown by `margin` x its size per side, inside the image."""
    height, width = shape[:2]
    (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
    pad_x, pad_y = margin * (x1 - x0), margin * (y1 - y0)
    box = (
        int(max(0, math.floor(x0 - pad_x))),
        int(max(0, math.floor(y0 - pad_y))),
        int(min(width, math.ceil(x1 + pad_x))),
        int(min(height, math.ceil(y1 + pad_y))),
    )
    return box if box[2] > box[0] and box[3] > box[1] else (0, 0, 0, 0)


def region_mask(shape: tuple[int, ...], polygons, feather: float = 0.0) -> np.ndarray:
    """Float (H, W) coverage of the polygons in [0, 1], its edge softened over ~`feather` px."""
    mask = np.zeros(shape[:2], np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
    soft = mask.astype(np.float32) / 255.0
    if feather > 0:
        soft = np.minimum(soft, cv2.GaussianBlur(soft, (0, 0), feather))  # fade inwards, never outside
    return soft


def composite(base: np.ndarray, layer: np.ndarray, mask: np.ndarray) -> np.ndarray:
    alpha = mask[..., None]
    return np.clip(base * (1 - alpha) + layer * alpha + 0.5, 0, 255).astype(np.uint8)


def _two_colours(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(background, ink) of a logo crop: 2-means seeded by the border median and the pixel farthest from it."""
    pixels = crop.reshape(-1, 3).astype(np.float32)
    border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]).astype(np.float32)
    background = np.median(border, axis=0)
    ink = pixels[np.argmax(np.linalg.norm(pixels - background, axis=1))]
    for _ in range(6):
        to_ink = np.linalg.norm(pixels - ink, axis=1) < np.linalg.norm(pixels - background, axis=1)
        if to_ink.all() or not to_ink.any():
            break
        background, ink = pixels[~to_ink].mean(axis=0), pixels[to_ink].mean(axis=0)
    return background, ink


def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / WORDMARK_FONT
    return ImageFont.truetype(str(path), max(6, int(size)))


def render_wordmark(text: str, width: int, height: int, ink, background) -> np.ndarray:
    """`text` typed in a plain bold sans, as large as fits a (height, width) box; vertical boxes read upwards."""
    vertical = height > 1.3 * width
    if vertical:
        width, height = height, width
    canvas = Image.new("RGB", (width, height), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(canvas)
    size = max(6, int(height * 0.9))
    while size > 6:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=_font(size))
        if right - left <= 0.92 * width and bottom - top <= 0.8 * height:
            break
        size -= 1
    draw.text((width / 2, height / 2), text, font=_font(size), fill=tuple(int(v) for v in ink), anchor="mm")
    array = np.asarray(canvas)
    return np.ascontiguousarray(np.rot90(array)) if vertical else array


def one_letter_changed(text: str, rng: np.random.Generator) -> str:
    """`text` with one letter replaced by another (a look-alike when there is one), case kept."""
    positions = [i for i, char in enumerate(text) if char.isascii() and char.isalpha()]
    if not positions:
        raise ValueError(f"no letter to change in {text!r}")
    i = positions[int(rng.integers(len(positions)))]
    lower = text[i].lower()
    choices = LOOKALIKES.get(lower) or "".join(c for c in "abcdefghijklmnopqrstuvwxyz" if c != lower)
    new = choices[int(rng.integers(len(choices)))]
    return text[:i] + (new.upper() if text[i].isupper() else new) + text[i + 1 :]


# ---- tampers: (photo, logo polygons, rng, inputs) -> tampered photo, or None when the kind cannot apply -------


@dataclass(frozen=True, eq=False)
class TamperInputs:
    """What some tampers need beyond the photo: the package's wordmark and another package's logo."""

    wordmark: str | None = None
    donor_logo: np.ndarray | None = None


def hue_rotated(rgb, polygons, rng, inputs):
    shift = int(rng.integers(30, 151))  # OpenCV hue units (2 degrees): 60-300 degrees round the wheel
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 180).astype(np.uint8)
    return composite(rgb, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), region_mask(rgb.shape, polygons, 1.0))


def mirrored(rgb, polygons, rng, inputs):
    layer = rgb.copy()
    for polygon in polygons:
        x0, y0, x1, y1 = box_of(polygon, rgb.shape)
        layer[y0:y1, x0:x1] = rgb[y0:y1, x0:x1, :][:, ::-1]
    return composite(rgb, layer, region_mask(rgb.shape, polygons, 1.0))


def retyped_wordmark(rgb, polygons, rng, inputs):
    if not inputs.wordmark:
        return None
    text = one_letter_changed(inputs.wordmark, rng)
    layer = rgb.copy()
    for polygon in polygons:
        x0, y0, x1, y1 = box_of(polygon, rgb.shape)
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        background, ink = _two_colours(rgb[y0:y1, x0:x1])
        layer[y0:y1, x0:x1] = render_wordmark(text, x1 - x0, y1 - y0, ink, background)
    return composite(rgb, layer, region_mask(rgb.shape, polygons, 1.0))


def replaced_logo(rgb, polygons, rng, inputs):
    if inputs.donor_logo is None:
        return None
    layer = rgb.copy()
    for polygon in polygons:
        x0, y0, x1, y1 = box_of(polygon, rgb.shape)
        if x1 <= x0 or y1 <= y0:
            continue
        layer[y0:y1, x0:x1] = cv2.resize(inputs.donor_logo, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    return composite(rgb, layer, region_mask(rgb.shape, polygons, 1.0))


def blurred(rgb, polygons, rng, inputs):
    layer = rgb.copy()
    for polygon in polygons:
        x0, y0, x1, y1 = box_of(polygon, rgb.shape, margin=0.5)
        side = min(x1 - x0, y1 - y0)
        sigma = max(1.2, float(rng.uniform(0.04, 0.08)) * side)
        layer[y0:y1, x0:x1] = cv2.GaussianBlur(rgb[y0:y1, x0:x1], (0, 0), sigma)
    return composite(rgb, layer, region_mask(rgb.shape, polygons, 1.0))


def low_quality_print(rgb, polygons, rng, inputs):
    """A cheap reprint: lost resolution, few ink levels, washed-out colour and heavy compression."""
    layer = rgb.copy()
    for polygon in polygons:
        x0, y0, x1, y1 = box_of(polygon, rgb.shape, margin=0.2)
        crop = rgb[y0:y1, x0:x1]
        h, w = crop.shape[:2]
        factor = float(rng.uniform(2.5, 4.0))
        small = cv2.resize(
            crop, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA
        )
        rough = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        grey = rough.mean(axis=2, keepdims=True)
        rough = grey + (rough - grey) * float(rng.uniform(0.55, 0.8))
        levels = int(rng.integers(4, 7))
        rough = np.round(rough / 255 * (levels - 1)) / (levels - 1) * 255
        buffer = io.BytesIO()
        Image.fromarray(np.clip(rough, 0, 255).astype(np.uint8)).save(
            buffer, "JPEG", quality=int(rng.integers(8, 20))
        )
        layer[y0:y1, x0:x1] = np.asarray(Image.open(buffer).convert("RGB"))
    return composite(rgb, layer, region_mask(rgb.shape, polygons, 1.0))


def shifted(rgb, polygons, rng, inputs):
    """The logo printed off its place: the old place filled from its surroundings, the logo pasted elsewhere."""
    height, width = rgb.shape[:2]
    hole = (region_mask(rgb.shape, polygons) > 0).astype(np.uint8) * 255
    out = cv2.inpaint(rgb, cv2.dilate(hole, np.ones((3, 3), np.uint8)), 5, cv2.INPAINT_TELEA)
    angle = float(rng.uniform(0, 2 * math.pi))
    for polygon in polygons:
        x0, y0, x1, y1 = box_of(polygon, rgb.shape)
        if x1 <= x0 or y1 <= y0:
            continue
        distance = float(rng.uniform(0.35, 0.7))
        dx = int(round(math.cos(angle) * distance * (x1 - x0)))
        dy = int(round(math.sin(angle) * distance * (y1 - y0)))
        dx = int(np.clip(dx, -x0, width - x1))
        dy = int(np.clip(dy, -y0, height - y1))
        moved = np.zeros_like(rgb)
        moved[y0 + dy : y1 + dy, x0 + dx : x1 + dx] = rgb[y0:y1, x0:x1]
        out = composite(out, moved, region_mask(rgb.shape, [polygon + [dx, dy]], 1.0))
    return out


TAMPERS = {
    "hue_rotated": hue_rotated,
    "mirrored": mirrored,
    "retyped_wordmark": retyped_wordmark,
    "replaced_logo": replaced_logo,
    "blurred": blurred,
    "low_quality_print": low_quality_print,
    "shifted": shifted,
}


def tamper_change(original: np.ndarray, tampered: np.ndarray, polygons) -> float:
    """Mean absolute pixel change (0-255) over the logo regions and wherever else the photo changed."""
    diff = np.abs(original.astype(np.int16) - tampered.astype(np.int16)).mean(axis=2)
    region = (region_mask(original.shape, polygons) > 0) | (diff > 0)
    return float(diff[region].mean()) if region.any() else 0.0


# ---- capture ---------------------------------------------------------------------------------------------


def photometric(
    rgb: np.ndarray, keep: tuple[int, int, int, int], rng: np.random.Generator, params: Photometric
) -> tuple[np.ndarray, int]:
    """(re-captured photo, JPEG quality): a crop that keeps `keep` (x0, y0, x1, y1) whole, light and white balance."""
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = keep
    left = int(min(rng.uniform(0, params.crop) * width, x0))
    top = int(min(rng.uniform(0, params.crop) * height, y0))
    right = width - int(min(rng.uniform(0, params.crop) * width, width - x1))
    bottom = height - int(min(rng.uniform(0, params.crop) * height, height - y1))
    image = rgb[top:bottom, left:right].astype(np.float32) / 255.0
    gains = 1.0 + rng.uniform(-params.white_balance, params.white_balance, 3)
    contrast = 1.0 + rng.uniform(-params.contrast, params.contrast)
    brightness = 1.0 + rng.uniform(-params.brightness, params.brightness)
    gamma = math.exp(rng.uniform(-math.log1p(params.gamma), math.log1p(params.gamma)))
    image = np.clip(((image * gains - 0.5) * contrast + 0.5) * brightness, 0.0, 1.0) ** gamma
    quality = int(rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1))
    return (image * 255 + 0.5).astype(np.uint8), quality


# ---- the benchmark ---------------------------------------------------------------------------------------


def assign_splits(packages: list[str], split: Mapping[str, float], seed: int) -> dict[str, str]:
    """package -> split, by a seeded permutation cut in proportion to the fractions (a package never straddles)."""
    order = np.random.default_rng([seed, 0x5917]).permutation(len(packages))
    total = sum(split.values())
    assigned, start = {}, 0
    for number, (name, fraction) in enumerate(split.items()):
        end = len(packages) if number == len(split) - 1 else start + round(len(packages) * fraction / total)
        for i in order[start:end]:
            assigned[packages[i]] = name
        start = end
    return assigned


def read_wordmark(crop: np.ndarray, settings: BenchmarkSettings) -> str | None:
    """The longest confidently read text (>= 3 letters or digits) of an enlarged logo crop, or None."""
    from brandsentry.cues.text import ocr_engine

    scale = settings.ocr_upscale
    large = cv2.resize(crop, (crop.shape[1] * scale, crop.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    result, _ = ocr_engine(settings.ocr_threads)(cv2.cvtColor(large, cv2.COLOR_RGB2BGR))
    best = None
    for _, text, score in result or []:
        text = text.strip()
        letters = sum(char.isalnum() for char in text)
        has_letter = any(char.isascii() and char.isalpha() for char in text)
        confident = float(score) >= settings.ocr_min_score and letters >= 3 and has_letter
        if confident and (best is None or letters > sum(char.isalnum() for char in best)):
            best = text
    return best


def _largest(polygons) -> np.ndarray:
    return max(polygons, key=lambda p: (p.max(axis=0) - p.min(axis=0)).prod())


def _decode(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def load_benchmark(out_dir: Path, data_dir: Path, settings: BenchmarkSettings) -> Benchmark | None:
    """The benchmark already generated in `out_dir` from the same data and settings, else None."""
    marker = Path(out_dir) / BENCHMARK_FILE
    if not marker.is_file():
        return None
    summary = json.loads(marker.read_text())
    same_data = summary.get("data_dir") == str(Path(data_dir).resolve())
    if summary.get("fingerprint") != settings.fingerprint() or not same_data:
        return None
    root = Path(out_dir)
    return Benchmark(root, root / "references.csv", root / "listings.csv", root / "wordmarks.csv", summary)


@dataclass(frozen=True, eq=False)
class _ReferenceSide:
    """Per package: the photo that became its references, its OCR'd wordmark and its largest logo crop."""

    rows: list[dict]
    photo: dict[str, PackagePhoto]
    wordmark: dict[str, str | None]
    logo: dict[str, np.ndarray]


def _references(
    packages: list[str],
    by_package: dict[str, list[PackagePhoto]],
    brand_of: dict[str, str],
    out_dir: Path,
    settings: BenchmarkSettings,
    progress: bool,
) -> _ReferenceSide:
    """One augmentation per package as its references: the photo (view=product) and its logo crops (view=logo)."""
    from tqdm import tqdm

    side = _ReferenceSide([], {}, {}, {})
    for number, package in enumerate(tqdm(packages, desc="references", unit="pkg", disable=not progress)):
        photos, brand = by_package[package], brand_of[package]
        chosen = photos[int(np.random.default_rng([settings.seed, number, 0xBEF]).integers(len(photos)))]
        side.photo[package] = chosen
        rgb = _decode(chosen.path)
        side.rows.append(
            {"image_path": str(chosen.path.resolve()), "brand": brand, "product": brand, "view": "product"}
        )
        for i, polygon in enumerate(chosen.logos):
            x0, y0, x1, y1 = box_of(polygon, rgb.shape, settings.logo_margin)
            if x1 > x0 and y1 > y0:
                name = f"refs/{brand}-logo{i}.png"
                Image.fromarray(rgb[y0:y1, x0:x1]).save(out_dir / name)
                side.rows.append({"image_path": name, "brand": brand, "product": brand, "view": "logo"})
        x0, y0, x1, y1 = box_of(_largest(chosen.logos), rgb.shape)
        side.logo[package] = rgb[y0:y1, x0:x1].copy()
        side.wordmark[package] = read_wordmark(side.logo[package], settings)
    return side


def _counterfeits(
    rgb: np.ndarray,
    photo: PackagePhoto,
    rng: np.random.Generator,
    inputs: TamperInputs,
    settings: BenchmarkSettings,
    kind_counts: Counter,
    not_applicable: Counter,
) -> list[tuple[str, np.ndarray]]:
    """`counterfeits_per_photo` tampered versions of different kinds, the least used kinds first.

    A kind that cannot apply, or changes the logo too little to be a visible tamper, is counted and passed over.
    """
    tie_break = {kind: rank for rank, kind in enumerate(rng.permutation(settings.kinds))}
    made = []
    for kind in sorted(settings.kinds, key=lambda k: (kind_counts[k], tie_break[k])):
        if len(made) == settings.counterfeits_per_photo:
            break
        tampered = TAMPERS[kind](rgb, photo.logos, rng, inputs)
        if tampered is None or tamper_change(rgb, tampered, photo.logos) < settings.min_change:
            not_applicable[kind] += 1
            continue
        kind_counts[kind] += 1
        made.append((kind, tampered))
    return made


def build_benchmark(
    data_dir: Path, out_dir: Path, settings: BenchmarkSettings, progress: bool = False
) -> Benchmark:
    """Generate (or reuse, when `out_dir` holds one of the same data and settings) the benchmark.

    Brands are named `g230-NNN` after the package's position in sorted order (the package name is kept in
    the `package` column): raw file stems make poor metric names.
    """
    from tqdm import tqdm

    existing = load_benchmark(out_dir, data_dir, settings)
    if existing is not None:
        return existing
    out_dir = Path(out_dir)
    (out_dir / BENCHMARK_FILE).unlink(missing_ok=True)
    for folder in ("refs", "listings"):  # no file of an earlier benchmark may linger
        shutil.rmtree(out_dir / folder, ignore_errors=True)
        (out_dir / folder).mkdir(parents=True)

    by_package: dict[str, list[PackagePhoto]] = {}
    for photo in read_grocery230(data_dir):
        by_package.setdefault(photo.package, []).append(photo)
    packages = sorted(by_package)
    if settings.max_packages is not None:
        order = np.random.default_rng([settings.seed, 0x51CE]).permutation(len(packages))
        packages = [packages[i] for i in sorted(order[: settings.max_packages])]
    single = [p for p in packages if len(by_package[p]) < 2]
    if single:
        raise ConfigError(
            f"{len(single)} package(s) have one photo only (need a reference and a listing): {single[:5]}"
        )
    brand_of = {package: f"g230-{number:03d}" for number, package in enumerate(packages)}
    split_of = assign_splits(packages, settings.split, settings.seed)
    refs = _references(packages, by_package, brand_of, out_dir, settings, progress)

    kind_counts: Counter = Counter()
    not_applicable: Counter = Counter()
    listing_rows = []
    for number, package in enumerate(tqdm(packages, desc="listings", unit="pkg", disable=not progress)):
        brand, split, wordmark = brand_of[package], split_of[package], refs.wordmark[package]
        # a replaced logo comes from a package with another wordmark (the same brand's other packs look alike)
        donors = [
            p
            for p in packages
            if p != package and (not wordmark or (refs.wordmark[p] or "").casefold() != wordmark.casefold())
        ]
        for photo_number, photo in enumerate(p for p in by_package[package] if p is not refs.photo[package]):
            rng = np.random.default_rng([settings.seed, number, photo_number])
            rgb = _decode(photo.path)
            donor = refs.logo[donors[int(rng.integers(len(donors)))]] if donors else None
            variants = [("authentic", "", rgb)] * settings.authentic_per_photo
            made = _counterfeits(
                rgb, photo, rng, TamperInputs(wordmark, donor), settings, kind_counts, not_applicable
            )
            variants += [("counterfeit", kind, image) for kind, image in made]
            keep = _union_box(photo.logos, rgb.shape)
            for variant, (label, kind, image) in enumerate(variants):
                captured, quality = photometric(image, keep, rng, settings.photometric)
                listing_id = f"{brand}-{photo_number}-{variant}"
                name = f"listings/{listing_id}.jpg"
                Image.fromarray(captured).save(out_dir / name, "JPEG", quality=quality)
                listing_rows.append({
                    "listing_id": listing_id, "image_path": name, "claimed_brand": brand,
                    "claimed_product": brand, "label": label, "counterfeit_kind": kind, "split": split,
                    "package": package, "source_photo": photo.path.name, "jpeg_quality": quality,
                })  # fmt: skip

    wordmark_rows = [
        {"brand": brand_of[p], "wordmark": refs.wordmark[p]} for p in packages if refs.wordmark[p]
    ]
    references, listings, wordmarks = (out_dir / f"{n}.csv" for n in ("references", "listings", "wordmarks"))
    _write_csv(references, ["image_path", "brand", "product", "view"], refs.rows)
    _write_csv(listings, list(listing_rows[0]), listing_rows)
    _write_csv(wordmarks, ["brand", "wordmark"], wordmark_rows)
    per_split = Counter((row["split"], row["counterfeit_kind"] or "authentic") for row in listing_rows)
    summary = {
        "fingerprint": settings.fingerprint(),
        "data_dir": str(Path(data_dir).resolve()),
        "settings": settings.record(),
        "packages": len(packages),
        "packages_per_split": dict(Counter(split_of.values())),
        "references": len(refs.rows),
        "logo_references": sum(row["view"] == "logo" for row in refs.rows),
        "wordmarks": len(wordmark_rows),
        "listings": len(listing_rows),
        "listings_per_split_and_kind": {f"{s}/{k}": n for (s, k), n in sorted(per_split.items())},
        "counterfeits_per_kind": dict(sorted(kind_counts.items())),
        "tamper_not_applicable": dict(sorted(not_applicable.items())),
    }
    summary = json.loads(json.dumps(summary))  # as it reads back from the file (lists, not tuples)
    atomic_write_text(out_dir / BENCHMARK_FILE, json.dumps(summary, indent=2, sort_keys=True))
    return Benchmark(out_dir, references, listings, wordmarks, summary)


def _union_box(polygons, shape) -> tuple[int, int, int, int]:
    points = np.concatenate(list(polygons))
    return box_of(points, shape)
