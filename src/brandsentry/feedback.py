"""What reviewers said about scored listings: verdict imports, the training rows they make, a simulator.

It sits right after the scoring ledger (`ledger`) in the stage order and reads scoring results only as
files, so training (`feedback_training_rows`) can call it without importing anything downstream of itself.

A verdict is stored with the cue features of the scoring it judged (copied out of that run's Parquet), so
retraining on reviewed listings needs neither the images nor the run directory any more.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brandsentry.catalog import Catalog, utc_now
from brandsentry.config import Workspace
from brandsentry.cues.compute import GROUPS
from brandsentry.errors import BrandsentryError
from brandsentry.ledger import float_or_none, latest_scorings
from brandsentry.run_folder import ScoringResultsError, read_results

VERDICT_LABELS = {
    "confirmed_counterfeit": "counterfeit",
    "false_positive": "authentic",
    "authentic": "authentic",
}
VERDICT_COLUMNS = ("listing_id", "verdict", "reviewer", "note")
# Every cue column any configuration can produce (a run scored with some cues disabled has a subset).
CUE_COLUMNS = tuple(name for group in GROUPS for name in group.features)
# The verdicts' table (catalogs made before this module owned it hold the same one: catalog migration 4).
FEEDBACK_TABLES = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    listing_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('confirmed_counterfeit', 'false_positive', 'authentic')),
    label TEXT NOT NULL CHECK (label IN ('counterfeit', 'authentic')),
    reviewer TEXT NOT NULL,
    note TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    source TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    claimed_brand TEXT NOT NULL,
    claimed_product TEXT,
    seller_id TEXT,
    decision TEXT NOT NULL,
    score REAL,
    model_version TEXT,
    expensive_cues INTEGER NOT NULL CHECK (expensive_cues IN (0, 1)),
    features TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS feedback_listing_reviewer_verdict ON feedback(listing_id, reviewer, verdict);
"""


class VerdictFileError(BrandsentryError, ValueError):
    """A verdicts file (or a simulator's ground truth) that cannot be read at all: missing file or columns."""


@dataclass(frozen=True)
class RejectedVerdict:
    """A verdict row that was not stored, and why (the line number counts the header as line 1)."""

    line: int
    listing_id: str
    reason: str


@dataclass(frozen=True)
class VerdictImport:
    """Outcome of one `import_verdicts`: every input row is either stored, a duplicate, or rejected."""

    source: str
    rows: int
    imported: int
    duplicates: int
    rejected: tuple[RejectedVerdict, ...] = ()
    by_verdict: dict[str, int] = field(default_factory=dict)


