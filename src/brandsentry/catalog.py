"""The reference catalog: brands, products and their reference photos in SQLite, with a validated status life cycle.

The catalog is the owner of the workspace database (`database.Database`: WAL, per-thread connections,
`BEGIN IMMEDIATE` writes); its own tables are versioned by `MIGRATIONS`, other stages keep theirs in the same
file through `ensure_schema` (the portal's in `portal.tables`, the scoring ledger's in `ledger`, the
verdicts' in `feedback`).

Reference ids are SQLite `AUTOINCREMENT` keys: never reused, so they are safe as FAISS ids for good.
The table is named `"references"` (a SQL keyword: quote it in raw SQL).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brandsentry.config import Workspace
from brandsentry.database import Database, DatabaseError, split_statements

VIEWS = ("product", "logo", "packaging")
STATUSES = ("pending", "approved", "indexed", "withdrawn")
# pending -> withdrawn is a rejection; withdrawn is final (a re-submission is a new reference).
TRANSITIONS = {
    "pending": frozenset({"approved", "withdrawn"}),
    "approved": frozenset({"indexed", "withdrawn"}),
    "indexed": frozenset({"withdrawn"}),
    "withdrawn": frozenset(),
}
# Statuses whose vectors belong in the index (and that count when deduplicating new photos).
LIVE_STATUSES = ("pending", "approved", "indexed")

# The catalog's schema migrations, applied in order; PRAGMA user_version records how many ran. To change the
# schema, append one SQL script here (never edit a released one).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE brands (
        name TEXT PRIMARY KEY,
        created_at TEXT NOT NULL
    );
    CREATE TABLE products (
        brand TEXT NOT NULL REFERENCES brands(name),
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (brand, name)
    );
    CREATE TABLE "references" (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        brand TEXT NOT NULL,
        product TEXT NOT NULL,
        view TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        phash TEXT NOT NULL,
        stored_path TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'indexed', 'withdrawn')),
        in_index INTEGER NOT NULL DEFAULT 0 CHECK (in_index IN (0, 1)),
        submitted_by TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        status_changed_at TEXT NOT NULL,
        reason TEXT,
        source_name TEXT,
        FOREIGN KEY (brand, product) REFERENCES products(brand, name)
    );
    -- the same bytes can be held only once among references that are not withdrawn
    CREATE UNIQUE INDEX references_live_sha256 ON "references"(sha256) WHERE status != 'withdrawn';
    CREATE INDEX references_brand_status ON "references"(brand, status);
    CREATE INDEX references_status ON "references"(status, in_index);
    CREATE TABLE catalog_state (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        change_seq INTEGER NOT NULL
    );
    INSERT INTO catalog_state (singleton, change_seq) VALUES (1, 0);
    """,
    # 2 created the brand portal's tables, which `portal.tables` owns now (`ensure_schema`): a step left empty
    # so that the version numbers of existing catalogs stay what they are.
    "",
    # 3: brand assets the cues read: known wordmarks (text cue) and authorised sellers (seller cue).
    """
    CREATE TABLE brand_wordmarks (
        brand TEXT NOT NULL,
        wordmark TEXT NOT NULL,
        PRIMARY KEY (brand, wordmark)
    );
    CREATE TABLE authorized_sellers (
        brand TEXT NOT NULL,
        seller_id TEXT NOT NULL,
        added_at TEXT NOT NULL,
        PRIMARY KEY (brand, seller_id)
    );
    """,
    # 4 created the scoring ledger's and the verdicts' tables, which `ledger` and `feedback` own now.
    "",
]

