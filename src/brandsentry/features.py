"""Listings → cue features: decode, embed, search the reference index, compute cues.

Training and scoring both go through `ScoringContext`, so a model is always scored on features built
exactly as it was trained on. A listing that cannot be featurised (undecodable image, unknown claimed
brand) gets an error reason instead of features; it is never dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from brandsentry.catalog import Catalog
from brandsentry.config import Workspace
from brandsentry.cues import (
    BrandAssetCache,
    BrandAssets,
    CueConfig,
    CueResult,
    Neighbours,
    build_brand_assets,
    cheap_cues,
    expensive_cues,
    feature_names,
)
from brandsentry.embed import Embedder
from brandsentry.errors import ListingManifestError
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
from brandsentry.index import IndexParams, ReferenceIndex
from brandsentry.index_sync import embedder_for_index
from brandsentry.settings import load_settings

log = logging.getLogger(__name__)

REQUIRED_LISTING_COLUMNS = ("listing_id", "image_path", "claimed_brand")
OPTIONAL_LISTING_COLUMNS = ("claimed_product", "title", "price", "seller_id")


def read_listings(manifest: str | Path) -> pd.DataFrame:
    """A listings manifest (CSV or Parquet) with `image_path` resolved against the manifest's folder.

    Problems with the manifest itself stop everything before any work, with a message naming them.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ListingManifestError(f"listings manifest {manifest} does not exist")
    try:
        if manifest.suffix.lower() == ".parquet":
            frame = pd.read_parquet(manifest)
        else:
            frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise ListingManifestError(f"listings manifest {manifest} cannot be read: {exc}") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in REQUIRED_LISTING_COLUMNS if column not in frame.columns]
    if missing:
        raise ListingManifestError(f"listings manifest {manifest} lacks column(s) {missing}")
    if frame.empty:
        raise ListingManifestError(f"listings manifest {manifest} has no rows")
    frame["listing_id"] = frame["listing_id"].astype(str).str.strip()
    duplicated = frame["listing_id"][frame["listing_id"].duplicated()].unique().tolist()
    if duplicated:
        raise ListingManifestError(f"listings manifest {manifest} repeats listing_id(s) {duplicated[:10]}")
    blank = frame.index[frame["listing_id"] == ""].tolist()
    if blank:
        raise ListingManifestError(
            f"listings manifest {manifest} has empty listing_id on row(s) {blank[:10]}"
        )
    for column in OPTIONAL_LISTING_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    base = manifest.resolve().parent
    frame["image_path"] = [_resolve(base, str(p)) for p in frame["image_path"]]
    return frame.reset_index(drop=True)


def _resolve(base: Path, image_path: str) -> str:
    if "://" in image_path and not image_path.startswith("file://"):
        return image_path  # a URI the decoder will refuse with a reason, not a crash
    path = Path(image_path.removeprefix("file://"))
    return str(path if path.is_absolute() else base / path)


@dataclass(frozen=True)
class FeatureTable:
    """Features of a batch of listings, row-aligned with the input; failed rows carry `error`."""

    listing_ids: np.ndarray
    features: pd.DataFrame
    errors: np.ndarray  # object: None or a short reason code
    error_details: np.ndarray  # object: '' or a longer explanation
    top_ids: np.ndarray  # (n, k) int64, -1 padded
    top_scores: np.ndarray  # (n, k) float32
    embeddings: np.ndarray  # (n, d) float32, NaN rows for failures
    evidence: list[dict]
    timings_ms: pd.DataFrame  # one column per cue group run, ms per listing; NaN where the group did not run

    @property
    def ok(self) -> np.ndarray:
        return np.array([error is None for error in self.errors], dtype=bool)

    def cue_failures(self) -> list[list[str]]:
        """Per row, the cue groups that raised as "group: ExceptionType" (empty for most rows)."""
        return [[f"{g}: {t}" for g, t in sorted(e.get("failures", {}).items())] for e in self.evidence]

    def cue_failure_counts(self) -> dict[str, dict[str, int]]:
        """cue group -> exception type -> listings."""
        return count_cue_failures(self.cue_failures())

    @staticmethod
    def concat(tables: Iterable[FeatureTable]) -> FeatureTable:
        tables = list(tables)
        return FeatureTable(
            listing_ids=np.concatenate([t.listing_ids for t in tables]),
            features=pd.concat([t.features for t in tables], ignore_index=True),
            errors=np.concatenate([t.errors for t in tables]),
            error_details=np.concatenate([t.error_details for t in tables]),
            top_ids=np.concatenate([t.top_ids for t in tables]),
            top_scores=np.concatenate([t.top_scores for t in tables]),
            embeddings=np.concatenate([t.embeddings for t in tables]),
            evidence=[e for t in tables for e in t.evidence],
            timings_ms=pd.concat([t.timings_ms for t in tables], ignore_index=True),
        )


