"""Quality checks on a submitted reference, shown to the admin as warnings on the pending item.

Three questions an admin cannot answer from a thumbnail: is this (nearly) a photo the catalog already holds,
does it look like another brand's product (its nearest indexed references belong to someone else), and would
it match too many of the listings scored recently (a generic photo that floods the review queue)? A check that
cannot run (no index yet, no scoring embeddings yet) leaves a note saying so, never a silent pass.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brandsentry import index_sync
from brandsentry.catalog import Catalog, Reference, utc_now
from brandsentry.config import Workspace
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
from brandsentry.index import (
    EmbedderMismatchError,
    IndexParams,
    IndexStateError,
    ReferenceIndex,
    latest_manifest,
)
from brandsentry.portal.tables import PORTAL_TABLES
from brandsentry.run_folder import embedding_files

if TYPE_CHECKING:
    from brandsentry.embed import Embedder


@dataclass(frozen=True)
class CheckResult:
    """One finding about one reference: `code` names the check, `level` is warning or note."""

    code: str
    level: str
    message: str


@dataclass(frozen=True)
class CheckSettings:
    """The `portal.checks` section of the config (configs/portal/)."""

    near_duplicate_bits: int  # any live reference this close in perceptual hash is a warning
    neighbours: int  # nearest indexed references looked at by the wrong-brand check
    wrong_brand_min_similarity: float
    wrong_brand_fraction: (
        float  # warn when this share of the close neighbours, and the closest, are another's
    )
    flood_similarity: float  # a recent listing this similar counts as a match
    flood_max_matches: int  # warn when a photo matches at least this many recent listings
    flood_listings: int  # newest listing embeddings compared


def near_duplicate_results(catalog: Catalog, reference: Reference, bits: int) -> list[CheckResult]:
    """Other live references within `bits` of this one's perceptual hash (any brand)."""
    near = [
        (other, distance)
        for other, distance in catalog.near_duplicates(reference.phash, bits)
        if other.id != reference.id
    ]
    if not near:
        return []
    listed = ", ".join(f"{other.id} ({other.brand}, {distance} bits)" for other, distance in near[:5])
    more = f" and {len(near) - 5} more" if len(near) > 5 else ""
    return [CheckResult("near_duplicate", "warning", f"near-duplicate of reference {listed}{more}")]


def wrong_brand_result(
    brand: str,
    neighbour_ids: np.ndarray,
    similarities: np.ndarray,
    brands: dict[int, str],
    settings: CheckSettings,
) -> CheckResult | None:
    """A warning when most close neighbours (and the closest one) belong to another brand."""
    close = [
        (int(i), float(s))
        for i, s in zip(neighbour_ids, similarities, strict=True)
        if i >= 0 and int(i) in brands and s >= settings.wrong_brand_min_similarity
    ]
    if not close:
        return None
    others = [(ref_id, sim) for ref_id, sim in close if brands[ref_id] != brand]
    top_id, top_sim = close[0]
    if brands[top_id] == brand or len(others) / len(close) < settings.wrong_brand_fraction:
        return None
    majority, count = Counter(brands[ref_id] for ref_id, _ in others).most_common(1)[0]
    return CheckResult(
        "wrong_brand",
        "warning",
        f"wrong brand? {len(others)} of the {len(close)} nearest references (similarity >= "
        f"{settings.wrong_brand_min_similarity:g}) belong to other brands, most to {majority!r} ({count}); "
        f"closest: reference {top_id} of {brands[top_id]!r} at {top_sim:.3f}",
    )


@dataclass(frozen=True)
class ListingShard:
    path: Path
    rows: int