_COLUMNS = (
    "id, brand, product, view, sha256, phash, stored_path, width, height, status, in_index, "
    "submitted_by, submitted_at, status_changed_at, reason, source_name"
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PHASH = re.compile(r"^[0-9a-f]{16}$")


class CatalogError(DatabaseError):
    """A catalog operation that the catalog's state or the request makes impossible (unknown id, bad transition)."""


@dataclass(frozen=True)
class Reference:
    """One reference photo as the catalog holds it. Timestamps are ISO-8601 UTC strings."""

    id: int
    brand: str
    product: str
    view: str
    sha256: str
    phash: str
    stored_path: str  # relative to the image store root
    width: int
    height: int
    status: str
    in_index: bool  # whether the FAISS index may still hold this id (withdrawn + in_index = to remove)
    submitted_by: str
    submitted_at: str
    status_changed_at: str
    reason: str | None
    source_name: str | None  # the submitted file name, informational only


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def hamming(a_hex: str, b_hex: str) -> int:
    """Hamming distance between two 64-bit hex perceptual hashes."""
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


def _as_statuses(status: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if status is None:
        return None
    statuses = (status,) if isinstance(status, str) else tuple(status)
    for value in statuses:
        if value not in STATUSES:
            raise CatalogError(f"unknown status {value!r} (expected one of {', '.join(STATUSES)})")
    return statuses


def _ids_json(ids: Iterable[int]) -> str:
    """Ids as one JSON parameter (`json_each`), so any number of them fits in one query."""
    return json.dumps([int(i) for i in np.asarray(list(ids), dtype=np.int64).ravel()])


def _row_to_reference(row: tuple) -> Reference:
    values = list(row)
    values[10] = bool(values[10])  # in_index, stored as 0/1
    return Reference(*values)


class Catalog(Database):
    """The SQLite reference catalog; see `database` for the concurrency model."""

    error = CatalogError

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        super().__init__(path, busy_timeout_s)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(
        cls, workspace: Workspace | str | Path, busy_timeout_s: float = 30.0, schemas: Iterable[str] = ()
    ) -> Catalog:
        """The catalog of a `Workspace` (or of a workspace directory), with the tables of `schemas` (other
        stages' `CREATE ... IF NOT EXISTS` scripts) created where missing."""
        if not isinstance(workspace, Workspace):
            workspace = Workspace(Path(workspace))
        catalog = cls(workspace.catalog_path, busy_timeout_s=busy_timeout_s)
        try:
            for script in schemas:
                catalog.ensure_schema(script)
        except BaseException:
            catalog.close()
            raise
        return catalog

    def __enter__(self) -> Catalog:
        return self

    def _migrate(self) -> None:
        if self.schema_version == len(MIGRATIONS):
            return
        with self.write() as connection:
            applied = connection.execute("PRAGMA user_version").fetchone()[0]
            if applied > len(MIGRATIONS):
                raise CatalogError(
                    f"catalog {self.path} has schema version {applied}, newer than this code knows "
                    f"({len(MIGRATIONS)}): upgrade brandsentry"
                )
            for version, script in enumerate(MIGRATIONS[applied:], start=applied + 1):
                for statement in split_statements(script):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {version}")

    @property
    def schema_version(self) -> int:
        return self.connection().execute("PRAGMA user_version").fetchone()[0]

    def _bump(self, connection: sqlite3.Connection) -> None:
        connection.execute("UPDATE catalog_state SET change_seq = change_seq + 1 WHERE singleton = 1")

    # -- writes -----------------------------------------------------------------------------------

    def add_reference(
        self,
        *,
        brand: str,
        product: str,
        view: str,
        sha256: str,
        phash: str,
        stored_path: str,
        width: int,
        height: int,
        submitted_by: str,
        status: str = "pending",
        source_name: str | None = None,
    ) -> Reference:
        """Record a new reference (creating its brand and product rows as needed)."""
        for label, value in (("brand", brand), ("product", product), ("submitted_by", submitted_by)):
            if not value or not value.strip():
                raise CatalogError(f"{label} must not be empty (got {value!r})")
        if view not in VIEWS:
            raise CatalogError(f"unknown view {view!r} (expected one of {', '.join(VIEWS)})")
        if status not in ("pending", "approved"):
            raise CatalogError(f"a new reference starts pending or approved, not {status!r}")
        if not _SHA256.match(sha256):
            raise CatalogError(f"sha256 must be 64 lowercase hex digits, got {sha256!r}")
        if not _PHASH.match(phash):
            raise CatalogError(f"phash must be 16 lowercase hex digits, got {phash!r}")
        now = utc_now()
        with self.write() as connection:
            connection.execute("INSERT OR IGNORE INTO brands (name, created_at) VALUES (?, ?)", (brand, now))
            connection.execute(
                "INSERT OR IGNORE INTO products (brand, name, created_at) VALUES (?, ?, ?)",
                (brand, product, now),
            )
            try:
                row = connection.execute(
                    f"""INSERT INTO "references" (brand, product, view, sha256, phash, stored_path, width, height,
                        status, submitted_by, submitted_at, status_changed_at, source_name)
                        VALUES (:brand, :product, :view, :sha256, :phash, :stored_path, :width, :height,
                        :status, :submitted_by, :now, :now, :source_name) RETURNING {_COLUMNS}""",
                    dict(
                        brand=brand,
                        product=product,
                        view=view,
                        sha256=sha256,
                        phash=phash,
                        stored_path=stored_path,
                        width=int(width),
                        height=int(height),
                        status=status,
                        submitted_by=submitted_by,
                        now=now,
                        source_name=source_name,
                    ),
                ).fetchone()
            except sqlite3.IntegrityError as exc:
                held = self.find_by_sha256(sha256)
                detail = f"already held as reference {held.id}" if held else str(exc)
                raise CatalogError(f"cannot add reference with sha256 {sha256}: {detail}") from None
            self._bump(connection)
        return _row_to_reference(row)

    def set_status(
        self,
        ids: Iterable[int],
        status: str,
        reason: str | None = None,
        expected: str | Iterable[str] | None = None,
    ) -> list[Reference]:
        """Move every id to `status` in one transaction, or none of them.

        Raises `CatalogError` for an unknown id, a transition the life cycle forbids, or a current status
        outside `expected` (the status the caller read earlier: guards against a concurrent change).
        """
        ids = [int(i) for i in ids]
        if not ids:
            return []
        if status not in STATUSES:
            raise CatalogError(f"unknown status {status!r} (expected one of {', '.join(STATUSES)})")
        expected_statuses = _as_statuses(expected)
        with self.write() as connection:
            current = self._require(ids)
            for ref_id in ids:
                held = current[ref_id].status
                if expected_statuses is not None and held not in expected_statuses:
                    raise CatalogError(
                        f"reference {ref_id} is {held!r}, expected {' or '.join(expected_statuses)!r}"
                    )
                if status not in TRANSITIONS[held]:
                    allowed = ", ".join(sorted(TRANSITIONS[held])) or "nothing"
                    raise CatalogError(
                        f"reference {ref_id}: cannot go from {held!r} to {status!r} (allowed: {allowed})"
                    )
            in_index = "1" if status == "indexed" else "in_index"
            updated = connection.execute(
                f"""UPDATE "references" SET status = ?, reason = ?, status_changed_at = ?, in_index = {in_index}
                    WHERE id IN (SELECT value FROM json_each(?)) RETURNING {_COLUMNS}""",
                (status, reason, utc_now(), _ids_json(ids)),
            ).fetchall()
            self._bump(connection)
        return sorted((_row_to_reference(row) for row in updated), key=lambda ref: ref.id)

    def mark_indexed(self, ids: Iterable[int]) -> None:
        """The index now holds these ids: approved ones become indexed.

        A reference withdrawn while the index was being built stays withdrawn but is flagged `in_index`,
        so `to_remove()` hands it back to the index instead of leaving a withdrawn vector searchable.
        Already indexed ids are left as they are (idempotent); pending ones are an error.
        """
        ids = [int(i) for i in ids]
        if not ids:
            return
        with self.write() as connection:
            current = self._require(ids)
            pending = [ref_id for ref_id in ids if current[ref_id].status == "pending"]
            if pending:
                raise CatalogError(f"references {pending} are pending (never approved) and cannot be indexed")
            connection.execute(
                """UPDATE "references"
                   SET status = CASE status WHEN 'approved' THEN 'indexed' ELSE status END,
                       status_changed_at = CASE status WHEN 'approved' THEN ? ELSE status_changed_at END,
                       in_index = 1
                   WHERE id IN (SELECT value FROM json_each(?))""",
                (utc_now(), _ids_json(ids)),
            )
            self._bump(connection)

    def mark_removed(self, ids: Iterable[int]) -> None:
        """The index no longer holds these withdrawn ids."""
        ids = [int(i) for i in ids]
        if not ids:
            return
        with self.write() as connection:
            current = self._require(ids)
            live = [ref_id for ref_id in ids if current[ref_id].status != "withdrawn"]
            if live:
                raise CatalogError(
                    f"references {live} are not withdrawn; only withdrawn ones leave the index"
                )
            connection.execute(
                """UPDATE "references" SET in_index = 0 WHERE id IN (SELECT value FROM json_each(?))""",
                (_ids_json(ids),),
            )
            self._bump(connection)

    # -- reads ------------------------------------------------------------------------------------

    def _select(self, where: str = "", params: tuple = ()) -> list[Reference]:
        rows = (
            self.connection()
            .execute(f'SELECT {_COLUMNS} FROM "references" {where} ORDER BY id', params)
            .fetchall()
        )
        return [_row_to_reference(row) for row in rows]

    def _require(self, ids: list[int]) -> dict[int, Reference]:
        found = self.get_many(ids)
        missing = sorted(set(ids) - set(found))
        if missing:
            raise CatalogError(f"unknown reference id(s) {missing}")
        return found

    def get(self, ref_id: int) -> Reference:
        found = self._select("WHERE id = ?", (int(ref_id),))
        if not found:
            raise CatalogError(f"unknown reference id {ref_id}")
        return found[0]

    def get_many(self, ids: Iterable[int]) -> dict[int, Reference]:
        """The references among `ids` that exist (unknown ids are simply absent from the result)."""
        return {
            ref.id: ref
            for ref in self._select("WHERE id IN (SELECT value FROM json_each(?))", (_ids_json(ids),))
        }

    def find_by_sha256(self, sha256: str, include_withdrawn: bool = False) -> Reference | None:
        """The live reference holding exactly these bytes (or, on request, the latest withdrawn one)."""
        live = self._select("WHERE sha256 = ? AND status != 'withdrawn'", (sha256,))
        if live or not include_withdrawn:
            return live[0] if live else None
        withdrawn = self._select("WHERE sha256 = ?", (sha256,))
        return withdrawn[-1] if withdrawn else None

    def near_duplicates(
        self, phash_hex: str, threshold: int, brand: str | None = None
    ) -> list[tuple[Reference, int]]:
        """Live references whose perceptual hash is within `threshold` bits of `phash_hex`, nearest first.

        A linear scan over the stored hashes (vectorised); kept in this one function so it can become an
        indexed search (BK-tree, multi-index hashing) without changing callers.
        """
        if not _PHASH.match(phash_hex):
            raise CatalogError(f"phash must be 16 lowercase hex digits, got {phash_hex!r}")
        where, params = "WHERE status != 'withdrawn'", ()
        if brand is not None:
            where, params = where + " AND brand = ?", (brand,)
        rows = self.connection().execute(f'SELECT id, phash FROM "references" {where}', params).fetchall()
        if not rows:
            return []
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        hashes = np.fromiter((int(row[1], 16) for row in rows), dtype=np.uint64, count=len(rows))
        distances = np.bitwise_count(hashes ^ np.uint64(int(phash_hex, 16)))
        close = np.flatnonzero(distances <= threshold)
        if not len(close):
            return []
        found = self.get_many(ids[close].tolist())
        pairs = [(found[int(ids[i])], int(distances[i])) for i in close if int(ids[i]) in found]
        return sorted(pairs, key=lambda pair: (pair[1], pair[0].id))

    def list_references(
        self,
        brand: str | None = None,
        status: str | Iterable[str] | None = None,
        view: str | None = None,
    ) -> list[Reference]:
        """References in id order, filtered by any of brand, status (one or several) and view."""
        clauses, params = [], []
        if brand is not None:
            clauses.append("brand = ?")
            params.append(brand)
        statuses = _as_statuses(status)
        if statuses is not None:
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if view is not None:
            if view not in VIEWS:
                raise CatalogError(f"unknown view {view!r} (expected one of {', '.join(VIEWS)})")
            clauses.append("view = ?")
            params.append(view)
        return self._select(("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(params))

    def brands(self) -> list[str]:
        return [row[0] for row in self.connection().execute("SELECT name FROM brands ORDER BY name")]

    def brand_of(self, ids: Iterable[int]) -> dict[int, str]:
        """Brand of each known id (what a FAISS neighbour id means for scoring)."""
        rows = self.connection().execute(
            'SELECT id, brand FROM "references" WHERE id IN (SELECT value FROM json_each(?))',
            (_ids_json(ids),),
        )
        return dict(rows.fetchall())

    def ids_for_brand(self, brand: str, statuses: Iterable[str] = ("approved", "indexed")) -> np.ndarray:
        """Sorted int64 ids of the brand's references in `statuses`."""
        wanted = _as_statuses(statuses) or ()
        rows = (
            self.connection()
            .execute(
                f"""SELECT id FROM "references" WHERE brand = ? AND status IN ({", ".join("?" * len(wanted))})
                ORDER BY id""",
                (brand, *wanted),
            )
            .fetchall()
        )
        return np.array([row[0] for row in rows], dtype=np.int64)

    def high_water_mark(self) -> int:
        """A counter bumped by every change to the references (adds, status changes, index marks).

        The index records the value it read *before* calling `to_index()`/`to_remove()`; a larger value
        later means there may be work to do.
        """
        return self.connection().execute("SELECT change_seq FROM catalog_state").fetchone()[0]

    def to_index(self) -> list[Reference]:
        """Approved references that the index does not hold yet."""
        return self._select("WHERE status = 'approved'")

    def to_remove(self) -> list[Reference]:
        """Withdrawn references that the index may still hold."""
        return self._select("WHERE status = 'withdrawn' AND in_index = 1")

    def set_wordmarks(self, brand: str, wordmarks: Iterable[str]) -> None:
        """Replace the brand's known wordmarks (what the OCR cue compares listing text with)."""
        cleaned = sorted({w.strip() for w in wordmarks if w and w.strip()})
        if not brand.strip():
            raise CatalogError("brand name is empty")
        with self.write() as connection:
            connection.execute("DELETE FROM brand_wordmarks WHERE brand = ?", (brand,))
            connection.executemany(
                "INSERT INTO brand_wordmarks (brand, wordmark) VALUES (?, ?)", [(brand, w) for w in cleaned]
            )

    def wordmarks(self) -> dict[str, list[str]]:
        """Every brand's wordmarks."""
        result: dict[str, list[str]] = {}
        for brand, wordmark in self.connection().execute(
            "SELECT brand, wordmark FROM brand_wordmarks ORDER BY brand, wordmark"
        ):
            result.setdefault(brand, []).append(wordmark)
        return result

    def add_authorized_sellers(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Record (brand, seller_id) pairs; returns how many were new."""
        rows = [(b.strip(), str(s).strip()) for b, s in pairs]
        bad = [pair for pair in rows if not pair[0] or not pair[1]]
        if bad:
            raise CatalogError(f"empty brand or seller_id in {bad[:3]!r}")
        with self.write() as connection:
            before = connection.total_changes
            connection.executemany(
                "INSERT OR IGNORE INTO authorized_sellers (brand, seller_id, added_at) VALUES (?, ?, ?)",
                [(b, s, utc_now()) for b, s in rows],
            )
            return connection.total_changes - before

    def authorized_sellers(self) -> dict[str, frozenset[str]]:
        """Each brand's authorised sellers; a brand absent here has no list (the seller cue is then NaN)."""
        result: dict[str, set[str]] = {}
        for brand, seller in self.connection().execute("SELECT brand, seller_id FROM authorized_sellers"):
            result.setdefault(brand, set()).add(seller)
        return {brand: frozenset(sellers) for brand, sellers in result.items()}