@dataclass(frozen=True)
class FeatureSettings:
    """The `features` config group (configs/features/)."""

    workers: int  # threads computing cues for a batch of listings

    @classmethod
    def from_config(cls, features_cfg) -> FeatureSettings:
        return load_settings(cls, features_cfg, "features")


class ScoringContext:
    """Embedder + reference index + reference metadata + brand assets: everything cues need."""

    def __init__(
        self,
        embedder: Embedder,
        index: ReferenceIndex,
        references: pd.DataFrame,
        image_root: Path,
        cue_cfg: CueConfig,
        wordmarks: dict[str, list[str]],
        sellers: dict[str, frozenset[str]],
        limits: DecodeLimits,
        k: int,
        workers: int,
        reference_cache: int = 128,
    ):
        self.embedder = embedder
        self.index = index
        self.references = references  # indexed by reference id: brand, product, view, stored_path, phash
        self.image_root = Path(image_root)
        self.cue_cfg = cue_cfg
        self.wordmarks = {b.casefold(): w for b, w in wordmarks.items()}
        self.sellers = {b.casefold(): s for b, s in sellers.items()}
        self.limits = limits
        self.k = k
        self.workers = max(1, int(workers))
        self._brand_of = references["brand"].to_dict()
        self._product_of = references["product"].to_dict()
        self.known_brands = {b.casefold(): b for b in references["brand"].unique()}
        self.reference_image = ReferenceStore(self._load_reference, reference_cache)
        self.assets = BrandAssetCache(self._build_assets)
        self.feature_names = list(feature_names(cue_cfg))
        self.cheap_feature_names = list(feature_names(cue_cfg, expensive=False))

    @classmethod
    def from_config(cls, cfg: DictConfig, embedder: Embedder | None = None) -> ScoringContext:
        """The workspace's catalog snapshot and current index, with the configured embedder."""
        workspace = Workspace.from_config(cfg)
        embedder = embedder or embedder_for_index(cfg.embedder, workspace.index_dir)
        index = ReferenceIndex.load(
            workspace.index_dir, embedder.identity.to_dict(), IndexParams.from_config(cfg.index)
        )
        with Catalog.open(workspace) as catalog:
            references = references_frame(catalog, index.live_ids())
            wordmarks, sellers = catalog.wordmarks(), catalog.authorized_sellers()
        return cls(
            embedder,
            index,
            references,
            workspace.image_store,
            CueConfig.from_config(cfg.cues),
            wordmarks,
            sellers,
            DecodeLimits.from_config(cfg.images),
            k=int(cfg.index.k),
            workers=FeatureSettings.from_config(cfg.features).workers,
        )

    # ---- per-reference and per-brand lookups ---------------------------------------------------------
    def _load_reference(self, ref_id: int) -> np.ndarray:
        stored = self.references.at[int(ref_id), "stored_path"]
        return decode_image(self.image_root / stored, self.limits)

    def _build_assets(self, brand: str) -> BrandAssets | None:
        refs = self.references
        logo_ids = refs.index[(refs["brand"].str.casefold() == brand.casefold()) & (refs["view"] == "logo")]
        logos = {}
        for ref_id in logo_ids:
            try:
                logos[int(ref_id)] = self.reference_image(int(ref_id))
            except ImageDecodeError as error:
                log.warning("logo reference %s of %s unusable: %s", ref_id, brand, error)
        return build_brand_assets(
            brand,
            self.wordmarks.get(brand.casefold(), []),
            logos,
            self.cue_cfg,
            self.sellers.get(brand.casefold()),
        )

    def canonical_brand(self, claimed: str) -> str | None:
        return self.known_brands.get(str(claimed).strip().casefold())

    def brand_error(self, claimed: str) -> tuple[str, str] | None:
        """(reason, detail) when a listing claiming `claimed` cannot be scored at all: no references of it."""
        if self.canonical_brand(claimed) is None:
            return "unknown_brand", f"claimed brand {claimed!r} has no references"
        return None

    def reference_brand(self, ref_id: int | None) -> str | None:
        return None if ref_id is None else self._brand_of.get(ref_id)

    def reference_product(self, ref_id: int | None) -> str | None:
        return None if ref_id is None else self._product_of.get(ref_id)

    def neighbours(self, ids_row: np.ndarray, sims_row: np.ndarray) -> Neighbours:
        return Neighbours.from_search(ids_row, sims_row, self._brand_of, self._product_of)

    # ---- cues for one decoded, searched listing --------------------------------------------------------
    def cues(self, row: dict, rgb: np.ndarray, ids_row, sims_row, expensive: bool) -> CueResult:
        """Cheap cues, or the expensive ones, for one listing (the caller runs the cascade)."""
        brand = self.canonical_brand(row["claimed_brand"])
        args = (
            rgb,
            self.neighbours(ids_row, sims_row),
            brand,
            _blank_to_none(row.get("claimed_product")),
            _blank_to_none(row.get("seller_id")),
            self.assets(brand),
            self.reference_image,
            self.cue_cfg,
        )
        return expensive_cues(*args) if expensive else cheap_cues(*args)

    # ---- a batch of listings ------------------------------------------------------------------------
    def decode(self, rows: pd.DataFrame) -> tuple[list[np.ndarray | None], list[tuple[str, str] | None]]:
        """Decoded images, or (reason, detail) for each row that cannot be scored."""
        images: list[np.ndarray | None] = []
        errors: list[tuple[str, str] | None] = []
        for row in rows.itertuples(index=False):
            refused = self.brand_error(row.claimed_brand)
            if refused is not None:
                images.append(None)
                errors.append(refused)
                continue
            try:
                images.append(decode_image(row.image_path, self.limits))
                errors.append(None)
            except ImageDecodeError as error:
                images.append(None)
                errors.append((error.reason, error.detail))
        return images, errors

    def featurize(self, rows: pd.DataFrame, expensive: bool = True) -> FeatureTable:
        """Decode, embed, search and compute the cues of `rows` (expensive cues for all when asked)."""
        images, errors = self.decode(rows)
        return self.featurize_decoded(rows, images, errors, expensive)

    def featurize_decoded(
        self,
        rows: pd.DataFrame,
        images: list[np.ndarray | None],
        errors: list[tuple[str, str] | None],
        expensive: bool,
        vectors: np.ndarray | None = None,
    ) -> FeatureTable:
        """Like `featurize`, for images already decoded (and optionally already embedded)."""
        n, good = len(rows), [i for i, image in enumerate(images) if image is not None]
        embeddings = np.full((n, self.embedder.dim), np.nan, dtype=np.float32)
        if good:
            embeddings[good] = (
                vectors[good]
                if vectors is not None
                else self.embedder.embed_arrays([images[i] for i in good])
            )
        top_ids = np.full((n, self.k), -1, dtype=np.int64)
        top_scores = np.full((n, self.k), np.nan, dtype=np.float32)
        if good:
            found = self.index.search(embeddings[good], self.k)
            top_ids[good], top_scores[good] = found.ids, found.scores
        results = self._cue_results(rows, images, top_ids, top_scores, good, expensive)
        names = self.feature_names if expensive else self.cheap_feature_names
        matrix = np.full((n, len(names)), np.nan, dtype=np.float64)
        evidence: list[dict] = [{} for _ in range(n)]
        for i, result in results.items():
            matrix[i] = result.row(names)
            evidence[i] = {"cues": dict(result.evidence), "reasons": dict(result.reasons)}
            if result.failures:
                evidence[i]["failures"] = dict(result.failures)
        return FeatureTable(
            listing_ids=rows["listing_id"].astype(str).to_numpy(dtype=object),
            features=pd.DataFrame(matrix, columns=names),
            errors=np.array([e[0] if e else None for e in errors], dtype=object),
            error_details=np.array([e[1] if e else "" for e in errors], dtype=object),
            top_ids=top_ids,
            top_scores=top_scores,
            embeddings=embeddings,
            evidence=evidence,
            timings_ms=_timings(results, n),
        )

    def add_expensive(
        self, rows: pd.DataFrame, images: list[np.ndarray | None], table: FeatureTable, run: np.ndarray
    ) -> FeatureTable:
        """`table` (cheap columns) widened to every feature column: logo and OCR cues for the rows in `run`.

        This is the second stage of the cascade: the neighbours found for the cheap cues are reused, and
        rows outside `run` get NaN expensive cues with the reason "skipped by the cascade".
        """
        expensive_names = [name for name in self.feature_names if name not in self.cheap_feature_names]
        run = np.asarray(run, dtype=bool) & table.ok
        chosen = [int(i) for i in np.flatnonzero(run)]
        results = self._cue_results(rows, images, table.top_ids, table.top_scores, chosen, None)
        features = table.features.copy()
        for name in expensive_names:
            features[name] = np.nan
        evidence = [dict(e) for e in table.evidence]
        skipped = dict.fromkeys(expensive_names, "skipped by the cascade")
        for i in np.flatnonzero(table.ok):
            result = results.get(int(i))
            if result is None:
                evidence[i] = {**evidence[i], "reasons": {**evidence[i].get("reasons", {}), **skipped}}
                continue
            features.loc[i, expensive_names] = result.row(expensive_names)
            failures = {**evidence[i].get("failures", {}), **result.failures}
            evidence[i] = {
                "cues": {**evidence[i].get("cues", {}), **result.evidence},
                "reasons": {**evidence[i].get("reasons", {}), **result.reasons},
            }
            if failures:
                evidence[i]["failures"] = failures
        timings = table.timings_ms.join(_timings(results, len(rows)), how="left")
        return replace(table, features=features[self.feature_names], evidence=evidence, timings_ms=timings)

    def _cue_results(
        self,
        rows: pd.DataFrame,
        images: list[np.ndarray | None],
        top_ids: np.ndarray,
        top_scores: np.ndarray,
        chosen: list[int],
        expensive: bool | None,
    ) -> dict[int, CueResult]:
        """Cues of the `chosen` rows on the thread pool: cheap (False), cheap + expensive (True) or expensive only (None)."""
        records = rows.to_dict(orient="records")

        def one(i: int) -> CueResult:
            args = (records[i], images[i], top_ids[i], top_scores[i])
            if expensive is None:
                return self.cues(*args, expensive=True)
            cheap = self.cues(*args, expensive=False)
            return cheap.merged(self.cues(*args, expensive=True)) if expensive else cheap

        with ThreadPoolExecutor(self.workers) as pool:
            return dict(zip(chosen, pool.map(one, chosen), strict=True))

    def featurize_all(
        self, listings: pd.DataFrame, expensive: bool = True, progress: bool = False
    ) -> FeatureTable:
        """`featurize` in embedder-sized chunks, with a progress bar."""
        from tqdm import tqdm

        chunk = max(self.embedder.batch_size, 32)
        tables = []
        with tqdm(total=len(listings), unit="listing", desc="features", disable=not progress) as bar:
            for start in range(0, len(listings), chunk):
                rows = listings.iloc[start : start + chunk]
                tables.append(self.featurize(rows, expensive))
                bar.update(len(rows))
        return FeatureTable.concat(tables)