def recent_listing_shards(runs_dir: Path, dim: int, max_rows: int) -> tuple[list[ListingShard], list[str]]:
    """Newest scoring runs' embedding shards (`run_folder.embedding_files`), newest run first, up to `max_rows` rows in all.

    Shards of another dimension (another embedder) or unreadable ones are skipped with a note.
    """
    score_dir = runs_dir / "score"
    runs = [path for path in score_dir.iterdir() if path.is_dir()] if score_dir.is_dir() else []
    runs_with_shards = [(run, embedding_files(run)) for run in runs]
    runs_with_shards = [(run, shards) for run, shards in runs_with_shards if shards]
    runs_with_shards.sort(key=lambda item: max(shard.stat().st_mtime for shard in item[1]), reverse=True)
    chosen, notes, total = [], [], 0
    for run, shards in runs_with_shards:
        for shard in shards:
            if total >= max_rows:
                return chosen, notes
            try:
                array = np.load(shard, mmap_mode="r")
            except (OSError, ValueError) as exc:
                notes.append(f"{shard.name} of run {run.name} unreadable ({exc})")
                continue
            if array.ndim != 2 or array.shape[1] != dim or array.dtype != np.float32:
                notes.append(
                    f"{shard.name} of run {run.name} holds {array.dtype} {array.shape}, "
                    f"not float32 (n, {dim}): another embedder"
                )
                continue
            rows = min(int(array.shape[0]), max_rows - total)
            chosen.append(ListingShard(shard, rows))
            total += rows
    return chosen, notes


def count_flood_matches(
    vectors: np.ndarray, shards: Sequence[ListingShard], similarity: float, chunk_rows: int = 16384
) -> np.ndarray:
    """For each query vector, how many listing embeddings reach `similarity` (streamed, bounded memory)."""
    counts = np.zeros(len(vectors), dtype=np.int64)
    for shard in shards:
        listings = np.load(shard.path, mmap_mode="r")
        for start in range(0, shard.rows, chunk_rows):
            block = np.asarray(listings[start : min(start + chunk_rows, shard.rows)], dtype=np.float32)
            counts += (block @ vectors.T >= similarity).sum(axis=0)
    return counts


