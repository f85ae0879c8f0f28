"""`brandsentry sellers report`, `brandsentry case export|verify` and `brandsentry report`: the brand side."""

from __future__ import annotations

import argparse
from pathlib import Path

from brandsentry.cli._parser import add_command, add_group


def register(commands: argparse._SubParsersAction) -> None:
    """`case` and `report`; `sellers report` joins the `sellers` group of `cli.assets` (`add_sellers_report`)."""
    actions = add_group(
        commands,
        "case",
        help="evidence packages for a brand against a seller or seller cluster",
        description="Self-contained evidence packages for enforcement: every file hashed in its manifest.",
        examples=("case export --brand Kalvessa --seller s-0042 cases/s-0042.zip workspace=data/ws",),
    )
    export = add_command(
        actions,
        "export",
        help="write a self-contained, hashed evidence zip (images, references, cues, verdicts)",
        description="Writes OUT.zip: the brand's flagged listings (of one seller, one cluster, or all) with "
        "their images and matched references, cue values, scores, model version, timestamps, verdicts, "
        "summary.html and manifest.json (sha256 of every file). The same inputs give the same bytes.",
        examples=(
            "case export --brand Kalvessa --seller s-0042 cases/s-0042.zip workspace=data/ws",
            "case export --brand Kalvessa --cluster C-s-0042 --since 2026-11-01 cases/c.zip workspace=data/ws",
        ),
    )
    export.add_argument("--brand", required=True, help="the brand bringing the case (as listings claim it)")
    against = export.add_mutually_exclusive_group()
    against.add_argument("--seller", help="one seller id (default: every flagged listing of the brand)")
    against.add_argument("--cluster", help="a cluster id from `brandsentry sellers report` (C-<seller id>)")
    export.add_argument("--since", metavar="DATE", help="only listings scored since this day (YYYY-MM-DD)")
    export.add_argument("out", type=Path, metavar="OUT.zip", help="where the package is written")
    export.set_defaults(handler=case_export)
    verify = add_command(
        actions,
        "verify",
        help="re-hash a case zip against its manifest; fails naming a changed file",
        description="Re-hashes every file of a case package against its manifest.json; exits 2 naming a "
        "changed, missing or unlisted file.",
        examples=("case verify cases/s-0042.zip",),
    )
    verify.add_argument("package", type=Path, metavar="CASE.zip", help="a package `case export` wrote")
    verify.set_defaults(handler=case_verify)

    report = add_command(
        commands,
        "report",
        help="monthly transparency report per brand (HTML + JSON, MLflow experiment `reports`)",
        description="Listings scanned, flagged, confirmed and disputed, flag precision from verdicts and "
        "median time to verdict, per brand and overall, for one month: HTML with a plot, JSON, and a run "
        "of the MLflow experiment `reports`.",
        examples=("report --period 2026-11 workspace=data/ws", "report --period 2026-11 --brand Kalvessa"),
    )
    report.add_argument("--period", required=True, metavar="YYYY-MM", help="the month, e.g. 2026-11")
    report.add_argument("--brand", help="one brand only (default: every brand and overall)")
    report.set_defaults(handler=transparency_report)


def add_sellers_report(seller_actions: argparse._SubParsersAction) -> None:
    report = add_command(
        seller_actions,
        "report",
        help="rank sellers by repeat-infringer score and link sellers sharing photos (Parquet + HTML)",
        description="Per seller over the scored days: listings scanned, flagged, confirmed, a repeat-"
        "infringer score, and clusters of sellers whose listings share near-identical photos; written as "
        "Parquet + HTML under WORKSPACE/reports/sellers/ (docs/alliance.md).",
        examples=("sellers report workspace=data/ws", "sellers report --since 2026-11-01 workspace=data/ws"),
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
    from brandsentry.config import load_config

    load_config(overrides)  # read nowhere here, but a misspelt key is an error, never silently ignored
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