class ReferenceStore:
    """Reference id -> decoded image (LRU of `maxsize` images), plus `memo`: what cues derive from them.

    Once a reference's cheap-cue statistics are in `memo` (packaging print statistics, perceptual hash:
    ~3 KiB per reference), its image is not needed again for them, so a small image LRU (up to ~2.3 MiB
    per image, once per scoring lane) serves; the memo is bounded too: at `memo_size` entries it starts
    over. Shared by the cue threads (dict operations are atomic; two threads computing the same entry at
    once both store the same value).
    """

    def __init__(self, load: Callable[[int], np.ndarray], maxsize: int, memo_size: int = 16384):
        self._cached = lru_cache(maxsize=maxsize)(load)
        self.memo = _BoundedMemo(memo_size)

    def __call__(self, ref_id: int) -> np.ndarray:
        return self._cached(ref_id)


class _BoundedMemo(dict):
    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value) -> None:
        if len(self) >= self.limit:
            self.clear()
        super().__setitem__(key, value)


def count_cue_failures(rows: Iterable[Iterable[str]]) -> dict[str, dict[str, int]]:
    """ "group: ExceptionType" entries (a `cue_failures` column) -> {group: {type: listings}}."""
    counts: dict[str, dict[str, int]] = {}
    for entries in rows:
        for entry in entries:
            group, _, kind = str(entry).partition(": ")
            counts.setdefault(group, {})
            counts[group][kind] = counts[group].get(kind, 0) + 1
    return {group: dict(sorted(kinds.items())) for group, kinds in sorted(counts.items())}


