"""What reviewers and brands said about scored listings: verdict imports, brand answers from the portal's
inbox, the training rows they make, how the two sides agree, a simulator.

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
from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.ledger import float_or_none, latest_scorings
from brandsentry.run_folder import ScoringResultsError, read_results

# Each verdict and the label training learns from it. "not_ours" (a brand: this listing is not a product of
# ours, the claimed brand is wrong) has no label: its cue features were computed against the claimed brand's
# references, so neither "counterfeit" nor "authentic" of that brand describes it; training leaves it out.
VERDICT_LABELS = {
    "confirmed_counterfeit": "counterfeit",
    "false_positive": "authentic",
    "authentic": "authentic",
    "not_ours": None,
}
# The brand inbox's answers and the verdicts they are stored as.
BRAND_ANSWERS = {"counterfeit": "confirmed_counterfeit", "authentic": "authentic", "not_ours": "not_ours"}
# Who gave a verdict: the marketplace's reviewers (CSV imports) or a brand representative (the portal inbox).
ORIGINS = ("reviewer", "brand")
VERDICT_COLUMNS = ("listing_id", "verdict", "reviewer", "note")
# Every cue column any configuration can produce (a run scored with some cues disabled has a subset).
CUE_COLUMNS = tuple(name for group in GROUPS for name in group.features)
_FEEDBACK_TABLE = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    listing_id TEXT NOT NULL,
    verdict TEXT NOT NULL
        CHECK (verdict IN ('confirmed_counterfeit', 'false_positive', 'authentic', 'not_ours')),
    label TEXT CHECK (label IN ('counterfeit', 'authentic')),
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
    features TEXT NOT NULL,
    origin TEXT NOT NULL DEFAULT 'reviewer' CHECK (origin IN ('reviewer', 'brand'))
);
"""
# The verdicts' table (catalog migration 4 made its first version; `ensure_feedback` upgrades that one).
# `reviewer` names who judged (a brand answer: the token, `brand:<name>#<key id>`); `source` the verdicts
# file, or "portal". A brand holds one answer per listing: a new one supersedes it (`record_brand_answer`).
FEEDBACK_TABLES = (
    _FEEDBACK_TABLE
    + """
CREATE UNIQUE INDEX IF NOT EXISTS feedback_listing_reviewer_verdict ON feedback(listing_id, reviewer, verdict);
CREATE UNIQUE INDEX IF NOT EXISTS feedback_brand_answer ON feedback(listing_id) WHERE origin = 'brand';
"""
)
_FIRST_COLUMNS = (
    "id, listing_id, verdict, label, reviewer, note, imported_at, source, run_dir, claimed_brand, "
    "claimed_product, seller_id, decision, score, model_version, expensive_cues, features"
)


def ensure_feedback(catalog: Catalog) -> Catalog:
    """The verdicts' table in `catalog`, upgrading a first-version one in one transaction.

    The first version had no `origin` and allowed neither "not_ours" nor a verdict without a label; SQLite
    cannot change a CHECK in place, so the table is rebuilt and every existing verdict becomes a reviewer's.
    """

    def columns() -> set[str]:
        return {row[1] for row in catalog.connection().execute("PRAGMA table_info(feedback)")}

    if columns() and "origin" not in columns():
        with catalog.write() as connection:
            if "origin" not in columns():  # another process may have upgraded it meanwhile
                connection.execute("ALTER TABLE feedback RENAME TO feedback_first_version")
                connection.execute("DROP INDEX IF EXISTS feedback_listing_reviewer_verdict")
                connection.execute(_FEEDBACK_TABLE.strip())
                connection.execute(
                    f"INSERT INTO feedback ({_FIRST_COLUMNS}, origin) "
                    f"SELECT {_FIRST_COLUMNS}, 'reviewer' FROM feedback_first_version"
                )
                connection.execute("DROP TABLE feedback_first_version")
    catalog.ensure_schema(FEEDBACK_TABLES)
    return catalog


def open_feedback(workspace: Workspace | str | Path) -> Catalog:
    """The workspace catalog with the verdicts' table current."""
    catalog = Catalog.open(workspace)
    try:
        return ensure_feedback(catalog)
    except BaseException:
        catalog.close()
        raise


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
        stored.append(_verdict_record(scoring, listing_id, row, path.name, now, cues, escalated, "reviewer"))
    with open_feedback(workspace) as catalog, catalog.write() as connection:
        for record in stored:
            inserted = _insert(connection, record, "ON CONFLICT (listing_id, reviewer, verdict) DO NOTHING")
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


