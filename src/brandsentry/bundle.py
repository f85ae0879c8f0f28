"""The scoring bundle: everything that turns a listing into a decision, as one versioned directory.

A bundle pins what a score means: the embedder identity, a copy of the index version the model was trained
against, the reference metadata and brand assets the cues read, the cheap and full models (calibration
inside) with their decision thresholds, and the resolved config of every stage. The batch scorer, the
pyfunc and notebooks all load it the same way and score with the same cascade:

    bundle = registry.load_bundle("models:/brandsentry@champion", workspace)   # or ScoringBundle.load(DIR)
    context = bundle.context()                     # embedder + the bundle's own index and snapshot
    images, errors = context.decode(rows)          # or decode/embed in your own pipeline ...
    results = bundle.score_batch(rows, images, errors, vectors=None)   # ... and hand the vectors over

Layout (`bundle.json` names the format):

    bundle.json          identity, index version, image root, feature names, training metrics, digests
    config.yaml          resolved config: embedder, images, index, cues, features, classifier, seed
    model.pkl            the `CascadeClassifier` (cheap + full calibrated models, thresholds)
    thresholds.json      the decision rule as data (a readable copy of what model.pkl holds)
    references.parquet   reference id -> brand, product, view, stored_path, phash
    assets.json          brand wordmarks and authorised sellers
    index/               CURRENT + the copied index version (a loadable `ReferenceIndex` root)
"""

from __future__ import annotations

import json
import math
import pickle
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from brandsentry.classify import CascadeClassifier
from brandsentry.cues import CueConfig, feature_names
from brandsentry.embed import Embedder, EmbedderIdentity
from brandsentry.errors import BrandsentryError
from brandsentry.features import OPTIONAL_LISTING_COLUMNS, FeatureSettings, ScoringContext
from brandsentry.files import atomic_folder, atomic_write_text
from brandsentry.images import DecodeLimits
from brandsentry.index import (
    CURRENT,
    EmbedderMismatchError,
    IndexParams,
    ReferenceIndex,
    latest_manifest,
)
from brandsentry.index_sync import embedder_for_index

BUNDLE_FORMAT = 2  # 2: the cascade's escalation band is learned (model.band), not configured
BUNDLE_FILE = "bundle.json"
CONFIG_SECTIONS = ("embedder", "images", "index", "cues", "features", "classifier", "seed")

__all__ = [
    "BUNDLE_FORMAT",
    "BundleError",
    "BundleMetadata",
    "EmbedderMismatchError",
    "ScoringBundle",
    "bundle_root",
    "output_columns",
    "write_bundle",
]


class BundleError(BrandsentryError):
    """A path or URI that does not hold a usable scoring bundle (missing files, unknown format, bad URI)."""


@dataclass(frozen=True)
class BundleMetadata:
    """What `bundle.json` says about a bundle: provenance, the feature contract and training results."""

    model_name: str
    created_at: str  # ISO 8601, UTC
    embedder: dict  # EmbedderIdentity.to_dict()
    index_version: int  # the workspace index version the model was trained against (copied into index/)
    image_root: str  # where reference images (stored_path) are read from
    feature_names: list[str]  # the cue columns scoring computes and writes (the enabled cues)
    cheap_feature_names: list[str]
    model_feature_names: list[str] = field(default_factory=list)  # those the models read (cheap and full)
    dropped_features: dict[str, str] = field(default_factory=dict)  # enabled cues training dropped, and why
    cascade_band: dict = field(default_factory=dict)  # classify.EscalationBand learned on validation
    dataset_digest: str = ""  # sha256 of the labelled manifest rows
    validation_digest: str = ""  # sha256 of the validation rows (auto-promotion compares on equal digests)
    metrics: dict[str, float] = field(default_factory=dict)  # training summary (validation and test)
    run_id: str = ""
    format: int = BUNDLE_FORMAT

    @classmethod
    def read(cls, directory: Path) -> BundleMetadata:
        path = directory / BUNDLE_FILE
        if not path.is_file():
            raise BundleError(f"{directory} is not a scoring bundle (no {BUNDLE_FILE})")
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != BUNDLE_FORMAT:
            raise BundleError(
                f"{path}: bundle format {data.get('format')!r} is not {BUNDLE_FORMAT}; "
                "train a new one with `brandsentry train`"
            )
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in known})


