"""`brandsentry sellers report`, `brandsentry case export|verify` and `brandsentry report`: the brand side."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """`case` and `report`; `sellers report` joins the `sellers` group of `cli.assets` (`add_sellers_report`)."""


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