def format_cue_failures(counts: dict[str, dict[str, int]]) -> str:
    """ "logo 3 (ValueError 2, KeyError 1); text 1 (RuntimeError 1)", or "none"."""
    parts = [
        f"{group} {sum(kinds.values())} ({', '.join(f'{kind} {n}' for kind, n in kinds.items())})"
        for group, kinds in counts.items()
    ]
    return "; ".join(parts) or "none"


def references_frame(catalog: Catalog, ids: np.ndarray | None = None) -> pd.DataFrame:
    """Reference metadata by id (brand, product, view, stored_path, phash): the index's ids explained."""
    refs = catalog.list_references(status=["approved", "indexed", "pending", "withdrawn"])
    frame = pd.DataFrame(
        [(r.id, r.brand, r.product, r.view, r.stored_path, r.phash) for r in refs],
        columns=["id", "brand", "product", "view", "stored_path", "phash"],
    ).set_index("id")
    if ids is not None:
        frame = frame.loc[frame.index.intersection(pd.Index(np.asarray(ids, dtype=np.int64)))]
    return frame


def _timings(results: dict[int, CueResult], n: int) -> pd.DataFrame:
    """Milliseconds per cue group per row (NaN where the group did not run for that row)."""
    groups = sorted({group for result in results.values() for group in result.timings_ms})
    frame = pd.DataFrame(np.nan, index=range(n), columns=groups, dtype=np.float64)
    for i, result in results.items():
        for group, ms in result.timings_ms.items():
            frame.at[i, group] = ms
    return frame


def _blank_to_none(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None
