"""Reference intake: validate a brand's photo, deduplicate it, store its bytes and record it in the catalog.

Every input ends as exactly one `IngestOutcome` (accepted, duplicate or rejected with a reason), so a batch
never drops a photo silently. Exact duplicates are the same bytes anywhere in the catalog; near duplicates
are photos of the same brand within `phash_threshold` bits of perceptual hash (re-encoded, resized copies).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path, PurePath

from PIL import Image

from brandsentry.catalog import VIEWS, Catalog, Reference
from brandsentry.config import require
from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.files import atomic_write_bytes, fsync_directory
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image, perceptual_hash, read_bytes
from brandsentry.settings import load_settings

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("image_path", "brand", "product", "view")
# Decode only as much as the perceptual hash needs (JPEG draft); the whole file is still decoded and checked.
PHASH_DECODE_SIZE = 256
_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
_FORMAT_SUFFIX = {
    "JPEG": ".jpg",
    "MPO": ".jpg",  # camera JPEGs with extra pictures (stereo, depth) appended
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}
# EXIF orientations that rotate by 90 degrees (width and height swap once the image is upright).
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}


class ManifestError(BrandsentryError, ValueError):
    """A reference manifest that cannot be read at all (missing file, missing columns)."""


class ImageStore:
    """Content-addressed image files: `root/ab/cd/<sha256><suffix>`, written atomically, never named by users."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def relative_path(self, sha256: str, suffix: str) -> str:
        if not _SUFFIX.match(suffix):
            raise ValueError(f"image store suffix must look like '.jpg', got {suffix!r}")
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}{suffix}"

    def path_of(self, stored_path: str) -> Path:
        """Absolute path of a catalog `stored_path`."""
        return self.root / stored_path

    def put(self, data: bytes, suffix: str) -> tuple[str, Path]:
        """Store `data` (once per content) and return its sha256 and path, atomically."""
        sha256, suffix = hashlib.sha256(data).hexdigest(), suffix.lower()
        path = self.path_of(self.relative_path(sha256, suffix))
        if path.is_file() and path.stat().st_size == len(data):
            return sha256, path
        new_directories = [d for d in (path.parent.parent, path.parent) if not d.is_dir()]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        for directory in {d.parent for d in new_directories}:  # make the new folders' names durable too
            fsync_directory(directory)
        return sha256, path


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one submitted photo. `reason` is a short code; `detail` says more."""

    source: str
    status: str  # accepted | duplicate | rejected
    reference_id: int | None = None
    duplicate_of: int | None = None
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class IngestReport:
    """The outcomes of a batch, in input order."""

    outcomes: tuple[IngestOutcome, ...]

    @property
    def accepted(self) -> list[IngestOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "accepted"]

    @property
    def duplicates(self) -> list[IngestOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "duplicate"]

    @property
    def rejected(self) -> list[IngestOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == "rejected"]

    def format(self) -> str:
        """Every outcome, grouped: accepted (new id), duplicates (id already held), rejected (why)."""
        lines = [
            f"{len(self.outcomes)} submitted: {len(self.accepted)} accepted, "
            f"{len(self.duplicates)} duplicate, {len(self.rejected)} rejected"
        ]
        for outcome in self.accepted:
            lines.append(f"  accepted   {outcome.source} -> reference {outcome.reference_id}")
        for outcome in self.duplicates:
            lines.append(
                f"  duplicate  {outcome.source} -> already held as reference {outcome.duplicate_of}"
                f" ({outcome.reason}{': ' + outcome.detail if outcome.detail else ''})"
            )
        for outcome in self.rejected:
            lines.append(
                f"  rejected   {outcome.source}: {outcome.reason}{' (' + outcome.detail + ')' if outcome.detail else ''}"
            )
        for outcome in self.outcomes:
            lines.extend(f"  warning    {outcome.source}: {warning}" for warning in outcome.warnings)
        return "\n".join(lines)


@dataclass(frozen=True)
class IngestConfig:
    """The `ingest` config group (configs/ingest/)."""

    phash_threshold: int  # Hamming distance at or below which a photo of the brand is a near duplicate
    views: tuple[str, ...]  # views a reference may have (a subset of the catalog's)
    auto_approve: bool  # operators' imports are approved at once (the portal's uploads never are)
    min_side: int  # px: photos shorter than this on their shorter side get a low_resolution warning

    def __post_init__(self) -> None:
        unknown = sorted(set(self.views) - set(VIEWS))
        if unknown:
            raise ConfigError(f"ingest.views has unknown view(s) {unknown}; the catalog knows {list(VIEWS)}")

    @classmethod
    def from_config(cls, ingest_cfg) -> IngestConfig:
        return load_settings(cls, ingest_cfg, "ingest")


@dataclass(frozen=True)
class IngestSettings:
    """The intake knobs of `ingest_reference`/`import_references`: the `ingest` group with the decode limits
    of `cfg.images` and whether this caller's references are approved at once."""

    limits: DecodeLimits
    phash_threshold: int
    approve: bool
    views: tuple[str, ...]
    min_side: int

    @classmethod
    def from_config(cls, cfg, approve: bool | None = None) -> IngestSettings:
        """`approve=None` takes `ingest.auto_approve` (operators); the portal passes False (brand uploads)."""
        ingest = IngestConfig.from_config(require(cfg, "ingest"))
        return cls(
            limits=DecodeLimits.from_config(require(cfg, "images")),
            phash_threshold=ingest.phash_threshold,
            approve=ingest.auto_approve if approve is None else approve,
            views=ingest.views,
            min_side=ingest.min_side,
        )

    def as_kwargs(self) -> dict:
        return {item.name: getattr(self, item.name) for item in fields(self)}