class ReferenceChecker:
    """Runs every check for freshly submitted references (`record_checks` stores what it finds).

    The embedder and index load on first use and are shared by the server's threads (one lock around
    the model); the index is re-read whenever a newer version is saved, so approvals count in later checks.
    """

    def __init__(self, cfg, catalog: Catalog, settings: CheckSettings):
        self.cfg = cfg
        self.catalog = catalog
        self.settings = settings
        self.workspace = Workspace.from_config(cfg)
        self.image_root = self.workspace.image_store
        self.limits = DecodeLimits.from_config(cfg.images)
        self._model_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._embedder = None
        self._index: ReferenceIndex | None = None

    def embedder(self) -> Embedder:
        with self._model_lock:  # an int8 embedder follows the saved index (a rebuild calibrates anew)
            self._embedder = index_sync.workspace_embedder(self.cfg, self._embedder)
            return self._embedder

    def embed(
        self, references: Sequence[Reference]
    ) -> tuple[list[Reference], np.ndarray, dict[int, CheckResult]]:
        """The references whose stored photo decodes with their vectors, and a note for each one that does not."""
        embedder = self.embedder()
        usable, arrays, failures = [], [], {}
        for reference in references:
            try:
                arrays.append(
                    decode_image(
                        self.image_root / reference.stored_path,
                        self.limits,
                        target_size=embedder.preprocessing.resize_size,
                    )
                )
                usable.append(reference)
            except ImageDecodeError as exc:
                failures[reference.id] = CheckResult(
                    "embedding_failed",
                    "note",
                    f"similarity checks skipped: stored photo unusable ({exc.reason})",
                )
        with self._model_lock:
            vectors = embedder.embed_arrays(arrays)
        return usable, vectors, failures

    def run(self, references: Sequence[Reference]) -> dict[int, list[CheckResult]]:
        """All checks for `references`; every reference gets a (possibly empty) list."""
        results: dict[int, list[CheckResult]] = {
            reference.id: near_duplicate_results(self.catalog, reference, self.settings.near_duplicate_bits)
            for reference in references
        }
        if not references:
            return results
        usable, vectors, failures = self.embed(references)
        for ref_id, failure in failures.items():
            results[ref_id].append(failure)
        if not usable:
            return results
        for reference, found in zip(usable, self.wrong_brand(usable, vectors), strict=True):
            results[reference.id].extend(found)
        for reference, found in zip(usable, self.flood_risk(vectors), strict=True):
            results[reference.id].extend(found)
        return results

    def index(self) -> tuple[ReferenceIndex | None, str]:
        """The saved index (re-read when a newer version is saved), or None and why not."""
        root = self.workspace.index_dir
        try:
            version = latest_manifest(root).version
        except IndexStateError:
            return None, "no reference index saved yet"
        with self._index_lock:
            if self._index is None or self._index.version != version:
                try:
                    self._index = ReferenceIndex.load(
                        root, self.embedder().identity.to_dict(), IndexParams.from_config(self.cfg.index)
                    )
                except EmbedderMismatchError:
                    return None, "the saved index was built by another embedder than the configured one"
            return self._index, ""

    def wrong_brand(self, references: Sequence[Reference], vectors: np.ndarray) -> list[list[CheckResult]]:
        """Per reference: a warning when its nearest indexed references belong mostly to another brand."""
        index, why = self.index()
        if index is None:
            note = CheckResult("wrong_brand_skipped", "note", f"wrong-brand check skipped: {why}")
            return [[note] for _ in references]
        found = index.search(vectors, k=self.settings.neighbours)
        live = {
            ref.id: ref.brand
            for ref in self.catalog.get_many(found.ids[found.ids >= 0].tolist()).values()
            if ref.status != "withdrawn"
        }
        results = []
        for reference, ids, scores in zip(references, found.ids, found.scores, strict=True):
            result = wrong_brand_result(reference.brand, ids, scores, live, self.settings)
            results.append([result] if result else [])
        return results

    def flood_risk(self, vectors: np.ndarray) -> list[list[CheckResult]]:
        """Per vector: a warning when at least `flood_max_matches` recent listings reach `flood_similarity`."""
        settings = self.settings
        shards, notes = recent_listing_shards(
            self.workspace.runs_dir, vectors.shape[1], settings.flood_listings
        )
        listings = sum(shard.rows for shard in shards)
        if not listings:
            why = "; ".join(notes) if notes else "no scoring run has saved listing embeddings yet"
            note = CheckResult("flood_risk_skipped", "note", f"flood check skipped: {why}")
            return [[note] for _ in range(len(vectors))]
        counts = count_flood_matches(vectors, shards, settings.flood_similarity)
        runs = sorted({shard.path.parent.name for shard in shards})
        results = []
        for count in counts:
            found = []
            if count >= settings.flood_max_matches:
                found.append(
                    CheckResult(
                        "flood_risk",
                        "warning",
                        f"flood risk: matches {count} of {listings} recent listings at similarity >= "
                        f"{settings.flood_similarity:g} (bound {settings.flood_max_matches}; runs {', '.join(runs)})",
                    )
                )
            results.append(found)
        return results


def record_checks(catalog: Catalog, results: dict[int, list[CheckResult]]) -> None:
    now = utc_now()
    rows = [(ref_id, r.code, r.level, r.message, now) for ref_id, found in results.items() for r in found]
    catalog.ensure_schema(PORTAL_TABLES)
    with catalog.write() as connection:
        connection.executemany(
            "INSERT INTO reference_checks (reference_id, code, level, message, created_at) VALUES (?, ?, ?, ?, ?)",
            rows,
        )


def checks_for(catalog: Catalog, ids: Sequence[int]) -> dict[int, list[CheckResult]]:
    """Stored check results of each id (warnings first)."""
    found: dict[int, list[CheckResult]] = {int(ref_id): [] for ref_id in ids}
    catalog.ensure_schema(PORTAL_TABLES)
    cursor = catalog.connection().execute(
        "SELECT reference_id, code, level, message FROM reference_checks "
        "WHERE reference_id IN (SELECT value FROM json_each(?)) ORDER BY level DESC, rowid",
        (json_ids(ids),),
    )
    rows = cursor.fetchall()
    for ref_id, code, level, message in rows:
        found[ref_id].append(CheckResult(code, level, message))
    return found


def json_ids(ids: Sequence[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"
