"""The workspace index kept in step with its catalog: approved references embedded in, withdrawn ones out.

Orchestration over three stages (catalog, embed, index), so it lives downstream of all of them and none of
them has to know the others; `brandsentry index build|update`, the portal and the evaluation suites call it.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from brandsentry.catalog import Catalog, Reference
from brandsentry.config import Workspace
from brandsentry.images import DecodeLimits
from brandsentry.index import IndexParams, IndexStateError, ReferenceIndex, saved_versions

if TYPE_CHECKING:  # torch loads on first use: the portal imports this module at start-up
    from brandsentry.embed import Embedder


@dataclass(frozen=True)
class IndexUpdateReport:
    """What `update_from_catalog` did; `failed` references stay approved for a retry."""

    version: int
    count: int
    added: int
    removed: int
    rebuilt: bool
    failed: tuple[tuple[int, str], ...]

    def format(self) -> str:
        lines = [
            f"index v{self.version:06d}: {self.count} references "
            f"(+{self.added} added, -{self.removed} removed{', rebuilt' if self.rebuilt else ''})"
        ]
        lines += [f"  not indexed: reference {ref_id}: {reason}" for ref_id, reason in self.failed]
        return "\n".join(lines)


def _embed_references(
    embedder: Embedder, image_store: Path, refs: list[Reference], limits: DecodeLimits, progress: bool
):
    paths = [image_store / ref.stored_path for ref in refs]
    embeddings, failures = embedder.embed_files(paths, [ref.id for ref in refs], limits, progress=progress)
    failed = tuple((int(ref_id), str(error)) for ref_id, error in failures)
    return embeddings, failed


def update_from_catalog(
    cfg, embedder: Embedder | None = None, rebuild: bool = False, progress: bool = False
) -> IndexUpdateReport:
    """Bring the workspace index in step with the catalog: add approved references, drop withdrawn ones.

    `rebuild` (or no saved index yet) embeds every live reference into a fresh index built from the
    configured factory string. Updates of one workspace are serialised by a lock file; the catalog's
    high-water mark read before the work is what the saved manifest records.
    """
    from brandsentry.embed import Embedder

    workspace = Workspace.from_config(cfg).ensure()
    root = workspace.index_dir
    root.mkdir(parents=True, exist_ok=True)
    embedder = embedder or Embedder.from_config(cfg.embedder)
    limits = DecodeLimits.from_config(cfg.images)
    params = IndexParams.from_config(cfg.index)
    with open(root / ".update.lock", "a") as lock, Catalog.open(workspace) as catalog:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        high_water = catalog.high_water_mark()
        fresh = rebuild or not saved_versions(root)
        if fresh:
            index = ReferenceIndex.from_config(cfg.index, embedder.dim, embedder.identity.to_dict())
            to_add = catalog.list_references(status=["approved", "indexed"])
        else:
            index = ReferenceIndex.load(root, embedder.identity.to_dict(), params)
            to_add = catalog.to_index()
        to_remove = [ref.id for ref in catalog.to_remove()]
        embeddings, failed = _embed_references(embedder, workspace.image_store, to_add, limits, progress)
        if fresh and len(embeddings.ids) == 0:
            raise IndexStateError("the catalog holds no approved references to index; import some first")
        removed = index.remove(to_remove) if to_remove and not fresh else 0
        if len(embeddings.ids):
            index.add(embeddings.ids, embeddings.vectors)
        rebuilt = fresh
        if index.needs_rebuild and index.lossless_storage:
            index.rebuild()
            rebuilt = True
        manifest = index.save(root, high_water)
        catalog.mark_indexed(embeddings.ids.tolist())
        if to_remove:
            catalog.mark_removed(to_remove)
    if index.needs_rebuild:  # compressed storage: re-embed everything rather than re-encode lossy codes
        return update_from_catalog(cfg, embedder, rebuild=True, progress=progress)
    return IndexUpdateReport(
        version=manifest.version,
        count=manifest.count,
        added=len(embeddings.ids),
        removed=removed if not fresh else len(to_remove),
        rebuilt=rebuilt,
        failed=failed,
    )