def safe_source_name(name: str | None) -> str | None:
    """The bare file name of a submission, for display only (directories and control characters dropped)."""
    if not name:
        return None
    bare = PurePath(name.replace("\\", "/")).name
    bare = "".join(char for char in bare if char.isprintable())[:255]
    return bare or None


def _header_facts(data: bytes) -> tuple[str, int, int, int]:
    """Format suffix, upright width and height, and frame count, from the header of already-decoded bytes."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if image.getexif().get(0x0112) in _TRANSPOSED_ORIENTATIONS:
            width, height = height, width
        fmt = image.format or ""
        frames = getattr(image, "n_frames", 1)
    return _FORMAT_SUFFIX.get(fmt, "." + (fmt.lower() or "img")), width, height, frames


def ingest_reference(
    catalog: Catalog,
    store: ImageStore,
    source: Path | bytes,
    *,
    brand: str,
    product: str,
    view: str,
    submitted_by: str,
    source_name: str | None = None,
    limits: DecodeLimits,
    phash_threshold: int,
    approve: bool,
    views: Sequence[str],
    min_side: int,
) -> IngestOutcome:
    """Validate, deduplicate, store and record one reference photo.

    Rejections (with `reason`): empty brand/product, unknown view, and every `ImageDecodeError` reason.
    The duplicate checks and the insert run in one write transaction, so concurrent uploads of the same
    photo yield one accepted reference and duplicates of it.
    """
    if not submitted_by or not submitted_by.strip():
        raise ValueError(f"submitted_by must name who submits (got {submitted_by!r})")
    is_bytes = isinstance(source, bytes | bytearray)
    label = source_name or ("<bytes>" if is_bytes else str(source))
    name = safe_source_name(source_name if source_name or is_bytes else str(source))
    brand, product, view = (brand or "").strip(), (product or "").strip(), (view or "").strip().lower()

    def rejected(reason: str, detail: str = "") -> IngestOutcome:
        return IngestOutcome(source=label, status="rejected", reason=reason, detail=detail)

    if not brand:
        return rejected("missing_brand")
    if not product:
        return rejected("missing_product")
    if view not in views:
        return rejected("unknown_view", f"{view!r} is not one of {', '.join(views)}")
    try:
        data = read_bytes(source, limits)  # read once: the bytes checked are the bytes stored
        pixels = decode_image(data, limits, PHASH_DECODE_SIZE, name=label)
    except ImageDecodeError as exc:
        return rejected(exc.reason, exc.detail)
    suffix, width, height, frames = _header_facts(data)
    warnings = []
    if min(width, height) < min_side:
        warnings.append(f"low_resolution: {width}x{height} is below {min_side} px on the shorter side")
    if frames > 1:
        warnings.append(f"multi_frame: the first of {frames} frames is used")
    phash = str(perceptual_hash(pixels))
    sha256 = hashlib.sha256(data).hexdigest()

    with catalog.write():
        held = catalog.find_by_sha256(sha256)
        if held is not None:
            return _duplicate(
                label, held, "exact_duplicate", f"same bytes as reference {held.id} ({held.brand})"
            )
        near = catalog.near_duplicates(phash, phash_threshold, brand=brand)
        if near:
            closest, distance = near[0]
            return _duplicate(
                label,
                closest,
                "near_duplicate",
                f"perceptual hash {distance} bits from reference {closest.id}",
            )
        stored_sha, path = store.put(data, suffix)
        reference = catalog.add_reference(
            brand=brand,
            product=product,
            view=view,
            sha256=stored_sha,
            phash=phash,
            stored_path=path.relative_to(store.root).as_posix(),
            width=width,
            height=height,
            submitted_by=submitted_by.strip(),
            status="approved" if approve else "pending",
            source_name=name,
        )
    return IngestOutcome(source=label, status="accepted", reference_id=reference.id, warnings=tuple(warnings))


def _duplicate(label: str, held: Reference, reason: str, detail: str) -> IngestOutcome:
    return IngestOutcome(source=label, status="duplicate", duplicate_of=held.id, reason=reason, detail=detail)


def read_manifest(manifest: Path) -> list[dict[str, str]]:
    """Rows of a reference manifest (CSV or Parquet) as strings; missing columns fail before any work."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise ManifestError(f"reference manifest {manifest} does not exist")
    if manifest.suffix.lower() == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(manifest)
        frame.columns = [str(column).strip() for column in frame.columns]
        columns = list(frame.columns)
        rows = frame.astype("string").fillna("").to_dict(orient="records")
    else:
        try:
            with manifest.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                columns = [column.strip() for column in reader.fieldnames or []]
                reader.fieldnames = columns
                rows = [
                    {key: (value or "") for key, value in row.items() if key is not None} for row in reader
                ]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ManifestError(f"reference manifest {manifest} is not a readable CSV: {exc}") from None
    missing = [column for column in MANIFEST_COLUMNS if column not in columns]
    if missing:
        raise ManifestError(
            f"reference manifest {manifest} lacks column(s) {', '.join(missing)} "
            f"(needs {', '.join(MANIFEST_COLUMNS)}; has {', '.join(columns) or 'none'})"
        )
    return rows