def read_verdicts(path: str | Path) -> list[dict[str, str]]:
    """The rows of a verdicts CSV (listing_id, verdict, reviewer[, note]) as stripped strings."""
    path = Path(path)
    if not path.is_file():
        raise VerdictFileError(f"verdicts file {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in VERDICT_COLUMNS if c != "note" and c not in header]
        if missing:
            raise VerdictFileError(f"verdicts file {path} lacks column(s) {missing} (has {header})")
        reader.fieldnames = header
        return [{c: (row.get(c) or "").strip() for c in VERDICT_COLUMNS} for row in reader]


def _features_json(row: pd.Series, names: Sequence[str]) -> str:
    values = {}
    for name in names:
        value = float(row[name])
        values[name] = None if math.isnan(value) else value
    return json.dumps(values, allow_nan=False, sort_keys=True)


def _verdict_problem(row: Mapping[str, str]) -> str | None:
    if not row["listing_id"]:
        return "empty listing_id"
    if row["verdict"] not in VERDICT_LABELS:
        return f"unknown verdict {row['verdict']!r} (expected one of {', '.join(VERDICT_LABELS)})"
    if not row["reviewer"]:
        return "empty reviewer"
    return None


def _judged_features(scorings: pd.DataFrame) -> tuple[dict[str, tuple[str, bool]], dict[str, str]]:
    """({listing_id: (features JSON, escalated)}, {run_dir: why its results are unusable}) for the ledger rows."""
    found, problems = {}, {}
    for run_dir, group in scorings.groupby("run_dir"):
        try:
            results = read_results(run_dir)
        except (ScoringResultsError, OSError, ValueError) as exc:
            problems[run_dir] = f"results of scoring run {run_dir} unreadable: {exc}"
            continue
        names = [c for c in CUE_COLUMNS if c in results.columns]
        for _, result in results[results["listing_id"].astype(str).isin(group.index)].iterrows():
            escalated = bool(result.get("escalated", False))
            found[str(result["listing_id"])] = (_features_json(result, names), escalated)
    return found, problems


def import_verdicts(workspace: Workspace | str | Path, path: str | Path) -> VerdictImport:
    """Store reviewers' verdicts with the features of the scoring each one judged, in one transaction.

    The judged scoring is the listing's latest one that did not fail. A row that cannot be stored (unknown
    verdict, listing never scored here, results gone) is rejected with its reason; the others are kept.
    Importing the same verdict again (listing, reviewer, verdict) is a duplicate, not a second vote.
    """
    path = Path(path)
    verdict_rows = read_verdicts(path)
    rejected: list[RejectedVerdict] = []
    valid: list[tuple[int, dict[str, str]]] = []
    for line, row in enumerate(verdict_rows, start=2):
        problem = _verdict_problem(row)
        if problem:
            rejected.append(RejectedVerdict(line, row["listing_id"], problem))
        else:
            valid.append((line, row))
    ids = [row["listing_id"] for _, row in valid]
    scorings = latest_scorings(workspace, listing_ids=ids, exclude_errors=True).set_index("listing_id")
    features, run_problems = _judged_features(scorings)
    now, stored, duplicates, by_verdict = utc_now(), [], 0, Counter()
    for line, row in valid:
        listing_id = row["listing_id"]
        if listing_id not in scorings.index:
            reason = "listing was never scored without error in this workspace (no features to learn from)"
            rejected.append(RejectedVerdict(line, listing_id, reason))
            continue
        scoring = scorings.loc[listing_id]
        if scoring["run_dir"] in run_problems or listing_id not in features:
            reason = run_problems.get(
                scoring["run_dir"], f"listing missing from the results of scoring run {scoring['run_dir']}"
            )
            rejected.append(RejectedVerdict(line, listing_id, reason))
            continue
        cues, escalated = features[listing_id]
        stored.append(
            dict(
                listing_id=listing_id,
                verdict=row["verdict"],
                label=VERDICT_LABELS[row["verdict"]],
                reviewer=row["reviewer"],
                note=row["note"],
                imported_at=now,
                source=path.name,
                run_dir=scoring["run_dir"],
                claimed_brand=scoring["claimed_brand"],
                claimed_product=scoring["claimed_product"],
                seller_id=scoring["seller_id"],
                decision=scoring["decision"],
                score=float_or_none(scoring["score"]),
                model_version=scoring["model_version"],
                expensive_cues=int(escalated),
                features=cues,
            )
        )
    columns = list(stored[0]) if stored else []
    with Catalog.open(workspace, schemas=[FEEDBACK_TABLES]) as catalog, catalog.write() as connection:
        for record in stored:
            inserted = connection.execute(
                f"INSERT INTO feedback ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                "ON CONFLICT (listing_id, reviewer, verdict) DO NOTHING",
                [record[c] for c in columns],
            ).rowcount
            if inserted:
                by_verdict[record["verdict"]] += 1
            else:
                duplicates += 1
    return VerdictImport(
        source=str(path),
        rows=len(verdict_rows),
        imported=sum(by_verdict.values()),
        duplicates=duplicates,
        rejected=tuple(sorted(rejected, key=lambda r: r.line)),
        by_verdict=dict(by_verdict),
    )


def feedback_training_rows(workspace: Workspace | str | Path) -> pd.DataFrame:
    """Reviewed listings as labelled training rows: the latest verdict per listing, with its stored features.

    Columns: listing_id, claimed_brand, claimed_product, seller_id, label, verdict, reviewer, score,
    model_version, escalated, then one column per cue (NaN where the cue had no value). A listing the
    cascade did not escalate has NaN logo and text cues ("skipped by the cascade"), and `escalated`
    False: a full model should learn from it only if it can tell "not computed" from "not found".
    Empty when nothing was reviewed.
    """
    query = """
        SELECT listing_id, claimed_brand, claimed_product, seller_id, label, verdict, reviewer, score,
               model_version, expensive_cues AS escalated, features FROM (
            SELECT *, row_number() OVER (PARTITION BY listing_id ORDER BY id DESC) AS nth FROM feedback
        ) WHERE nth = 1 ORDER BY listing_id"""
    with Catalog.open(workspace, schemas=[FEEDBACK_TABLES]) as catalog:
        rows = catalog.connection().execute(query).fetchall()
    meta_columns = [
        "listing_id", "claimed_brand", "claimed_product", "seller_id", "label", "verdict", "reviewer", "score",
        "model_version", "escalated",
    ]  # fmt: skip
    frame = pd.DataFrame([row[:-1] for row in rows], columns=meta_columns)
    frame["escalated"] = frame["escalated"].astype(bool)
    cues = pd.DataFrame([json.loads(row[-1]) for row in rows], dtype=np.float64)
    if not len(cues.columns):
        cues = pd.DataFrame(index=frame.index)
    ordered = [c for c in CUE_COLUMNS if c in cues.columns]
    return pd.concat([frame, cues[ordered].astype(np.float64)], axis=1)


# ---- simulated reviewers (demo and tests) ----------------------------------------------------------------


def simulate_verdicts(
    results: pd.DataFrame,
    truth: pd.DataFrame,
    top: int,
    error_rate: float = 0.0,
    seed: int = 0,
    reviewer: str = "simulated-reviewer",
) -> pd.DataFrame:
    """Verdicts a reviewer would give on the `top` highest-scored flag/review listings, from ground truth.

    A counterfeit is confirmed; an authentic listing is a false positive when it was flagged, authentic when
    it was sent to review. With `error_rate` > 0 that share of answers (chosen at random) is the wrong one.
    Listings absent from `truth` cannot be answered and are left out.
    """
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate!r}")
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top!r}")
    for column in ("listing_id", "label"):
        if column not in truth.columns:
            raise VerdictFileError(f"ground truth lacks column {column!r}")
    labels = dict(zip(truth["listing_id"].astype(str), truth["label"].astype(str).str.strip(), strict=True))
    queue = results[results["decision"].isin(["flag", "review"])].sort_values(
        "score", ascending=False, kind="stable"
    )
    queue = queue[queue["listing_id"].astype(str).isin(labels)].head(top)
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(queue)) < error_rate
    rows = []
    for (_, row), mistaken in zip(queue.iterrows(), wrong, strict=True):
        counterfeit = labels[str(row["listing_id"])] == "counterfeit"
        if mistaken:
            counterfeit = not counterfeit
        if counterfeit:
            verdict = "confirmed_counterfeit"
        else:
            verdict = "false_positive" if row["decision"] == "flag" else "authentic"
        note = "simulated reviewer error" if mistaken else "simulated from ground truth"
        rows.append((str(row["listing_id"]), verdict, reviewer, note))
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))
