"""`brandsentry brands import` (wordmarks) and `brandsentry sellers import` (authorised sellers)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from brandsentry.cli._parser import add_command, add_group
from brandsentry.errors import BrandsentryError


class AssetFileError(BrandsentryError, ValueError):
    """A brand-asset file that cannot be read (missing, wrong columns, wrong shape)."""


def register(commands: argparse._SubParsersAction) -> None:
    brand_actions = add_group(
        commands,
        "brands",
        help="brand assets the cues read (wordmarks)",
        description="Brand assets in the workspace catalog that the cues read: wordmarks for the text cue.",
        examples=("brands import data/demo/brands.json workspace=data/ws",),
    )
    brands_import = add_command(
        brand_actions,
        "import",
        help="set brands' wordmarks from a CSV (brand, wordmark) or a synthetic world's brands.json",
        description="Set the wordmarks the text cue looks for in listing photos (OCR), replacing each "
        "named brand's previous ones. FILE is a CSV with columns brand, wordmark (one row per wordmark; a "
        'brand may have several) or a synthetic world\'s brands.json ({"brands": [{"name", "wordmark"}]}).',
        examples=(
            "brands import wordmarks.csv workspace=data/ws",
            "brands import data/demo/brands.json workspace=data/ws",
        ),
    )
    brands_import.add_argument("file", type=Path, metavar="FILE", help="WORDMARKS.csv or brands.json")
    brands_import.set_defaults(handler=import_wordmarks)

    seller_actions = add_group(
        commands,
        "sellers",
        help="authorised sellers per brand; sellers across days",
        description="Sellers each brand has authorised, which the seller cue reads, and the report of sellers across days.",
        examples=("sellers import data/demo/authorized_sellers.csv workspace=data/ws",),
    )
    sellers_import = add_command(
        seller_actions,
        "import",
        help="add authorised sellers from a CSV (brand, seller_id)",
        description="Add authorised sellers from a CSV with columns brand, seller_id (one row per pair, "
        "matched against the listings' seller_id); pairs already held are kept once.",
        examples=("sellers import data/demo/authorized_sellers.csv workspace=data/ws",),
    )
    sellers_import.add_argument("file", type=Path, metavar="FILE", help="SELLERS.csv")
    sellers_import.set_defaults(handler=import_sellers)
    from brandsentry.cli.alliance import add_sellers_report

    add_sellers_report(seller_actions)


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise AssetFileError(f"{path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise AssetFileError(f"{path} lacks column(s) {missing}")
        return list(reader)


def read_wordmarks(path: Path) -> dict[str, list[str]]:
    """brand → wordmarks, from CSV rows or from brands.json (`{"brands": [{"name", "wordmark"}]}`)."""
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise AssetFileError(f"{path} does not exist")
        try:
            brands = json.loads(path.read_text())["brands"]
            return {b["name"]: [b["wordmark"]] for b in brands}
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise AssetFileError(
                f"{path} is not a brands.json with name and wordmark per brand: {exc}"
            ) from None
    result: dict[str, list[str]] = {}
    for row in _read_csv(path, ("brand", "wordmark")):
        result.setdefault(row["brand"].strip(), []).append(row["wordmark"])
    return result


def import_wordmarks(args, overrides: list[str]) -> int:
    from brandsentry.catalog import Catalog
    from brandsentry.config import Workspace, load_config

    workspace = Workspace.from_config(load_config(overrides)).ensure()
    wordmarks = read_wordmarks(args.file)
    with Catalog.open(workspace) as catalog:
        for brand, marks in sorted(wordmarks.items()):
            catalog.set_wordmarks(brand, marks)
            print(f"{brand}: {', '.join(marks)}")
    print(f"wordmarks set for {len(wordmarks)} brand(s)")
    return 0


def import_sellers(args, overrides: list[str]) -> int:
    from brandsentry.catalog import Catalog
    from brandsentry.config import Workspace, load_config

    workspace = Workspace.from_config(load_config(overrides)).ensure()
    rows = _read_csv(args.file, ("brand", "seller_id"))
    with Catalog.open(workspace) as catalog:
        added = catalog.add_authorized_sellers((row["brand"], row["seller_id"]) for row in rows)
        brands = catalog.authorized_sellers()
    print(
        f"{added} new authorised seller(s) from {len(rows)} row(s); "
        + ", ".join(f"{brand}: {len(sellers)}" for brand, sellers in sorted(brands.items()))
    )
    return 0