def import_references(
    catalog: Catalog,
    store: ImageStore,
    manifest: Path,
    *,
    submitted_by: str,
    limits: DecodeLimits,
    phash_threshold: int,
    approve: bool,
    views: Sequence[str],
    min_side: int,
) -> IngestReport:
    """Ingest every row of a manifest (`image_path, brand, product, view`); one outcome per row, in order.

    Relative image paths resolve against the manifest's folder. Outcome sources read `path (row N)`, N
    counting the header as row 1. An empty `view` cell means `product` (with a warning saying so).
    """
    from tqdm import tqdm

    manifest = Path(manifest)
    rows = read_manifest(manifest)
    outcomes = []
    for number, row in enumerate(tqdm(rows, desc="references", unit="img", disable=None), start=2):
        image_path = row["image_path"].strip()
        if not image_path:
            outcomes.append(
                IngestOutcome(source=f"(row {number})", status="rejected", reason="missing_image_path")
            )
            continue
        view = row["view"].strip()
        outcome = guarded_ingest(
            catalog,
            store,
            manifest.parent / image_path,
            brand=row["brand"],
            product=row["product"],
            view=view or "product",
            submitted_by=submitted_by,
            source_name=image_path,
            limits=limits,
            phash_threshold=phash_threshold,
            approve=approve,
            views=views,
            min_side=min_side,
        )
        warnings = ("view not given; taken as 'product'",) if not view else ()
        outcomes.append(
            replace(outcome, source=f"{image_path} (row {number})", warnings=warnings + outcome.warnings)
        )
    return IngestReport(tuple(outcomes))


def ingest_files(
    catalog: Catalog,
    store: ImageStore,
    files: Sequence[Path],
    *,
    brand: str,
    product: str,
    view: str,
    submitted_by: str,
    limits: DecodeLimits,
    phash_threshold: int,
    approve: bool,
    views: Sequence[str],
    min_side: int,
) -> IngestReport:
    """Ingest several photos of one brand product and view; one outcome per file, in order."""
    return IngestReport(
        tuple(
            guarded_ingest(
                catalog,
                store,
                Path(path),
                brand=brand,
                product=product,
                view=view,
                submitted_by=submitted_by,
                source_name=str(path),
                limits=limits,
                phash_threshold=phash_threshold,
                approve=approve,
                views=views,
                min_side=min_side,
            )
            for path in files
        )
    )


def guarded_ingest(catalog: Catalog, store: ImageStore, source: Path | bytes, **options) -> IngestOutcome:
    """`ingest_reference` at a batch edge: a failure that is not the photo's fault still becomes an outcome."""
    label = options.get("source_name") or (
        "<bytes>" if isinstance(source, bytes | bytearray) else str(source)
    )
    try:
        return ingest_reference(catalog, store, source, **options)
    except Exception as exc:
        log.exception("ingesting %s failed", label)
        return IngestOutcome(
            source=label, status="rejected", reason="internal_error", detail=f"{type(exc).__name__}: {exc}"
        )
