"""`brandsentry sellers report`, `brandsentry case export|verify` and `brandsentry report`: the brand side."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """`case` and `report`; `sellers report` joins the `sellers` group of `cli.assets` (`add_sellers_report`)."""
    case = commands.add_parser(
        "case", help="evidence packages for a brand against a seller or seller cluster"
    )
    actions = case.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="write a self-contained, hashed evidence zip (images, references, cues, verdicts)"
    )
    export.add_argument("--brand", required=True, help="the brand bringing the case (as listings claim it)")
    against = export.add_mutually_exclusive_group()
    against.add_argument("--seller", help="one seller id (default: every flagged listing of the brand)")
    against.add_argument("--cluster", help="a cluster id from `brandsentry sellers report` (C-<seller id>)")
    export.add_argument("--since", metavar="DATE", help="only listings scored since this day (YYYY-MM-DD)")
    export.add_argument("out", type=Path, metavar="OUT.zip", help="where the package is written")
    export.set_defaults(handler=case_export)
    verify = actions.add_parser(
        "verify", help="re-hash a case zip against its manifest; fails naming a changed file"
    )
    verify.add_argument("package", type=Path, metavar="CASE.zip", help="a package `case export` wrote")
    verify.set_defaults(handler=case_verify)

    report = commands.add_parser(
        "report", help="monthly transparency report per brand (HTML + JSON, MLflow experiment `reports`)"
    )
    report.add_argument("--period", required=True, metavar="YYYY-MM", help="the month, e.g. 2026-11")
    report.add_argument("--brand", help="one brand only (default: every brand and overall)")
    report.set_defaults(handler=transparency_report)


def add_sellers_report(seller_actions: argparse._SubParsersAction) -> None:
    report = seller_actions.add_parser(
        "report",
        help="rank sellers by repeat-infringer score and link sellers sharing photos (Parquet + HTML)",
    )
    report.add_argument("--since", metavar="DATE", help="only listings scored since this day (YYYY-MM-DD)")
    report.set_defaults(handler=sellers_report)


def _context(overrides: list[str]):
    from brandsentry.alliance import AllianceSettings
    from brandsentry.config import Workspace, load_config

    cfg = load_config(overrides)
    return cfg, Workspace.from_config(cfg), AllianceSettings.from_config(cfg)


def sellers_report(args, overrides: list[str]) -> int:
    from brandsentry.alliance.sellers import CLUSTERS_FILE, PAGE_FILE, SELLERS_FILE, write_sellers_report

    _, workspace, settings = _context(overrides)
    out = write_sellers_report(workspace, settings, args.since)
    print(f"sellers report: {out / PAGE_FILE}")
    print(f"tables: {out / SELLERS_FILE}, {out / CLUSTERS_FILE}")
    return 0


def case_export(args, overrides: list[str]) -> int:
    from brandsentry.alliance.case import export_case

    _, workspace, settings = _context(overrides)
    files = export_case(
        workspace,
        settings,
        args.out,
        brand=args.brand,
        seller=args.seller,
        cluster=args.cluster,
        since=args.since,
    )
    listings = sum(1 for name in files if name.startswith("listings/") and name.endswith(".json"))
    print(f"case package: {args.out} ({listings} listing(s), {len(files)} file(s))")
    return 0


def case_verify(args, overrides: list[str]) -> int:
    from brandsentry.alliance.case import verify_case

    checked = verify_case(args.package)
    print(f"{args.package}: all {checked} file(s) match the manifest")
    return 0


def transparency_report(args, overrides: list[str]) -> int:
    from brandsentry.alliance.report import write_report

    cfg, workspace, settings = _context(overrides)
    report = write_report(cfg, workspace, settings, args.period, args.brand)
    overall = report.numbers["overall"]
    precision = overall["flag_precision"]
    print(
        f"{args.period}: {overall['scanned']} scanned, {overall['flagged']} flagged, {overall['confirmed']} "
        f"confirmed, {overall['disputed']} disputed, flag precision "
        + ("n/a (no verdicts on flags)" if precision is None else f"{precision:.3f}")
    )
    print(
        f"report: {report.folder / 'report.html'} (and report.json); MLflow run {report.run_id} (experiment reports)"
    )
    return 0