def output_columns(feature_columns: list[str]) -> list[str]:
    """The columns of `score_batch`'s result, in order."""
    return [
        "listing_id",
        "claimed_brand",
        "score",
        "decision",
        "threshold",
        "review_threshold",
        "top_ref_ids",
        "top_similarities",
        "top_ref_brand",
        "top_ref_product",
        *feature_columns,
        "escalated",
        "cue_failures",
        "error",
        "error_detail",
        "model_version",
        "evidence",
    ]


def write_bundle(
    directory: Path,
    metadata: BundleMetadata,
    config: DictConfig,
    model: CascadeClassifier,
    context: ScoringContext,
    index_root: Path,
) -> Path:
    """Write a bundle atomically (temp dir, then rename); `directory` must not exist yet.

    `context` supplies the reference snapshot and brand assets, `index_root` the saved index version that
    `context.index` was loaded from (it is copied, so later index updates never change the bundle).
    """
    directory = Path(directory)
    if directory.exists():
        raise BundleError(f"bundle directory {directory} already exists")
    if metadata.embedder != context.embedder.identity.to_dict():
        raise EmbedderMismatchError(
            f"bundle metadata names embedder {metadata.embedder}, the context has "
            f"{context.embedder.identity.to_dict()}"
        )
    source = Path(index_root) / f"v{metadata.index_version:06d}"
    if not (source / "manifest.json").is_file():
        raise BundleError(f"index version {metadata.index_version} is no longer under {index_root}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(directory, mode=0o755) as temp:  # a bundle is read by other users and services
        shutil.copytree(source, temp / "index" / source.name)
        (temp / "index" / CURRENT).write_text(source.name + "\n", encoding="utf-8")
        if latest_manifest(temp / "index").embedder != metadata.embedder:
            raise EmbedderMismatchError(
                f"index version {metadata.index_version} under {index_root} was built by another embedder "
                f"than {metadata.embedder}"
            )
        sections = {key: config[key] for key in CONFIG_SECTIONS if key in config}
        (temp / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(sections), resolve=True))
        with open(temp / "model.pkl", "wb") as handle:
            pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
        _write_json(temp / "thresholds.json", model.thresholds())
        context.references.to_parquet(temp / "references.parquet")
        assets = {
            "wordmarks": context.wordmarks,
            "authorized_sellers": {brand: sorted(sellers) for brand, sellers in context.sellers.items()},
        }
        _write_json(temp / "assets.json", assets)
        _write_json(temp / BUNDLE_FILE, asdict(metadata))
    return directory


