"""A contact sheet of one day's listings: a clean reference, authentic listings and every counterfeit kind.

Column j shows the same claimed product in every row wherever the day has one, so a reader compares an
authentic photo with each kind of counterfeit of that product side by side.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw, UnidentifiedImageError

from brandsentry.synth.brands import COUNTERFEIT_KINDS, TEXT_BOLD_FONT, TEXT_FONT
from brandsentry.synth.render import font
from brandsentry.synth.world import SynthWorldError, write_bytes

LABEL_WIDTH = 190
HEADER = 34


def contact_sheet(
    out_dir: str | Path, day: int = 1, dest: str | Path | None = None, columns: int = 5, thumb: int = 150
) -> Path:
    """Write a PNG sheet (palette-quantised, to stay small) for day `day` of the world in `out_dir`."""
    out = Path(out_dir)
    manifest = out / f"listings_day{day}.csv"
    if not manifest.is_file():
        raise SynthWorldError(f"no listing manifest {manifest}: generate day {day} first")
    with manifest.open(newline="") as stream:
        listings = list(csv.DictReader(stream))
    with (out / "references.csv").open(newline="") as stream:
        references = [r for r in csv.DictReader(stream) if r["view"] == "product"]

    counts: dict[str, int] = {}
    for row in listings:
        if row["label"] == "authentic":
            counts[row["claimed_product"]] = counts.get(row["claimed_product"], 0) + 1
    products = sorted(counts, key=lambda p: (-counts[p], p))[:columns]
    rows: list[tuple[str, list[str]]] = [
        ("reference (studio)", _pick(references, "product", products, columns, lambda r: True)),
        (
            "authentic",
            _pick(listings, "claimed_product", products, columns, lambda r: r["label"] == "authentic"),
        ),
    ]
    for kind in (*COUNTERFEIT_KINDS, "not_a_product"):
        rows.append(
            (
                kind,
                _pick(
                    listings,
                    "claimed_product",
                    products,
                    columns,
                    lambda r, k=kind: r["counterfeit_kind"] == k,
                ),
            )
        )

    width = LABEL_WIDTH + columns * (thumb + 6) + 6
    height = HEADER + len(rows) * (thumb + 6) + 6
    sheet = Image.new("RGB", (width, height), (245, 245, 242))
    draw = ImageDraw.Draw(sheet)
    record = out / "world.json"
    seed = json.loads(record.read_text()).get("seed", "?") if record.is_file() else "?"
    title = f"brandsentry synthetic marketplace - seed {seed}, day {day}: one claimed product per column"
    draw.text((8, 9), title, font=font(TEXT_BOLD_FONT, 15), fill=(30, 30, 30))
    for r, (name, paths) in enumerate(rows):
        top = HEADER + r * (thumb + 6) + 6
        draw.text(
            (8, top + thumb // 2),
            name.replace("_", " "),
            font=font(TEXT_FONT, 15),
            fill=(30, 30, 30),
            anchor="lm",
        )
        for c, path in enumerate(paths):
            left = LABEL_WIDTH + c * (thumb + 6) + 6
            sheet.paste(_thumbnail(out / path, thumb), (left, top))
    target = Path(dest) if dest else out / f"contact_sheet_day{day}.png"
    buffer = io.BytesIO()
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        buffer, format="PNG", optimize=True
    )
    write_bytes(target, buffer.getvalue())
    return target


def _pick(rows: list[dict], product_key: str, products: list[str], columns: int, keep) -> list[str]:
    """Up to `columns` image paths: column j the j-th product where one matches, else any other match."""
    matching = [r for r in rows if keep(r)]
    chosen, used = [], set()
    for product in products:
        match = next((r for r in matching if r[product_key] == product and r["image_path"] not in used), None)
        if match:
            chosen.append(match["image_path"])
            used.add(match["image_path"])
    chosen += [r["image_path"] for r in matching if r["image_path"] not in used][: columns - len(chosen)]
    return chosen[:columns]


def _thumbnail(path: Path, size: int) -> Image.Image:
    tile = Image.new("RGB", (size, size), (225, 225, 222))
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size * 2, size * 2))
            picture = image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        ImageDraw.Draw(tile).text(
            (size / 2, size / 2), "undecodable", font=font(TEXT_FONT, 13), fill=(90, 90, 90), anchor="mm"
        )
        return tile
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    tile.paste(picture, ((size - picture.width) // 2, (size - picture.height) // 2))
    return tile
