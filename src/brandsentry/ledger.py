"""What was scored: every listing of each finished scoring run, with its decision, in the workspace database.

Rescans select a brand's recently scored listings from it, and verdict imports find the scoring a reviewer
judged (`latest_scorings`). It reads scoring results only as files (`run_folder`), so the review stage
(`record_scoring_run` after each run) and the verdicts can both call it without importing the scorer.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from brandsentry.catalog import Catalog
from brandsentry.config import Workspace
from brandsentry.run_folder import ScoringResultsError, read_results

_LEDGER_COLUMNS = (
    "listing_id", "claimed_brand", "claimed_product", "image_path", "seller_id", "scored_at", "decision",
    "score", "error", "model_version",
)  # fmt: skip
# The ledger's tables (catalogs made before the ledger owned them hold the same ones: catalog migration 4).
LEDGER_TABLES = """
CREATE TABLE IF NOT EXISTS scored_listings (
    run_dir TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    claimed_brand TEXT NOT NULL,
    claimed_product TEXT,
    image_path TEXT NOT NULL,
    seller_id TEXT,
    scored_at TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('flag', 'review', 'pass', 'error')),
    score REAL,
    error TEXT,
    model_version TEXT,
    PRIMARY KEY (run_dir, listing_id)
);
-- rescans select by brand as the scorer matches it (case and stray spaces ignored) and by time
CREATE INDEX IF NOT EXISTS scored_listings_brand_time ON scored_listings(lower(trim(claimed_brand)), scored_at);
CREATE INDEX IF NOT EXISTS scored_listings_listing ON scored_listings(listing_id, scored_at);
"""


def iso_utc(values) -> list[str]:
    """Timestamps (strings or datetimes) as ISO-8601 UTC strings, which sort and compare as text."""
    stamps = pd.to_datetime(pd.Series(values), utc=True, format="ISO8601")
    return [stamp.isoformat(timespec="microseconds") for stamp in stamps]


def _text_or_none(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def float_or_none(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


@dataclass(frozen=True)
class RecordedRun:
    """What `record_scoring_run` put in the ledger."""

    run_dir: Path
    listings: int
    decisions: dict[str, int]
    first_scored_at: str
    last_scored_at: str


def record_scoring_run(workspace: Workspace | str | Path, out_dir: str | Path) -> RecordedRun:
    """Add every listing of a finished scoring run to the catalog's `scored_listings` ledger.

    Idempotent: recording the same run again replaces its rows. Rescans and verdict imports read it.
    """
    out_dir = Path(out_dir).resolve()
    results = read_results(out_dir)
    for column in ("listing_id", "claimed_brand", "image_path", "decision", "score", "scored_at"):
        if column not in results.columns:
            raise ScoringResultsError(f"scoring run {out_dir} lacks result column {column!r}")
    scored_at = iso_utc(results["scored_at"])
    rows = []
    for record, stamp in zip(results.to_dict(orient="records"), scored_at, strict=True):
        rows.append(
            (
                str(out_dir),
                str(record["listing_id"]),
                str(record["claimed_brand"]),
                _text_or_none(record.get("claimed_product")),
                str(record["image_path"]),
                _text_or_none(record.get("seller_id")),
                stamp,
                str(record["decision"]),
                float_or_none(record["score"]),
                _text_or_none(record.get("error")),
                _text_or_none(record.get("model_version")),
            )
        )
    with Catalog.open(workspace, schemas=[LEDGER_TABLES]) as catalog, catalog.write() as connection:
        connection.execute("DELETE FROM scored_listings WHERE run_dir = ?", (str(out_dir),))
        connection.executemany(
            f"INSERT INTO scored_listings (run_dir, {', '.join(_LEDGER_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(_LEDGER_COLUMNS) + 1))})",
            rows,
        )
    return RecordedRun(
        run_dir=out_dir,
        listings=len(rows),
        decisions=dict(Counter(str(d) for d in results["decision"])),
        first_scored_at=min(scored_at),
        last_scored_at=max(scored_at),
    )


def latest_scorings(
    workspace: Workspace | str | Path,
    *,
    listing_ids: Sequence[str] | None = None,
    brand: str | None = None,
    since: str | None = None,
    exclude_errors: bool = False,
) -> pd.DataFrame:
    """The most recent ledger row of each listing (optionally: of these ids, of a brand, scored since a time).

    `brand` compares case-insensitively, as the scorer matches claimed brands; `since` is an ISO timestamp.
    """
    clauses, params = [], []
    if listing_ids is not None:
        clauses.append("listing_id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps([str(i) for i in listing_ids]))
    if brand is not None:
        clauses.append("lower(trim(claimed_brand)) = lower(trim(?))")
        params.append(brand)
    if since is not None:
        clauses.append("scored_at >= ?")
        params.append(since)
    if exclude_errors:
        clauses.append("decision != 'error'")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    query = f"""
        SELECT run_dir, {", ".join(_LEDGER_COLUMNS)} FROM (
            SELECT *, row_number() OVER (PARTITION BY listing_id ORDER BY scored_at DESC, run_dir DESC) AS nth
            FROM scored_listings {where}
        ) WHERE nth = 1 ORDER BY listing_id"""
    with Catalog.open(workspace, schemas=[LEDGER_TABLES]) as catalog:
        rows = catalog.connection().execute(query, params).fetchall()
    return pd.DataFrame(rows, columns=["run_dir", *_LEDGER_COLUMNS])
