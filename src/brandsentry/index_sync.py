"""The workspace index kept in step with its catalog: approved references embedded in, withdrawn ones out.

Orchestration over three stages (catalog, embed, index), so it lives downstream of all of them and none of
them has to know the others; `brandsentry index build|update`, the portal and the evaluation suites call it.

With `embedder.precision=int8` the index also decides the embedder: a fresh build calibrates the quantised
backbone on the catalog's approved references (`embed_int8`) and saves its IR files in the index version,
and everything that searches a saved index (updates, training, bundles, scoring) runs the model saved with
it, through `embedder_for_index`.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from brandsentry.catalog import Catalog, Reference
from brandsentry.config import Workspace
from brandsentry.images import DecodeLimits
from brandsentry.index import (
    EmbedderMismatchError,
    IndexParams,
    IndexStateError,
    ReferenceIndex,
    current_version_dir,
    latest_manifest,
    saved_versions,
)

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


def embedder_for_index(embedder_cfg, index_root: Path) -> Embedder:
    """The configured embedder as the index saved under `index_root` (a workspace's or a bundle's) needs
    it: precision=int8 runs the quantised model saved with the current version; fp32 needs nothing of it."""
    from brandsentry.embed import Embedder, EmbedderSettings
    from brandsentry.embed_openvino import INT8_XML

    settings = EmbedderSettings.from_config(embedder_cfg)
    if settings.precision != "int8":
        return Embedder.from_config(settings)
    model = current_version_dir(index_root) / INT8_XML
    if not model.is_file():
        raise EmbedderMismatchError(
            f"index {model.parent} was built with embedder {latest_manifest(index_root).embedder}, not an "
            f"int8 one (no {INT8_XML}): rebuild it with embedder.precision=int8 (`brandsentry index build`) "
            "or use embedder.precision=fp32"
        )
    return Embedder.from_config(settings, int8_model=model)


def workspace_embedder(cfg, current: Embedder | None = None) -> Embedder:
    """The embedder of the workspace's index, for a long-lived holder (the portal): `current` while it still
    fits; int8 follows the saved index (`embedder_for_index`) and, before the first build, calibrates on the
    approved references now (the model that build will make, through the cache)."""
    from brandsentry.embed import Embedder, EmbedderSettings

    workspace = Workspace.from_config(cfg)
    root = workspace.index_dir
    if EmbedderSettings.from_config(cfg.embedder).precision != "int8":
        return current or Embedder.from_config(cfg.embedder)
    if not saved_versions(root):
        if current is not None:
            return current
        with Catalog.open(workspace) as catalog:
            return _calibrated(cfg, workspace, catalog, DecodeLimits.from_config(cfg.images))
    return (
        current if current is not None and _built(root, current) else embedder_for_index(cfg.embedder, root)
    )


def update_from_catalog(
    cfg, embedder: Embedder | None = None, rebuild: bool = False, progress: bool = False
) -> IndexUpdateReport:
    """Bring the workspace index in step with the catalog: add approved references, drop withdrawn ones.

    `rebuild` (or no saved index yet) embeds every live reference into a fresh index built from the
    configured factory string. Updates of one workspace are serialised by a lock file; the catalog's
    high-water mark read before the work is what the saved manifest records. precision=int8: a fresh
    build calibrates a new model (unless `embedder` is an int8 one already), an update keeps the index's.
    """
    from brandsentry.embed import Embedder, EmbedderSettings

    workspace = Workspace.from_config(cfg).ensure()
    root = workspace.index_dir
    root.mkdir(parents=True, exist_ok=True)
    limits = DecodeLimits.from_config(cfg.images)
    params = IndexParams.from_config(cfg.index)
    int8 = EmbedderSettings.from_config(cfg.embedder).precision == "int8"
    with open(root / ".update.lock", "a") as lock, Catalog.open(workspace) as catalog:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        high_water = catalog.high_water_mark()
        fresh = rebuild or not saved_versions(root)
        if int8 and fresh and (embedder is None or embedder.identity.precision != "int8"):
            embedder = _calibrated(cfg, workspace, catalog, limits)
        elif int8 and not fresh and (embedder is None or not _built(root, embedder)):
            embedder = embedder_for_index(cfg.embedder, root)
        embedder = embedder or Embedder.from_config(cfg.embedder)
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
        manifest = index.save(root, high_water, files=embedder.model_files)
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


def _calibrated(cfg, workspace: Workspace, catalog: Catalog, limits: DecodeLimits) -> Embedder:
    """An int8 embedder calibrated on the catalog's approved references."""
    from brandsentry.embed import EmbedderSettings
    from brandsentry.embed_int8 import calibrated_embedder

    refs = catalog.list_references(status=["approved", "indexed"])
    paths = [workspace.image_store / ref.stored_path for ref in refs]
    return calibrated_embedder(EmbedderSettings.from_config(cfg.embedder), paths, limits)


def _built(index_root: Path, embedder: Embedder) -> bool:
    """Whether the current index version was built by `embedder` (same identity)."""
    return latest_manifest(index_root).embedder == embedder.identity.to_dict()