def _verdict_record(
    scoring: Mapping, listing_id: str, verdict: Mapping[str, str], source: str, now: str, cues: str,
    escalated: bool, origin: str,
) -> dict:  # fmt: skip
    """One feedback row: the verdict (`verdict`, `reviewer`, `note`) with the scoring it judged."""
    return dict(
        listing_id=listing_id,
        verdict=verdict["verdict"],
        label=VERDICT_LABELS[verdict["verdict"]],
        reviewer=verdict["reviewer"],
        note=verdict["note"],
        imported_at=now,
        source=source,
        run_dir=scoring["run_dir"],
        claimed_brand=scoring["claimed_brand"],
        claimed_product=scoring["claimed_product"],
        seller_id=scoring["seller_id"],
        decision=scoring["decision"],
        score=float_or_none(scoring["score"]),
        model_version=scoring["model_version"],
        expensive_cues=int(escalated),
        features=cues,
        origin=origin,
    )


def _insert(connection, record: Mapping, conflict: str = "") -> int:
    columns = list(record)
    return connection.execute(
        f"INSERT INTO feedback ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) {conflict}",
        [record[c] for c in columns],
    ).rowcount


@dataclass(frozen=True)
class BrandAnswer:
    """A brand's current answer on one listing (the inbox shows it beside the listing)."""

    listing_id: str
    answer: str  # counterfeit | authentic | not_ours
    reviewer: str
    note: str
    answered_at: str
    run_dir: str


_ANSWER_OF_VERDICT = {verdict: answer for answer, verdict in BRAND_ANSWERS.items()}


def brand_verdict(scoring: Mapping, answer: str, reviewer: str, note: str = "") -> dict:
    """A brand's answer on `scoring` (a `scored_listings` row) as a feedback row, with the cue features read
    from that run's results. Nothing is written, so the caller can read before its write transaction."""
    if answer not in BRAND_ANSWERS:
        raise ValueError(f"unknown answer {answer!r} (expected one of {', '.join(BRAND_ANSWERS)})")
    listing_id = str(scoring["listing_id"])
    found, problems = _judged_features(pd.DataFrame([dict(scoring)]).set_index("listing_id"))
    if listing_id not in found:
        raise ScoringResultsError(
            problems.get(
                scoring["run_dir"], f"listing {listing_id} missing from scoring run {scoring['run_dir']}"
            )
        )
    cues, escalated = found[listing_id]
    verdict = {"verdict": BRAND_ANSWERS[answer], "reviewer": reviewer, "note": note.strip()}
    return _verdict_record(scoring, listing_id, verdict, "portal", utc_now(), cues, escalated, "brand")


def record_brand_answer(catalog: Catalog, verdict: Mapping) -> BrandAnswer:
    """Store a `brand_verdict` in one transaction (it joins the caller's, e.g. with an audit row).

    The brand's earlier answer on the listing, if any, is superseded: deleted in the same transaction, so
    the brand holds one answer per listing (the unique index `feedback_brand_answer` insists) and its id is
    newer than any reviewer verdict given before it. The caller checks that the listing is the brand's.
    """
    if verdict.get("origin") != "brand":
        raise ValueError(
            f"not a brand verdict (origin {verdict.get('origin')!r}): make it with brand_verdict"
        )
    with ensure_feedback(catalog).write() as connection:
        connection.execute(
            "DELETE FROM feedback WHERE listing_id = ? AND origin = 'brand'", (verdict["listing_id"],)
        )
        _insert(connection, verdict)
    answer = _ANSWER_OF_VERDICT[verdict["verdict"]]
    return BrandAnswer(
        verdict["listing_id"], answer, verdict["reviewer"], verdict["note"], verdict["imported_at"],
        verdict["run_dir"],
    )  # fmt: skip


def brand_answers(catalog: Catalog, listing_ids: Sequence[str]) -> dict[str, BrandAnswer]:
    """The brand answers held for these listings, by listing id."""
    rows = (
        ensure_feedback(catalog)
        .connection()
        .execute(
            "SELECT listing_id, verdict, reviewer, note, imported_at, run_dir FROM feedback "
            "WHERE origin = 'brand' AND listing_id IN (SELECT value FROM json_each(?))",
            (json.dumps([str(i) for i in listing_ids]),),
        )
    )
    return {row[0]: BrandAnswer(row[0], _ANSWER_OF_VERDICT[row[1]], *row[2:]) for row in rows.fetchall()}