class ScoringBundle:
    """A loaded bundle: `context()` for decode/embed/cues, `score_batch`/`score_frame` for decisions."""

    def __init__(self, path: Path, version: str | None = None):
        self.path = Path(path)
        self.metadata = BundleMetadata.read(self.path)
        self.version = version or self.path.name
        self.identity = EmbedderIdentity.from_dict(self.metadata.embedder)
        index_embedder = latest_manifest(self.path / "index").embedder
        if index_embedder != self.metadata.embedder:
            raise EmbedderMismatchError(
                f"bundle {self.path} is for embedder {self.metadata.embedder} but its index was built "
                f"with {index_embedder}: the bundle is inconsistent and is refused"
            )
        self.config: DictConfig = OmegaConf.load(self.path / "config.yaml")
        cue_cfg = CueConfig.from_config(self.config.cues)
        if list(feature_names(cue_cfg)) != self.metadata.feature_names:
            raise BundleError(
                f"bundle {self.path}: cue config yields features {list(feature_names(cue_cfg))}, "
                f"the model was trained on {self.metadata.feature_names}"
            )
        with open(self.path / "model.pkl", "rb") as handle:
            self.model: CascadeClassifier = pickle.load(handle)
        unknown = [name for name in self.model.feature_names if name not in self.metadata.feature_names]
        if unknown:
            raise BundleError(
                f"bundle {self.path}: the model reads cue(s) {unknown} that scoring does not compute"
            )
        self.references = pd.read_parquet(self.path / "references.parquet")
        assets = json.loads((self.path / "assets.json").read_text(encoding="utf-8"))
        self.wordmarks: dict[str, list[str]] = assets["wordmarks"]
        self.sellers = {brand: frozenset(s) for brand, s in assets["authorized_sellers"].items()}
        self._context: ScoringContext | None = None

    # ---- loading ----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> ScoringBundle:
        """The bundle in a directory: itself, or the one pyfunc artifact a downloaded MLflow model holds.

        Registry and run URIs (`models:/...`, `runs:/...`) resolve through MLflow: `registry.open_bundle`.
        """
        path = Path(path)
        if not path.is_dir():
            raise BundleError(
                f"{path} is neither a bundle directory nor (through registry.open_bundle) a models:/ or "
                "runs:/ URI"
            )
        return cls(bundle_root(path))

    def __getstate__(self) -> dict:
        # The context (torch model, FAISS index, caches) is rebuilt where the bundle is unpickled (Ray workers).
        return {**self.__dict__, "_context": None}

    # ---- what it holds ------------------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return list(self.metadata.feature_names)

    @property
    def cheap_feature_names(self) -> list[str]:
        return list(self.metadata.cheap_feature_names)

    def embedder(self, embedder_cfg=None) -> Embedder:
        """A new embedder for this bundle: its config (or `embedder_cfg`, e.g. with other threads), and for
        precision=int8 the quantised model saved with its index."""
        return embedder_for_index(
            self.config.embedder if embedder_cfg is None else embedder_cfg, self.path / "index"
        )

    def context(
        self, embedder: Embedder | None = None, image_root: Path | None = None, workers: int | None = None
    ) -> ScoringContext:
        """The scoring context built from the bundle's own index copy and snapshot (cached).

        Pass `embedder` to share one already built; it must have the bundle's identity. `image_root`
        overrides where reference images are read (the training workspace's image store by default).
        """
        cached = self._context
        if (
            cached is not None
            and embedder in (None, cached.embedder)
            and image_root is None
            and workers is None
        ):
            return cached
        if embedder is None:
            embedder = cached.embedder if cached is not None else self.embedder()
        if embedder.identity != self.identity:
            raise EmbedderMismatchError(
                f"bundle {self.version} needs embedder {self.metadata.embedder}, "
                f"got {embedder.identity.to_dict()}"
            )
        index = ReferenceIndex.load(
            self.path / "index", self.metadata.embedder, IndexParams.from_config(self.config.index)
        )
        self._context = ScoringContext(
            embedder,
            index,
            self.references,
            Path(image_root or self.metadata.image_root),
            CueConfig.from_config(self.config.cues),
            self.wordmarks,
            self.sellers,
            DecodeLimits.from_config(self.config.images),
            k=int(self.config.index.k),
            workers=int(
                workers if workers is not None else FeatureSettings.from_config(self.config.features).workers
            ),
        )
        return self._context

    # ---- scoring -------------------------------------------------------------------------------------------
    def score_batch(
        self,
        rows: pd.DataFrame,
        images: list[np.ndarray | None],
        errors: list[tuple[str, str] | None],
        vectors: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """One result row per input row, same order: the cascade's calibrated score and decision.

        `images`/`errors` come from `context().decode(rows)` (or an equivalent decode edge); `vectors`,
        when given, are the embeddings of the decoded rows (row-aligned, ignored where `images[i]` is None).
        Cheap cues → cheap model → its escalation band → logo + OCR cues for those rows only → full model.
        """
        if not (len(rows) == len(images) == len(errors)):
            raise ValueError(f"{len(rows)} rows, {len(images)} images and {len(errors)} errors must agree")
        context = self.context()
        rows = rows.reset_index(drop=True)
        table = context.featurize_decoded(rows, images, errors, expensive=False, vectors=vectors)
        ok = table.ok
        cheap_scores = np.full(len(rows), np.nan)
        escalated = np.zeros(len(rows), dtype=bool)
        if ok.any():
            cheap_scores[ok], escalated[ok] = self.model.triage(
                table.features.loc[ok], context.cue_cfg.cascade.enabled
            )
        table = context.add_expensive(rows, images, table, escalated)
        scores = self.model.combine(cheap_scores, escalated, table.features)
        brands = np.array([context.canonical_brand(b) or str(b) for b in rows["claimed_brand"]], dtype=object)
        decisions = np.full(len(rows), "error", dtype=object)
        thresholds = np.full(len(rows), np.nan)
        if ok.any():
            decisions[ok], thresholds[ok] = self.model.decide(scores[ok], brands[ok])
        out = pd.DataFrame(
            {
                "listing_id": table.listing_ids,
                "claimed_brand": rows["claimed_brand"].astype(str).to_numpy(dtype=object),
                "score": scores,
                "decision": decisions,
                "threshold": thresholds,
                "review_threshold": thresholds * self.model.review_factor,
                "top_ref_ids": [[int(i) for i in ids if i >= 0] for ids in table.top_ids],
                "top_similarities": [
                    [float(s) for i, s in zip(ids, sims, strict=True) if i >= 0]
                    for ids, sims in zip(table.top_ids, table.top_scores, strict=True)
                ],
            }
        )
        nearest = [next((int(i) for i in ids if i >= 0), None) for ids in table.top_ids]
        out["top_ref_brand"] = [context.reference_brand(i) for i in nearest]
        out["top_ref_product"] = [context.reference_product(i) for i in nearest]
        features = table.features.reindex(columns=self.feature_names)
        out = pd.concat([out, features.reset_index(drop=True)], axis=1)
        out["escalated"] = escalated
        out["cue_failures"] = table.cue_failures()
        out["error"] = table.errors
        out["error_detail"] = [detail or None for detail in table.error_details]  # null, as `error`, when ok
        out["model_version"] = self.version
        out["evidence"] = [json.dumps(e, default=_json_default, sort_keys=True) for e in table.evidence]
        return out[output_columns(self.feature_names)]

    def score_frame(self, listings: pd.DataFrame, chunk: int = 256) -> pd.DataFrame:
        """Decode + `score_batch` for a DataFrame of (listing_id?, image_path, claimed_brand, ...).

        `image_path` is used as given (absolute, or relative to the working directory). Missing
        `listing_id`s become the row positions.
        """
        missing = [c for c in ("image_path", "claimed_brand") if c not in listings.columns]
        if missing:
            raise BundleError(f"listings to score lack column(s) {missing}")
        rows = listings.reset_index(drop=True).copy()
        if "listing_id" not in rows.columns:
            rows["listing_id"] = [str(i) for i in range(len(rows))]
        for column in OPTIONAL_LISTING_COLUMNS:
            if column not in rows.columns:
                rows[column] = ""
        rows = rows.fillna("").astype({c: str for c in ("listing_id", "image_path", "claimed_brand")})
        context = self.context()
        parts = []
        for start in range(0, len(rows), chunk):
            part = rows.iloc[start : start + chunk].reset_index(drop=True)
            images, errors = context.decode(part)
            parts.append(self.score_batch(part, images, errors))
        if not parts:
            return pd.DataFrame(columns=output_columns(self.feature_names))
        return pd.concat(parts, ignore_index=True)


def bundle_root(directory: Path) -> Path:
    """The bundle inside `directory`: itself, or the one pyfunc artifact a logged model holds."""
    directory = Path(directory)
    if (directory / BUNDLE_FILE).is_file():
        return directory
    found = sorted(directory.glob(f"artifacts/*/{BUNDLE_FILE}")) + sorted(
        directory.glob(f"*/artifacts/*/{BUNDLE_FILE}")
    )
    if not found:
        raise BundleError(f"{directory} is not a scoring bundle (no {BUNDLE_FILE}) and holds none")
    if len(found) > 1:
        raise BundleError(f"{directory} holds {len(found)} scoring bundles, expected exactly one")
    return found[0].parent


def _write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
