"""The reference index: FAISS over L2-normalised embeddings, ids = catalog reference ids, atomic versioned saves.

Structure comes from a FAISS factory string (`Flat`, `HNSW32`, `IVF256,PQ32`, `IVF1024,Flat`, ...), always with
the inner-product metric (cosine on unit vectors). How each family is held, and what it can do:

| family                                   | ids           | withdrawal               | large `allowed_ids`    |
| ---------------------------------------- | ------------- | ------------------------ | ---------------------- |
| Flat, SQ8 (flat codes)                   | `IndexIDMap2` | real removal             | ID selector            |
| PQ (flat codes)                          | `IndexIDMap2` | real removal             | oversample + filter    |
| HNSW (any storage)                       | `IndexIDMap2` | tombstones, then rebuild | ID selector            |
| IVF (Flat, PQ, SQ; also `OPQ16,IVF..`)   | the IVF's own | real removal             | ID selector            |
| IVF fast-scan (`PQ..x4fs`)               | the IVF's own | tombstones               | ID selector            |
| re-ranked (`..,RFlat`, `..,Refine(SQ8)`) | `IndexIDMap2` | tombstones, then rebuild | as its base index      |
| anything else (`PCA32,Flat`)             | `IndexIDMap2` | tombstones               | as below the transform |

IVF indexes keep their own ids (with a hashtable direct map for `reconstruct`) because `IndexIDMap2` over an IVF
goes wrong on removal: the IVF does not renumber its entries, the id map does. A leading `IDMap,`/`IDMap2,` in the
factory string is accepted and ignored; `index_faiss` chooses the id mapping.

Brand-restricted search (`allowed_ids`) has two paths. ANN structures search the graph or the probed lists and
then filter, so a small restriction that lives in one region (a brand's references) returns few or none of its
true neighbours. Restrictions of at most `exact_subset_max` live ids are therefore scored exactly against their
reconstructed vectors (exact for Flat/HNSWFlat/IVFFlat/RFlat storage, the decoded codes for SQ/PQ - the same
values the index scores). Larger restrictions go through FAISS ID selectors where the index supports them
(`SearchParameters*(sel=IDSelectorBatch)` through `IndexIDMap2`'s id translation, or by id-map position in a
re-ranked index's base), otherwise through oversampling + filtering.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.files import STAGING_PREFIX, TEMP_MARK, atomic_folder, atomic_write_text
from brandsentry.index_faiss import (
    IndexInputError,
    apply_search_knobs,
    build_faiss_index,
    check_ids,
    check_vectors,
    filtering_params,
    filters_by_id,
    lossless_storage,
    min_training_vectors,
    search_knobs,
    serialized_bytes,
    stored_ids,
    supports_removal,
)
from brandsentry.settings import default_settings, load_settings

MANIFEST_FORMAT = 1
CURRENT = "CURRENT"
_VERSION_DIR = re.compile(r"^v(\d{6,})$")


class EmbedderMismatchError(BrandsentryError):
    """The index was built by another embedder than the one asked for: its vectors are not comparable."""


class IndexStateError(BrandsentryError):
    """The index cannot do what was asked in its current state (nothing saved, untrained, tombstoned id...)."""


@dataclass(frozen=True)
class SearchResult:
    """Neighbours per query, best first; a missing neighbour is id -1 with score NaN (a missing cue)."""

    ids: np.ndarray  # (n, k) int64
    scores: np.ndarray  # (n, k) float32, inner product = cosine similarity


@dataclass(frozen=True)
class IndexManifest:
    """What a saved version is: enough to refuse it for the wrong embedder and to resume catalog sync."""

    version: int
    factory: str
    dim: int
    count: int  # live references (stored minus tombstones)
    stored: int  # vectors physically in the FAISS index
    tombstones: int
    embedder: dict
    created_at: str
    catalog_high_water: int  # highest catalog reference id the index has seen
    metric: str = "inner_product"
    faiss_version: str = faiss.__version__
    format: int = MANIFEST_FORMAT

    @classmethod
    def from_json(cls, text: str, source: Path) -> IndexManifest:
        data = json.loads(text)
        if data.get("format") != MANIFEST_FORMAT:
            raise IndexStateError(
                f"{source}: manifest format {data.get('format')!r} is not {MANIFEST_FORMAT}"
            )
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class IndexParams:
    """The `index` config group (configs/index/): the FAISS factory of a new build, and the search and
    maintenance knobs, which are not part of a saved version (a loaded index keeps its saved factory)."""

    factory: str  # FAISS factory string: Flat, HNSW32, IVF256,PQ32, ...
    k: int
    nprobe: int  # IVF only
    ef_search: int  # HNSW only
    refine_k_factor: int  # re-ranking (`RFlat`, `Refine(...)`) only: shortlist of k x this
    train_size: int  # IVF/PQ/PCA only: vectors of the first add sampled to train on
    rebuild_tombstone_fraction: float
    query_batch: int
    exact_subset_max: int
    keep_versions: int

    def __post_init__(self):
        counts = ("k", "nprobe", "ef_search", "refine_k_factor", "train_size", "query_batch", "keep_versions")
        for name in counts:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"index.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.exact_subset_max < 0:
            raise ConfigError(f"index.exact_subset_max must be >= 0, got {self.exact_subset_max!r}")
        if not 0.0 < self.rebuild_tombstone_fraction <= 1.0:
            raise ConfigError(
                f"index.rebuild_tombstone_fraction must be in (0, 1], got {self.rebuild_tombstone_fraction!r}"
            )

    @classmethod
    def from_config(cls, index_cfg) -> IndexParams:
        return load_settings(cls, index_cfg, "index")


def _default_params() -> IndexParams:
    """The configs/ defaults of the `index` group, for an index created or loaded without params."""
    return default_settings(IndexParams, "index")


def _canonical_embedder(embedder: dict) -> dict:
    """The identity as it will read back from JSON, so a fresh dict and a loaded one compare equal."""
    try:
        return json.loads(json.dumps(dict(embedder), sort_keys=True))
    except TypeError as exc:
        raise IndexInputError(f"embedder identity must be JSON-serialisable: {exc}") from None


def _padding(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -1, dtype=np.int64), np.full((n, k), np.nan, dtype=np.float32)


class ReferenceIndex:
    """Catalog reference embeddings in one FAISS index; build with `create` or `load`, never directly."""

    def __init__(
        self,
        index: faiss.Index,
        factory: str,
        embedder: dict,
        params: IndexParams,
        tombstones: np.ndarray | None = None,
        version: int | None = None,
    ):
        self._index = index
        self.factory = factory
        self.dim = int(index.d)
        self.embedder = _canonical_embedder(embedder)
        self.version = version
        self._stored = stored_ids(index)
        self._tombstones = np.zeros(0, dtype=np.int64) if tombstones is None else np.sort(tombstones)
        self._tombstone_filter: faiss.SearchParameters | None = None
        self.retune(params)

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, factory: str, dim: int, embedder: dict, params: IndexParams | None = None
    ) -> ReferenceIndex:
        """An empty index; ValueError (ConfigError) naming `factory` when FAISS cannot build it for `dim`."""
        return cls(build_faiss_index(factory, dim), factory, embedder, params or _default_params())

    @classmethod
    def from_config(cls, index_cfg, dim: int, embedder: dict) -> ReferenceIndex:
        params = IndexParams.from_config(index_cfg)
        return cls.create(params.factory, dim, embedder, params)

    @classmethod
    def load(
        cls,
        index_root: Path,
        expected_embedder: dict | None,
        params: IndexParams | None = None,
        version: int | None = None,
    ) -> ReferenceIndex:
        """The version CURRENT points to (or `version`); refuses an index built by another embedder."""
        directory = _version_dir(Path(index_root), version)
        manifest = _read_manifest(directory)
        if expected_embedder is not None and _canonical_embedder(expected_embedder) != manifest.embedder:
            raise EmbedderMismatchError(
                f"index {directory} was built with embedder {manifest.embedder}, "
                f"not {_canonical_embedder(expected_embedder)}: rebuild the index for this embedder"
            )
        index = faiss.read_index(str(directory / "index.faiss"))
        tombstones = np.load(directory / "tombstones.npy").astype(np.int64)
        if (
            index.d != manifest.dim
            or index.ntotal != manifest.stored
            or tombstones.size != manifest.tombstones
        ):
            raise IndexStateError(
                f"{directory}: files disagree with manifest (dim {index.d}/{manifest.dim}, "
                f"stored {index.ntotal}/{manifest.stored}, tombstones {tombstones.size}/{manifest.tombstones})"
            )
        return cls(
            index,
            manifest.factory,
            manifest.embedder,
            params or _default_params(),
            tombstones,
            manifest.version,
        )

    # ---- what it holds ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._stored.size - self._tombstones.size)

    def live_ids(self) -> np.ndarray:
        """Sorted ids that searches can return."""
        return np.setdiff1d(self._stored, self._tombstones, assume_unique=True)

    @property
    def tombstone_count(self) -> int:
        return int(self._tombstones.size)

    @property
    def supports_removal(self) -> bool:
        """True where FAISS really deletes (flat codes, IVF); elsewhere `remove` leaves tombstones."""
        return supports_removal(self._index)

    @property
    def uses_id_selectors(self) -> bool:
        """True where FAISS filters by id during search; elsewhere we oversample and filter."""
        return filters_by_id(self._index)

    @property
    def search_knobs(self) -> tuple[str, ...]:
        """The `IndexParams` fields that change how this family searches (nprobe, ef_search, ...)."""
        return search_knobs(self._index)

    @property
    def is_trained(self) -> bool:
        """False until the first add of an IVF/PQ/PCA structure has trained it."""
        return bool(self._index.is_trained)

    def serialized_bytes(self) -> int:
        """Bytes the FAISS structure takes in a save, close to what it holds in memory (counted, not copied)."""
        return serialized_bytes(self._index)

    def retune(self, params: IndexParams) -> None:
        """Search and maintenance knobs from `params` (nprobe, ef_search, ...); the structure stays as built."""
        self.params = params if params.factory == self.factory else replace(params, factory=self.factory)
        apply_search_knobs(self._index, params.nprobe, params.ef_search, params.refine_k_factor)
        self._tombstone_filter = None

    @property
    def lossless_storage(self) -> bool:
        """True when `reconstruct` returns the vectors that were added, so a rebuild needs no originals."""
        return lossless_storage(self._index)

    @property
    def needs_rebuild(self) -> bool:
        stored = self._stored.size
        return stored > 0 and self._tombstones.size / stored > self.params.rebuild_tombstone_fraction

    # ---- changes --------------------------------------------------------------------------------------
    def add(self, ids, vectors) -> None:
        """Add references; an untrained index (IVF, PQ) trains on this first batch, so make it a big one."""
        array = check_vectors(vectors, self.dim, "vectors")
        id_array = check_ids(ids, array.shape[0])
        if not id_array.size:
            return
        tombstoned = id_array[np.isin(id_array, self._tombstones)]
        if tombstoned.size:
            raise IndexStateError(
                f"ids {tombstoned[:10].tolist()} were withdrawn and are still tombstones; rebuild before re-adding"
            )
        present = id_array[np.isin(id_array, self._stored)]
        if present.size:
            raise IndexInputError(f"ids already in the index: {present[:10].tolist()}")
        if not self._index.is_trained:
            self._train(self._index, array)
        self._index.add_with_ids(array, id_array)
        self._stored = np.union1d(self._stored, id_array)
        self._tombstone_filter = None

    def remove(self, ids) -> int:
        """Withdraw references; returns how many were live (ids not in the index are ignored)."""
        id_array = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
        live = id_array[np.isin(id_array, self._stored) & ~np.isin(id_array, self._tombstones)]
        if not live.size:
            return 0
        if self.supports_removal:
            selector = faiss.IDSelectorArray(live.size, faiss.swig_ptr(live))
            removed = self._index.remove_ids(selector)
            if removed != live.size:
                raise IndexStateError(f"FAISS removed {removed} of {live.size} ids from {self.factory!r}")
            self._stored = np.setdiff1d(self._stored, live, assume_unique=True)
        else:
            self._tombstones = np.union1d(self._tombstones, live)
        self._tombstone_filter = None
        return int(live.size)

    def rebuild(self, ids=None, vectors=None) -> None:
        """A fresh structure (retrained where it trains) without tombstones.

        With no arguments the live vectors are reconstructed from the index, which is only allowed for
        lossless storage (Flat, HNSWFlat, IVFFlat, RFlat): re-encoding decoded PQ/SQ codes compounds their
        error, so compressed indexes need the original `ids` and `vectors` (e.g. re-read from the embedding
        store). Given, `ids`/`vectors` are the whole new content. The old index stays if anything fails.
        """
        if (ids is None) != (vectors is None):
            raise IndexInputError("rebuild takes both ids and vectors, or neither")
        if ids is None:
            if not self.lossless_storage:
                raise IndexStateError(
                    f"{self.factory!r} stores compressed vectors; pass the original ids and vectors to rebuild"
                )
            id_array = self.live_ids()
            array = self._index.reconstruct_batch(id_array) if id_array.size else np.zeros((0, self.dim))
            array = np.ascontiguousarray(array, dtype=np.float32)
        else:
            array = check_vectors(vectors, self.dim, "vectors")
            id_array = check_ids(ids, array.shape[0])
        fresh = build_faiss_index(self.factory, self.dim)
        if id_array.size:
            self._train(fresh, array)
            fresh.add_with_ids(array, id_array)
        self._index = fresh
        self._stored = np.sort(id_array)
        self._tombstones = np.zeros(0, dtype=np.int64)
        self.retune(self.params)

    def _train(self, index: faiss.Index, vectors: np.ndarray) -> None:
        if index.is_trained:
            return
        needed = min_training_vectors(index)
        if self.params.train_size < needed:
            raise ConfigError(
                f"index.train_size {self.params.train_size} is below the {needed} vectors {self.factory!r} "
                "needs to train (FAISS recommends ~39 per centroid)"
            )
        if vectors.shape[0] < needed:
            raise IndexStateError(
                f"{self.factory!r} must be trained before its first add: needs at least {needed} vectors "
                f"(FAISS recommends ~39 per centroid), got {vectors.shape[0]}; add the first batch in bulk"
            )
        if vectors.shape[0] > self.params.train_size:  # a seeded sample: k-means cost grows with it
            rows = np.random.default_rng(0).choice(vectors.shape[0], self.params.train_size, replace=False)
            vectors = vectors[np.sort(rows)]
        index.train(vectors)

    # ---- search -----------------------------------------------------------------------------------------
    def search(self, vectors, k: int | None = None, allowed_ids=None) -> SearchResult:
        """Top-k by cosine for each query, optionally among `allowed_ids` only (a brand's references).

        Queries run in blocks of `query_batch`: FAISS exact search switches to BLAS only from
        queries x dim >= 128,000, below that it streams the whole database once per query. Tombstones are
        never returned. See the module docstring for how `allowed_ids` is served per index family.
        """
        k = self.params.k if k is None else int(k)
        if k < 1:
            raise IndexInputError(f"k must be >= 1, got {k}")
        queries = check_vectors(vectors, self.dim, "queries")
        if allowed_ids is None:
            allowed = None
        else:
            allowed = np.unique(np.asarray(allowed_ids, dtype=np.int64).reshape(-1))
            allowed = allowed[np.isin(allowed, self._stored) & ~np.isin(allowed, self._tombstones)]
        if len(self) == 0 or queries.shape[0] == 0 or (allowed is not None and allowed.size == 0):
            return SearchResult(*_padding(queries.shape[0], k))
        if allowed is not None and allowed.size <= self.params.exact_subset_max:
            return self._search_exact_subset(queries, k, allowed)
        if allowed is None and not self._tombstones.size:
            return self._search_blocks(queries, lambda block: self._index.search(block, k))
        if self.uses_id_selectors:
            return self._search_with_selector(queries, k, allowed)
        return self._search_oversampled(queries, k, allowed)

    def _search_blocks(self, queries: np.ndarray, search_block) -> SearchResult:
        ids_parts, score_parts = [], []
        for start in range(0, queries.shape[0], self.params.query_batch):
            scores, ids = search_block(queries[start : start + self.params.query_batch])
            ids_parts.append(ids.astype(np.int64, copy=False))
            score_parts.append(np.where(ids < 0, np.nan, scores).astype(np.float32))
        return SearchResult(np.concatenate(ids_parts), np.concatenate(score_parts))

    def _search_exact_subset(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> SearchResult:
        candidates = np.ascontiguousarray(self._index.reconstruct_batch(allowed), dtype=np.float32)
        width = min(k, allowed.size)

        def search_block(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            similarity = block @ candidates.T
            top = np.argpartition(-similarity, width - 1, axis=1)[:, :width]
            top_scores = np.take_along_axis(similarity, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            ids, scores = _padding(block.shape[0], k)
            ids[:, :width] = allowed[np.take_along_axis(top, order, axis=1)]
            scores[:, :width] = np.take_along_axis(top_scores, order, axis=1)
            return scores, ids

        return self._search_blocks(queries, search_block)

    def _search_with_selector(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> SearchResult:
        if allowed is not None:
            params = filtering_params(self._index, allowed, True, self.params)
        else:  # the same tombstones for every search until the next change: built once
            if self._tombstone_filter is None:
                self._tombstone_filter = filtering_params(self._index, self._tombstones, False, self.params)
            params = self._tombstone_filter
        return self._search_blocks(queries, lambda block: self._index.search(block, k, params=params))

    def _search_oversampled(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> SearchResult:
        stored = int(self._stored.size)

        def keep(ids: np.ndarray) -> np.ndarray:
            if allowed is not None:
                return np.isin(ids, allowed)
            return (ids >= 0) & ~np.isin(ids, self._tombstones)

        def search_block(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out_ids, out_scores = _padding(block.shape[0], k)
            pending = np.arange(block.shape[0])
            fetch = min(stored, 4 * k + int(self._tombstones.size))
            while pending.size:
                scores, ids = self._index.search(block[pending], fetch)
                kept = keep(ids)
                for row, query in enumerate(pending):
                    hits = np.flatnonzero(kept[row])[:k]
                    out_ids[query, : hits.size] = ids[row, hits]
                    out_scores[query, : hits.size] = scores[row, hits]
                done = (kept.sum(axis=1) >= k) | (fetch >= stored)
                pending = pending[~done]
                fetch = min(stored, fetch * 4)
            return out_scores, out_ids

        return self._search_blocks(queries, search_block)

    # ---- persistence --------------------------------------------------------------------------------
    def save(
        self, index_root: Path, catalog_high_water: int, files: Mapping[str, Path] | None = None
    ) -> IndexManifest:
        """Write a new version atomically and point CURRENT at it; keeps the last `keep_versions` versions.

        `files` (name -> path) are copied into the version beside the index: what its vectors need besides
        the embedder config (the quantised model of an int8 embedder, `Embedder.model_files`).

        Files go to a staging folder that `files.atomic_folder` fsyncs and renames to vNNNNNN, then CURRENT
        is replaced atomically. A crash at any point leaves the previous version loadable; the next save
        removes the crashed save's leftovers. Saves to one root are serialised by a lock file.
        """
        root = Path(index_root)
        root.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(root):
            _collect_garbage(root)
            version = _next_version(root)
            manifest = IndexManifest(
                version=version,
                factory=self.factory,
                dim=self.dim,
                count=len(self),
                stored=int(self._stored.size),
                tombstones=int(self._tombstones.size),
                embedder=self.embedder,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                catalog_high_water=int(catalog_high_water),
            )
            name = f"v{version:06d}"
            with atomic_folder(root / name) as staging:
                faiss.write_index(self._index, str(staging / "index.faiss"))
                with open(staging / "tombstones.npy", "wb") as handle:
                    np.save(handle, self._tombstones)
                (staging / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
                for file_name, source in (files or {}).items():
                    shutil.copyfile(source, staging / file_name)
            _point_current(root, name)
            _prune(root, keep=self.params.keep_versions, current=name)
        self.version = version
        return manifest


def current_version_dir(index_root: Path) -> Path:
    """The folder of the version CURRENT points to (IndexStateError when none is saved)."""
    return _version_dir(Path(index_root), None)


def latest_manifest(index_root: Path) -> IndexManifest:
    """The manifest CURRENT points to, without reading the index itself."""
    return _read_manifest(_version_dir(Path(index_root), None))


def saved_versions(index_root: Path) -> list[int]:
    """Version numbers present under `index_root`, oldest first."""
    root = Path(index_root)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if (m := _VERSION_DIR.match(p.name)) and p.is_dir())


def _version_dir(root: Path, version: int | None) -> Path:
    if version is not None:
        directory = root / f"v{int(version):06d}"
        if not (directory / "manifest.json").is_file():
            raise IndexStateError(
                f"index version {version} not found under {root} (have {saved_versions(root)})"
            )
        return directory
    pointer = root / CURRENT
    if not pointer.is_file():
        raise IndexStateError(f"no index saved yet under {root} (no {CURRENT} file)")
    name = pointer.read_text(encoding="utf-8").strip()
    if not _VERSION_DIR.match(name) or not (root / name / "manifest.json").is_file():
        raise IndexStateError(f"{pointer} points to {name!r}, which is not a saved index version")
    return root / name


def _read_manifest(directory: Path) -> IndexManifest:
    path = directory / "manifest.json"
    return IndexManifest.from_json(path.read_text(encoding="utf-8"), path)


def _next_version(root: Path) -> int:
    versions = saved_versions(root)
    return (versions[-1] if versions else 0) + 1


def _point_current(root: Path, name: str) -> None:
    atomic_write_text(root / CURRENT, name + "\n")


def _prune(root: Path, keep: int, current: str) -> None:
    names = [f"v{v:06d}" for v in saved_versions(root)]
    doomed = [name for name in names[:-keep] if name != current]
    for name in doomed:
        shutil.rmtree(root / name)


def _collect_garbage(root: Path) -> None:
    """Remove what a crashed save left behind: its staging folder and a CURRENT temp never renamed
    (`CURRENT.tmp` is the name saves used before `files.atomic_write`)."""
    for path in root.iterdir():
        if path.name.startswith(STAGING_PREFIX) and path.is_dir():
            shutil.rmtree(path)
    for temp in [root / f"{CURRENT}.tmp", *root.glob(f".{CURRENT}{TEMP_MARK}*")]:
        temp.unlink(missing_ok=True)


@contextmanager
def _exclusive_lock(root: Path) -> Iterator[None]:
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
