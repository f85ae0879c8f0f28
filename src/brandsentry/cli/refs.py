"""`brandsentry refs import|add|list|withdraw`: brand reference photos in the workspace catalog."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from brandsentry.cli._parser import add_command, add_group

INTAKE_EXIT_CODES = """\
exit status:
  0  every photo was accepted or is already held (duplicate)
  1  at least one photo was rejected (the accepted ones are kept; the report says why each was rejected)
  2  nothing was done: unreadable manifest, missing columns, bad configuration

Operator imports are approved at once (ingest.auto_approve=true); pass ingest.auto_approve=false to leave
them pending."""

WITHDRAW_EXIT_CODES = """\
exit status:
  0  every id was withdrawn
  1  at least one id was not (unknown, or already withdrawn); the others are withdrawn

Withdrawn references leave the search index at its next update."""


def register(subparsers) -> None:
    actions = add_group(
        subparsers,
        "refs",
        help="import, add, list and withdraw brand reference photos",
        description="Brand reference photos in the workspace catalog (workspace=DIR). Accepted ones are "
        "indexed by `brandsentry index build|update`.",
        examples=("refs import data/demo/references.csv workspace=data/ws", "refs list --brand Acme"),
    )
    importer = add_command(
        actions,
        "import",
        help="ingest every row of a reference manifest",
        description="Ingest a manifest (CSV or Parquet) with columns image_path, brand, product, view "
        "(product, logo or packaging); relative image paths resolve against the manifest's folder.",
        examples=(
            "refs import data/demo/references.csv workspace=data/ws",
            "refs import refs.parquet --submitted-by acme-legal ingest.auto_approve=false",
        ),
        epilog=INTAKE_EXIT_CODES,
    )
    importer.add_argument("manifest", type=Path, metavar="MANIFEST", help="REFS.csv or REFS.parquet")
    _add_submitted_by(importer)
    importer.set_defaults(handler=import_command)

    adder = add_command(
        actions,
        "add",
        help="ingest photo files of one brand product",
        description="Ingest FILEs as references of one brand product and view.",
        examples=(
            "refs add front.jpg side.jpg --brand Acme --product Widget",
            "refs add logo.png --brand Acme --product Widget --view logo workspace=data/ws",
        ),
        epilog=INTAKE_EXIT_CODES,
    )
    adder.add_argument("files", nargs="+", type=Path, metavar="FILE", help="image files (JPEG, PNG, WebP)")
    adder.add_argument("--brand", required=True)
    adder.add_argument("--product", required=True)
    adder.add_argument("--view", default="product", help="product, logo or packaging (default: product)")
    _add_submitted_by(adder)
    adder.set_defaults(handler=add_files_command)

    lister = add_command(
        actions,
        "list",
        help="list references",
        description="List the catalog's references (id, status, brand, product, view, size, provenance), "
        "filtered by the flags given.",
        examples=("refs list workspace=data/ws", "refs list --brand Acme --status pending | head"),
    )
    lister.add_argument("--brand", help="only this brand's references")
    lister.add_argument("--status", help="pending, approved, indexed or withdrawn")
    lister.add_argument("--view", help="product, logo or packaging")
    lister.set_defaults(handler=list_command)

    withdrawer = add_command(
        actions,
        "withdraw",
        help="withdraw references by id",
        description="Withdraw references by ID (as `refs list` shows them).",
        examples=("refs withdraw 12 13 --reason 'brand request'",),
        epilog=WITHDRAW_EXIT_CODES,
    )
    withdrawer.add_argument("ids", nargs="+", type=int, metavar="ID", help="reference ids")
    withdrawer.add_argument("--reason", help="recorded with the withdrawal")
    withdrawer.set_defaults(handler=withdraw_command)


def _add_submitted_by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--submitted-by",
        default=f"cli:{os.environ.get('USER', 'unknown')}",
        help="provenance recorded with each reference (default: cli:$USER)",
    )


def _open(overrides: list[str]):
    """Config, catalog and image store of the workspace (created when missing)."""
    from brandsentry.catalog import Catalog
    from brandsentry.config import Workspace, load_config
    from brandsentry.ingest import ImageStore

    cfg = load_config(overrides)
    workspace = Workspace.from_config(cfg).ensure()
    return cfg, Catalog.open(workspace), ImageStore(workspace.image_store)


def _intake_exit(report) -> int:
    print(report.format())
    return 1 if report.rejected else 0


def import_command(args, overrides: list[str]) -> int:
    from brandsentry.ingest import IngestSettings, import_references

    cfg, catalog, store = _open(overrides)
    with catalog:
        report = import_references(
            catalog,
            store,
            args.manifest,
            submitted_by=args.submitted_by,
            **IngestSettings.from_config(cfg).as_kwargs(),
        )
    return _intake_exit(report)


def add_files_command(args, overrides: list[str]) -> int:
    from brandsentry.ingest import IngestSettings, ingest_files

    cfg, catalog, store = _open(overrides)
    with catalog:
        report = ingest_files(
            catalog,
            store,
            args.files,
            brand=args.brand,
            product=args.product,
            view=args.view,
            submitted_by=args.submitted_by,
            **IngestSettings.from_config(cfg).as_kwargs(),
        )
    return _intake_exit(report)


def list_command(args, overrides: list[str]) -> int:
    _, catalog, _ = _open(overrides)
    with catalog:
        references = catalog.list_references(brand=args.brand, status=args.status, view=args.view)
    header = (
        "id",
        "status",
        "brand",
        "product",
        "view",
        "size",
        "submitted_by",
        "submitted_at",
        "source / reason",
    )
    rows = [
        (
            str(ref.id),
            ref.status + ("*" if ref.status == "withdrawn" and ref.in_index else ""),
            ref.brand,
            ref.product,
            ref.view,
            f"{ref.width}x{ref.height}",
            ref.submitted_by,
            ref.submitted_at[:19],
            " / ".join(part for part in (ref.source_name, ref.reason) if part),
        )
        for ref in references
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
    counts: dict[str, int] = {}
    for ref in references:
        counts[ref.status] = counts.get(ref.status, 0) + 1
    summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    print(f"{len(references)} reference(s)" + (f": {summary}" if summary else ""))
    if any(ref.status == "withdrawn" and ref.in_index for ref in references):
        print("* withdrawn but still in the index until its next update")
    return 0


def withdraw_command(args, overrides: list[str]) -> int:
    from brandsentry.catalog import CatalogError

    _, catalog, _ = _open(overrides)
    failed = 0
    with catalog:
        for ref_id in args.ids:
            try:
                (ref,) = catalog.set_status([ref_id], "withdrawn", reason=args.reason)
            except CatalogError as exc:
                failed += 1
                print(f"  not withdrawn  {ref_id}: {exc}")
                continue
            note = "; leaves the index at its next update" if ref.in_index else ""
            print(f"  withdrawn      {ref.id} ({ref.brand} / {ref.product} / {ref.view}){note}")
    print(f"{len(args.ids) - failed} withdrawn, {failed} not withdrawn")
    return 1 if failed else 0
