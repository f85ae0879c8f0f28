"""`brandsentry brands import` (wordmarks) and `brandsentry sellers import` (authorised sellers)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from brandsentry.errors import BrandsentryError


class AssetFileError(BrandsentryError, ValueError):
    """A brand-asset file that cannot be read (missing, wrong columns, wrong shape)."""


def register(commands: argparse._SubParsersAction) -> None:
    brands = commands.add_parser("brands", help="brand assets the cues read (wordmarks)")
    brand_actions = brands.add_subparsers(dest="action", required=True)
    brands_import = brand_actions.add_parser(
        "import",
        help="set brands' wordmarks from a CSV (brand, wordmark) or a synthetic world's brands.json",
    )
    brands_import.add_argument("file", type=Path)
    brands_import.set_defaults(handler=import_wordmarks)

    sellers = commands.add_parser("sellers", help="authorised sellers per brand; sellers across days")
    seller_actions = sellers.add_subparsers(dest="action", required=True)
    sellers_import = seller_actions.add_parser(
        "import", help="add authorised sellers from a CSV (brand, seller_id)"
    )
    sellers_import.add_argument("file", type=Path)
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