def feedback_origins(sources: Mapping[str, float] | None) -> list[str]:
    """The origins whose verdicts training reads, from `data.feedback_sources` ({origin: 1 read, 0 left
    out}; an origin not named, or no map, is read). Fractional weights are refused: the classifiers take no
    sample weights yet."""
    sources = sources or {}
    for origin, weight in sources.items():
        if origin not in ORIGINS:
            raise ConfigError(
                f"data.feedback_sources names unknown origin {origin!r} (expected {', '.join(ORIGINS)})"
            )
        if weight not in (0, 1):
            raise ConfigError(
                f"data.feedback_sources.{origin} must be 0 (left out) or 1 (read), got {weight!r}: "
                "the classifiers take no sample weights yet"
            )
    return [origin for origin in ORIGINS if sources.get(origin, 1) == 1]


def feedback_training_rows(
    workspace: Workspace | str | Path, origins: Sequence[str] = ORIGINS
) -> pd.DataFrame:
    """Reviewed listings as training rows: the latest verdict per listing among `origins`, with its features.

    Columns: listing_id, claimed_brand, claimed_product, seller_id, label, verdict, reviewer, origin, score,
    model_version, escalated, then one column per cue (NaN where the cue had no value). `label` is None
    for "not_ours" (the caller leaves such listings out and counts them). A listing the cascade did not
    escalate has NaN logo and text cues ("skipped by the cascade"), and `escalated` False: a full model
    should learn from it only if it can tell "not computed" from "not found". Empty when nothing was reviewed.
    """
    for origin in origins:
        if origin not in ORIGINS:
            raise ValueError(f"unknown verdict origin {origin!r} (expected one of {', '.join(ORIGINS)})")
    query = """
        SELECT listing_id, claimed_brand, claimed_product, seller_id, label, verdict, reviewer, origin, score,
               model_version, expensive_cues AS escalated, features FROM (
            SELECT *, row_number() OVER (PARTITION BY listing_id ORDER BY id DESC) AS nth FROM feedback
            WHERE origin IN (SELECT value FROM json_each(?))
        ) WHERE nth = 1 ORDER BY listing_id"""
    with open_feedback(workspace) as catalog:
        rows = catalog.connection().execute(query, (json.dumps(list(origins)),)).fetchall()
    meta_columns = [
        "listing_id", "claimed_brand", "claimed_product", "seller_id", "label", "verdict", "reviewer", "origin",
        "score", "model_version", "escalated",
    ]  # fmt: skip
    frame = pd.DataFrame([row[:-1] for row in rows], columns=meta_columns)
    frame["escalated"] = frame["escalated"].astype(bool)
    cues = pd.DataFrame([json.loads(row[-1]) for row in rows], dtype=np.float64)
    if not len(cues.columns):
        cues = pd.DataFrame(index=frame.index)
    ordered = [c for c in CUE_COLUMNS if c in cues.columns]
    return pd.concat([frame, cues[ordered].astype(np.float64)], axis=1)


@dataclass(frozen=True)
class Agreement:
    """Brand answers against reviewer verdicts on the listings both judged (each side's latest verdict)."""

    both: int
    agree: int
    pairs: dict[tuple[str, str], int]  # (reviewer's answer, brand's answer) -> listings

    @property
    def rate(self) -> float:
        return self.agree / self.both if self.both else math.nan


def feedback_agreement(workspace: Workspace | str | Path) -> Agreement:
    """How often brand and reviewer agree, in the brand inbox's terms: a reviewer's "false_positive" and
    "authentic" are both "authentic"."""
    query = """
        SELECT origin, listing_id, verdict FROM (
            SELECT *, row_number() OVER (PARTITION BY listing_id, origin ORDER BY id DESC) AS nth FROM feedback
        ) WHERE nth = 1"""
    with open_feedback(workspace) as catalog:
        rows = catalog.connection().execute(query).fetchall()
    latest: dict[str, dict[str, str]] = {origin: {} for origin in ORIGINS}
    for origin, listing_id, verdict in rows:
        label = VERDICT_LABELS[verdict]
        latest[origin][listing_id] = label if label else verdict
    both = sorted(set(latest["reviewer"]) & set(latest["brand"]))
    pairs = Counter((latest["reviewer"][i], latest["brand"][i]) for i in both)
    return Agreement(len(both), sum(n for (r, b), n in pairs.items() if r == b), dict(pairs))


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
