"""The scored listings and verdicts of a time window, as the catalog's ledger and feedback tables hold them.

Every alliance output starts here, so that "scanned", "flagged" and "confirmed" mean the same in the sellers
report, a case package and the transparency report.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from brandsentry.catalog import Catalog
from brandsentry.config import Workspace
from brandsentry.errors import BrandsentryError
from brandsentry.feedback import FEEDBACK_TABLES
from brandsentry.ledger import latest_scorings


class AllianceError(BrandsentryError, ValueError):
    """A request the workspace cannot answer: a bad date or period, an unknown brand, seller or cluster."""


def parse_since(value: str | None) -> str | None:
    """A `--since YYYY-MM-DD` as the ISO UTC timestamp the ledger compares as text (None: no lower bound)."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise AllianceError(
            f"--since {value!r} is not a date (expected YYYY-MM-DD, e.g. 2026-11-01)"
        ) from None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat(timespec="microseconds")


def window_listings(
    workspace: Workspace | Path,
    since: str | None = None,
    until: str | None = None,
    brand: str | None = None,
) -> pd.DataFrame:
    """The latest scoring of each listing scored in [since, until) that did not fail, with its verdict.

    Error rows are left out: an undecodable image is not a judgement about its seller. Raises when nothing
    was scored in the window, since every number downstream would be an empty zero.
    """
    scored = latest_scorings(workspace, since=since, exclude_errors=True)
    if until is not None:
        scored = scored[scored["scored_at"] < until]
    window = f" since {since[:10]}" if since else ""
    window += f" before {until[:10]}" if until else ""
    if scored.empty:
        raise AllianceError(
            f"no scoring runs in the window{window or ' (the ledger is empty)'}: run `brandsentry score` first"
        )
    if brand is not None:
        brands = sorted(set(scored["claimed_brand"].str.strip()))
        matched = scored["claimed_brand"].str.strip().str.lower() == brand.strip().lower()
        if not matched.any():
            raise AllianceError(
                f"unknown brand {brand!r}: no listing claiming it was scored{window} "
                f"(brands scored: {', '.join(brands)})"
            )
        scored = scored[matched]
    verdicts = latest_verdicts(workspace)
    merged = scored.merge(verdicts, on="listing_id", how="left")
    return merged.sort_values(["scored_at", "listing_id"], ignore_index=True)


def latest_verdicts(workspace: Workspace | Path) -> pd.DataFrame:
    """The latest reviewer verdict of each listing: listing_id, verdict, label, reviewer, verdict_at."""
    query = """
        SELECT listing_id, verdict, label, reviewer, imported_at FROM (
            SELECT *, row_number() OVER (PARTITION BY listing_id ORDER BY id DESC) AS nth FROM feedback
        ) WHERE nth = 1"""
    with Catalog.open(workspace, schemas=[FEEDBACK_TABLES]) as catalog:
        rows = catalog.connection().execute(query).fetchall()
    return pd.DataFrame(rows, columns=["listing_id", "verdict", "label", "reviewer", "verdict_at"])
