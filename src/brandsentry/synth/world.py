"""Writing a synthetic world to disk: references, brand assets, authorised sellers and daily listing manifests.

Every image is seeded from (seed, stream, day, item index) alone, so the bytes do not depend on the number
of worker processes or on scheduling. Manifests are planned in the parent process and written atomically
after all their images exist; `world.json` is written last, so a folder with it holds a complete world.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import multiprocessing
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.synth.brands import (
    COUNTERFEIT_KINDS,
    MAX_BRANDS,
    STREAM_DAY,
    STREAM_LISTING,
    STREAM_REFERENCE,
    Brand,
    Design,
    Product,
    Seller,
    WorldModel,
    WorldParams,
    build_world,
    counterfeit_design,
    new_sellers,
    rgb_of,
    rng_for,
)
from brandsentry.synth.photo import (
    Shot,
    derived_copy,
    encode_jpeg,
    flat_shot,
    listing_shot,
    not_a_product,
    reference_shot,
    take_photo,
    undecodable,
)
from brandsentry.synth.render import (
    apply_print_defect,
    front_aspect,
    render_emblem,
    render_front,
    render_logo,
    render_package,
)

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"
ERROR_KINDS = ("not_a_product", "undecodable")
LISTING_COLUMNS = (
    "listing_id", "image_path", "claimed_brand", "claimed_product", "title", "price", "seller_id", "label",
    "counterfeit_kind", "split",
)  # fmt: skip
REFERENCE_COLUMNS = ("image_path", "brand", "product", "view")
TITLE_SUFFIXES = (
    "",
    "",
    " - new",
    " (sealed)",
    " - fast shipping",
    " original",
    " NEW in box",
    " - gift idea",
)
NOT_A_PRODUCT_VARIANTS = {"landscape": ".jpg", "placeholder": ".png", "screenshot": ".png", "surface": ".jpg"}
UNDECODABLE_VARIANTS = ("truncated", "garbage", "html", "empty")


class SynthWorldError(BrandsentryError):
    """The output folder holds no complete world, or a world made with other parameters."""


@dataclass(frozen=True)
class SynthParams:
    """Everything that decides the content; `out`, `day` and `workers` never change a byte."""

    world: WorldParams
    references_per_product: int
    logo_closeups: int
    packaging_closeups: int
    listings: int
    counterfeit_rate: float
    counterfeit_mix: tuple[tuple[str, float], ...]
    min_per_kind: int
    not_a_product: int
    undecodable: int
    authorized_reuse: float
    detail_shots: float
    new_sellers_per_day: int
    drift: float
    resolution: tuple[int, int]

    @classmethod
    def from_config(cls, cfg: Mapping) -> SynthParams:
        def number(key: str, kind=int, low: float | None = None, high: float | None = None):
            if key not in cfg or cfg[key] is None:
                raise ConfigError(f"synth.{key} is not set")
            try:
                value = kind(cfg[key])
            except (TypeError, ValueError):
                raise ConfigError(f"synth.{key} must be a {kind.__name__}, got {cfg[key]!r}") from None
            if (low is not None and value < low) or (high is not None and value > high):
                raise ConfigError(f"synth.{key}={value} is outside [{low}, {high}]")
            return value

        mix = dict(cfg.get("counterfeit_mix") or {})
        unknown = sorted(set(mix) - set(COUNTERFEIT_KINDS))
        if unknown:
            raise ConfigError(
                f"synth.counterfeit_mix has unknown kinds {unknown}; known: {list(COUNTERFEIT_KINDS)}"
            )
        weights = tuple((kind, float(mix.get(kind, 0.0))) for kind in COUNTERFEIT_KINDS)
        if any(w < 0 for _, w in weights) or sum(w for _, w in weights) <= 0:
            raise ConfigError(f"synth.counterfeit_mix weights must be >= 0 with a positive sum, got {mix}")
        split_cfg = dict(cfg.get("split") or {})
        split = tuple(float(split_cfg.get(name, 0.0)) for name in ("train", "validation", "test"))
        if any(s < 0 for s in split) or not math.isclose(sum(split), 1.0, abs_tol=1e-6) or split[0] <= 0:
            raise ConfigError(f"synth.split fractions must be >= 0, train > 0, and sum to 1; got {split_cfg}")
        resolution_cfg = dict(cfg.get("resolution") or {})
        resolution = (int(resolution_cfg.get("min", 400)), int(resolution_cfg.get("max", 1600)))
        if not 64 <= resolution[0] <= resolution[1] <= 4096:
            raise ConfigError(f"synth.resolution needs 64 <= min <= max <= 4096, got {resolution_cfg}")
        params = cls(
            world=WorldParams(
                seed=number("seed", int, 0),
                brands=number("brands", int, 1, MAX_BRANDS),
                products_per_brand=number("products_per_brand", int, 1, 10),
                authorized_per_brand=number("authorized_per_brand", int, 1, 20),
                seller_pool=number("seller_pool", int, 3, 900),
                split=split,
            ),
            references_per_product=number("references_per_product", int, 1, 50),
            logo_closeups=number("logo_closeups", int, 0, 10),
            packaging_closeups=number("packaging_closeups", int, 0, 10),
            listings=number("listings", int, 1, 1_000_000),
            counterfeit_rate=number("counterfeit_rate", float, 0.0, 1.0),
            counterfeit_mix=weights,
            min_per_kind=number("min_per_kind", int, 0),
            not_a_product=number("not_a_product", int, 0),
            undecodable=number("undecodable", int, 0),
            authorized_reuse=number("authorized_reuse", float, 0.0, 1.0),
            detail_shots=number("detail_shots", float, 0.0, 1.0),
            new_sellers_per_day=number("new_sellers_per_day", int, 0, 999),
            drift=number("drift", float, 0.0, 2.0),
            resolution=resolution,
        )
        founders = params.world.authorized_per_brand * params.world.brands + params.world.seller_pool
        if founders > 1000:
            raise ConfigError(
                f"synth.authorized_per_brand x brands + seller_pool = {founders}: at most 1000 founding sellers"
            )
        needed = params.not_a_product + params.undecodable + params.min_per_kind * len(COUNTERFEIT_KINDS) + 1
        if params.listings < needed:
            raise ConfigError(
                f"synth.listings={params.listings} is too few: not_a_product + undecodable + "
                f"min_per_kind x {len(COUNTERFEIT_KINDS)} kinds + 1 authentic = {needed}"
            )
        return params

    def world_dict(self) -> dict:
        """The parameters a world (brands, references, sellers) is made of; days must agree on them."""
        return {
            **asdict(self.world),
            "split": list(self.world.split),
            "references_per_product": self.references_per_product,
            "logo_closeups": self.logo_closeups,
            "packaging_closeups": self.packaging_closeups,
            "resolution": list(self.resolution),
        }

    def day_dict(self) -> dict:
        return {
            "listings": self.listings,
            "counterfeit_rate": self.counterfeit_rate,
            "counterfeit_mix": dict(self.counterfeit_mix),
            "min_per_kind": self.min_per_kind,
            "not_a_product": self.not_a_product,
            "undecodable": self.undecodable,
            "authorized_reuse": self.authorized_reuse,
            "detail_shots": self.detail_shots,
            "new_sellers_per_day": self.new_sellers_per_day,
            "drift": self.drift,
        }


@dataclass(frozen=True)
class WorldSummary:
    """What `generate_world` wrote."""

    out_dir: Path
    seed: int
    brands: int
    products: int
    references: int
    references_manifest: Path
    listings_manifest: Path
    listings: int
    kinds: dict[str, int] = field(
        default_factory=dict
    )  # day 1: listings per counterfeit kind ("" = authentic)
    seconds: float = 0.0


@dataclass(frozen=True)
class ImageJob:
    """One image file to make; everything random in it comes from `entropy`."""

    path: str  # relative to the world folder
    # reference_product | reference_logo | reference_packaging: studio photo or close-up of a genuine product;
    # listing | listing_detail: a seller's photo (or logo close-up) of a genuine or counterfeit design;
    # copy: an official photo reused; not_a_product | undecodable: the error path
    task: str
    entropy: tuple[int, ...]
    product: int = -1  # index into WorldModel.products
    kind: str = ""  # counterfeit kind for listings
    variant: str = ""  # not_a_product / undecodable variant
    source: str = ""  # the reference a copy is made from


# ---------------------------------------------------------------------------------------------- public API


def generate_world(out_dir: str | Path, cfg_synth: Mapping, workers: int | None = None) -> WorldSummary:
    """Brands, references, authorised sellers and day 1's listings under `out_dir` (the same seed, the same bytes)."""
    started = time.perf_counter()
    params = SynthParams.from_config(cfg_synth)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = out / "world.json"
    if stale.exists():
        stale.unlink()  # an interrupted rewrite must not look complete
    world = build_world(params.world)
    worker_count = _workers(cfg_synth, workers)
    references = reference_jobs(world, params)
    _run_jobs(out, params, references, worker_count)
    _write_csv(out / "references.csv", REFERENCE_COLUMNS, [_reference_row(world, job) for job in references])
    _write_brand_assets(out, world)
    _write_csv(
        out / "authorized_sellers.csv",
        ("brand", "seller_id"),
        [{"brand": b.name, "seller_id": s} for b in world.brands for s in b.authorized_sellers],
    )
    manifest, rows = _generate_listings(out, params, world, 1, references, worker_count)
    write_bytes(out / "world.json", _json_bytes(_world_record(params)))
    kinds = Counter(row["counterfeit_kind"] for row in rows)
    summary = WorldSummary(
        out_dir=out,
        seed=params.world.seed,
        brands=len(world.brands),
        products=len(world.products),
        references=len(references),
        references_manifest=out / "references.csv",
        listings_manifest=manifest,
        listings=len(rows),
        kinds=dict(sorted(kinds.items())),
        seconds=time.perf_counter() - started,
    )
    log.info(
        "synthetic world in %s: %d brands, %d products, %d references, %d listings (%.1f s)",
        out,
        summary.brands,
        summary.products,
        summary.references,
        summary.listings,
        summary.seconds,
    )
    return summary


def generate_day(out_dir: str | Path, cfg_synth: Mapping, day: int, workers: int | None = None) -> Path:
    """Day `day`'s listing manifest from the world already in `out_dir`; returns the manifest's path."""
    if int(day) < 1:
        raise ConfigError(f"day must be >= 1, got {day}")
    params = SynthParams.from_config(cfg_synth)
    out = Path(out_dir)
    record_path = out / "world.json"
    if not record_path.is_file():
        raise SynthWorldError(
            f"no synthetic world in {out} (world.json missing): run `brandsentry synth world` first"
        )
    record = json.loads(record_path.read_text())
    if record.get("version") != GENERATOR_VERSION:
        raise SynthWorldError(
            f"world in {out} was made by generator version {record.get('version')!r}, this is {GENERATOR_VERSION!r}"
        )
    expected = json.loads(_json_bytes(params.world_dict()))
    differing = sorted(k for k in expected if record.get("world", {}).get(k) != expected[k])
    if differing:
        details = ", ".join(
            f"{k}: world {record['world'].get(k)!r} vs config {expected[k]!r}" for k in differing
        )
        raise SynthWorldError(f"world in {out} was made with other parameters ({details})")
    world = build_world(params.world)
    references = reference_jobs(world, params)
    manifest, _ = _generate_listings(out, params, world, int(day), references, _workers(cfg_synth, workers))
    return manifest


# ---------------------------------------------------------------------------------------------- planning


def reference_jobs(world: WorldModel, params: SynthParams) -> list[ImageJob]:
    jobs = []
    seed = params.world.seed
    for index, product in enumerate(world.products):
        folder = f"references/{world.brand(product.brand).slug}/{product.id}"
        views = (
            [("reference_product", "product", k) for k in range(params.references_per_product)]
            + [("reference_logo", "logo", k) for k in range(params.logo_closeups)]
            + [("reference_packaging", "packaging", k) for k in range(params.packaging_closeups)]
        )
        for code, (task, view, k) in enumerate(views):
            jobs.append(
                ImageJob(f"{folder}/{view}_{k:02d}.jpg", task, (seed, STREAM_REFERENCE, index, code), index)
            )
    return jobs


def _reference_row(world: WorldModel, job: ImageJob) -> dict:
    product = world.products[job.product]
    return {
        "image_path": job.path,
        "brand": product.brand,
        "product": product.id,
        "view": job.task.split("_", 1)[1],
    }


def day_mix(params: SynthParams, day: int) -> tuple[float, dict[str, float]]:
    """The day's counterfeit rate and mix: exactly the configured ones on day 1, drifting afterwards."""
    rate, mix = params.counterfeit_rate, dict(params.counterfeit_mix)
    if day == 1 or params.drift == 0:
        return rate, mix
    rng = rng_for(params.world.seed, STREAM_DAY, day, 2)
    z = rng.standard_normal(len(mix) + 1)
    mix = {kind: weight * math.exp(params.drift * z[k]) for k, (kind, weight) in enumerate(mix.items())}
    rate = min(0.9, max(0.05, rate * math.exp(0.5 * params.drift * z[-1])))
    return rate, mix


def allocate(total: int, weights: Mapping[str, float], minimum: int) -> dict[str, int]:
    """`total` items over `weights` by largest remainder, each kind getting at least `minimum`."""
    counts = {kind: minimum for kind in weights}
    spare = max(0, total - minimum * len(weights))
    norm = sum(weights.values())
    shares = {kind: spare * w / norm for kind, w in weights.items()}
    for kind, share in shares.items():
        counts[kind] += int(share)
    left = spare - sum(int(s) for s in shares.values())
    for kind in sorted(shares, key=lambda k: (-(shares[k] - int(shares[k])), k))[:left]:
        counts[kind] += 1
    return counts


@dataclass(frozen=True)
class _Planned:
    row: dict
    job: ImageJob


def plan_day(
    world: WorldModel, params: SynthParams, day: int, references: Sequence[ImageJob]
) -> list[_Planned]:
    """Every listing of `day`: its manifest row and the image job that makes its file."""
    seed = params.world.seed
    rng = rng_for(seed, STREAM_DAY, day, 0)
    rate, mix = day_mix(params, day)
    n_products = params.listings - params.not_a_product - params.undecodable
    n_counterfeit = min(n_products - 1, max(round(rate * n_products), params.min_per_kind * len(mix)))
    counts = allocate(n_counterfeit, mix, params.min_per_kind)
    n_authentic = n_products - sum(counts.values())
    n_reuse = round(params.authorized_reuse * n_authentic)
    entries = [("authentic", "", "reuse")] * n_reuse + [("authentic", "", "")] * (n_authentic - n_reuse)
    for kind, count in counts.items():
        entries += [("counterfeit", kind, "")] * count
    entries += [
        ("counterfeit", "not_a_product", str(rng.choice(list(NOT_A_PRODUCT_VARIANTS))))
        for _ in range(params.not_a_product)
    ]
    entries += [
        ("counterfeit", "undecodable", str(rng.choice(UNDECODABLE_VARIANTS)))
        for _ in range(params.undecodable)
    ]
    order = rng.permutation(len(entries))
    entries = [entries[i] for i in order]

    sellers = list(world.sellers)
    for joined in range(2, day + 1):
        sellers += new_sellers(params.world, joined, params.new_sellers_per_day)
    by_behaviour: dict[str, list[Seller]] = {}
    for seller in sellers:
        by_behaviour.setdefault(seller.behaviour, []).append(seller)
    products = world.products
    product_refs: dict[int, list[str]] = {}
    for job in references:
        if job.task == "reference_product":
            product_refs.setdefault(job.product, []).append(job.path)

    planned = []
    for i, (label, kind, variant) in enumerate(entries):
        listing_id = f"d{day}-{i:06d}"
        index = int(rng.integers(len(products)))
        product = products[index]
        brand = world.brand(product.brand)
        entropy = (seed, STREAM_LISTING, day, i)
        seller = _pick_seller(rng, brand, by_behaviour, label, kind, variant)
        price = _price(rng, product, label, kind, seller)
        suffix = ".jpg"
        if kind == "not_a_product":
            suffix = NOT_A_PRODUCT_VARIANTS[variant]
            job = ImageJob("", "not_a_product", entropy, index, kind, variant)
        elif kind == "undecodable":
            job = ImageJob("", "undecodable", entropy, index, kind, variant)
        elif kind == "stolen_photo" or variant == "reuse":
            source = str(rng.choice(product_refs[index]))
            job = ImageJob("", "copy", entropy, index, kind, source=source)
        else:
            task = "listing_detail" if rng.random() < params.detail_shots else "listing"
            job = ImageJob("", task, entropy, index, kind)
        path = f"listings/day{day}/{listing_id}{suffix}"
        job = ImageJob(path, job.task, job.entropy, job.product, job.kind, job.variant, job.source)
        title = f"{brand.name} {product.name} {product.size}{rng.choice(TITLE_SUFFIXES)}"
        row = {
            "listing_id": listing_id,
            "image_path": path,
            "claimed_brand": brand.name,
            "claimed_product": product.id,
            "title": title,
            "price": f"{price:.2f}",
            "seller_id": seller.id,
            "label": label,
            "counterfeit_kind": kind,
            "split": product.split,
        }
        planned.append(_Planned(row, job))
    return planned


def _pick_seller(
    rng: np.random.Generator,
    brand: Brand,
    by_behaviour: dict[str, list[Seller]],
    label: str,
    kind: str,
    variant: str,
) -> Seller:
    """Authorised sellers list the brand's own photos; counterfeits come mostly from counterfeiters."""
    authorised = [s for s in by_behaviour.get("authorized", []) if s.brand == brand.name]
    if variant == "reuse":
        pool = authorised
    elif label == "authentic":
        choice = rng.choice(["authorized", "reseller", "mixed"], p=[0.3, 0.5, 0.2])
        pool = authorised if choice == "authorized" else by_behaviour.get(str(choice), [])
    elif kind in ERROR_KINDS:
        pool = [s for group in ("reseller", "mixed", "counterfeiter") for s in by_behaviour.get(group, [])]
    else:
        group = "counterfeiter" if rng.random() < 0.65 else "mixed"
        pool = by_behaviour.get(group, [])
    pool = (
        pool
        or [s for s in by_behaviour.get("counterfeiter", []) + by_behaviour.get("mixed", [])]
        or authorised
    )
    return pool[int(rng.integers(len(pool)))]


def _price(rng: np.random.Generator, product: Product, label: str, kind: str, seller: Seller) -> float:
    if label == "authentic":
        factor = rng.uniform(0.95, 1.05) if seller.behaviour == "authorized" else rng.uniform(0.82, 1.18)
    elif kind == "stolen_photo":
        factor = rng.uniform(0.45, 0.95)
    elif kind in ERROR_KINDS:
        factor = rng.uniform(0.3, 1.1)
    else:
        factor = rng.uniform(0.35, 1.0)
    return round(product.price * float(factor), 2)


# ---------------------------------------------------------------------------------------------- rendering


def render_job(world: WorldModel, params: SynthParams, job: ImageJob, out: Path) -> bytes:
    """The bytes of one image file."""
    rng = rng_for(*job.entropy)
    long_side = params.resolution
    if job.task == "copy":
        return derived_copy((out / job.source).read_bytes(), rng)
    if job.task == "not_a_product":
        return not_a_product(rng, long_side, job.variant)
    if job.task == "undecodable":
        shot = listing_shot(rng, (long_side[0], min(long_side[1], 640)))
        sample = encode_jpeg(take_photo(np.zeros((8, 8, 4), np.uint8), shot, rng), shot.quality)
        return undecodable(rng, sample, job.variant)
    product = world.products[job.product]
    design = product.design
    if job.task.startswith("reference"):
        index = job.entropy[-1]
        shot = reference_shot(rng, index, long_side)
        if job.task == "reference_product":
            obj = render_package(design, shot.object_size, shot.yaw, shot.pitch, shot.light, rng)
            return encode_jpeg(take_photo(obj, shot, rng), shot.quality)
        return encode_jpeg(_closeup(design, job.task == "reference_logo", shot, rng), shot.quality)
    if job.kind:
        design = counterfeit_design(product, job.kind, rng, world)
    shot = listing_shot(rng, long_side)
    if job.task == "listing_detail":
        return encode_jpeg(_closeup(design, True, shot, rng), shot.quality)
    obj = render_package(design, shot.object_size, shot.yaw, shot.pitch, shot.light, rng)
    return encode_jpeg(take_photo(obj, shot, rng), shot.quality)


def _closeup(design: Design, logo_only: bool, shot: Shot, rng: np.random.Generator) -> np.ndarray:
    """The logo area (or the whole front panel) of the printed packaging, filling most of the frame."""
    fill = int(max(shot.width, shot.height) * 0.85)
    aspect = front_aspect(design.packaging)
    # printed near the size it is shown at: the logo spans ~0.8 of a portrait face's width, ~0.4 of a landscape one's
    face_w = int(fill / (0.4 if aspect < 1 else 0.8)) if logo_only else int(fill / max(aspect, 1.0))
    face, (x0, y0, x1, y1) = render_front(design, face_w, round(face_w * aspect))
    face = apply_print_defect(face, design, rng)
    if logo_only:  # framed loosely or tightly, off centre: no two close-ups the same
        mx0, mx1, my0, my1 = (
            int(extent * rng.uniform(0.06, 0.4)) + 4 for extent in (x1 - x0, x1 - x0, y1 - y0, y1 - y0)
        )
        face = face[max(0, y0 - my0) : y1 + my1, max(0, x0 - mx0) : x1 + mx1]
    scale = min(shot.width * 0.85 / face.shape[1], shot.height * 0.85 / face.shape[0])
    size = (max(8, round(face.shape[1] * scale)), max(8, round(face.shape[0] * scale)))
    face = cv2.resize(face, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    shot = replace(shot, perspective=min(shot.perspective, 0.04), occlusion="")
    return flat_shot(np.ascontiguousarray(face), shot, rng)


def _render_to_file(out: Path, params: SynthParams, job: ImageJob) -> None:
    write_bytes(out / job.path, render_job(build_world(params.world), params, job, out))


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _run_jobs(out: Path, params: SynthParams, jobs: Sequence[ImageJob], workers: int) -> None:
    folders = {(out / job.path).parent for job in jobs}
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    render = partial(_render_to_file, out, params)
    if workers <= 1 or len(jobs) < 8:
        for job in jobs:
            render(job)
        return
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        for _ in pool.map(render, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8)))):
            pass


def _generate_listings(
    out: Path, params: SynthParams, world: WorldModel, day: int, references: Sequence[ImageJob], workers: int
) -> tuple[Path, list[dict]]:
    planned = plan_day(world, params, day, references)
    missing = sorted({p.job.source for p in planned if p.job.source and not (out / p.job.source).is_file()})
    if missing:
        raise SynthWorldError(f"references missing from {out} (first: {missing[0]}): regenerate the world")
    _run_jobs(out, params, [p.job for p in planned], workers)
    manifest = out / f"listings_day{day}.csv"
    rows = [p.row for p in planned]
    _write_csv(manifest, LISTING_COLUMNS, rows)
    return manifest, rows


def _workers(cfg_synth: Mapping, workers: int | None) -> int:
    if workers is not None:
        return max(1, int(workers))
    configured = int(cfg_synth.get("workers", 0) or 0)
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------- files


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temp, 0o644)  # mkstemp makes 0600; a world is meant to be read by other users and servers
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes(path, buffer.getvalue().encode("utf-8"))


def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _world_record(params: SynthParams) -> dict:
    return {
        "generator": "brandsentry.synth",
        "version": GENERATOR_VERSION,
        "seed": params.world.seed,
        "world": params.world_dict(),
        "day": params.day_dict(),
        "counterfeit_kinds": list(COUNTERFEIT_KINDS),
        "error_kinds": list(ERROR_KINDS),
    }


def _write_brand_assets(out: Path, world: WorldModel) -> None:
    """brands.json (wordmarks, fonts, palettes, emblems, products) and each brand's logo and emblem PNGs."""
    brands = []
    for brand in world.brands:
        paper = rgb_of(brand.palette.paper)
        design = brand.products[0].design
        folder = f"brands/{brand.slug}"
        for name, image in (("logo", render_logo(design, 240)), ("emblem", render_emblem(brand.emblem, 240))):
            canvas = Image.new("RGBA", (image.width + 40, image.height + 40), (*paper, 255))
            canvas.alpha_composite(image, (20, 20))
            buffer = io.BytesIO()
            canvas.convert("RGB").save(buffer, format="PNG", compress_level=6)
            write_bytes(out / folder / f"{name}.png", buffer.getvalue())
        brands.append(
            {
                "name": brand.name,
                "slug": brand.slug,
                "category": brand.category,
                "wordmark": brand.wordmark,
                "font": brand.font,
                "palette": {k: v for k, v in asdict(brand.palette).items() if k != "secondary"},
                "emblem": asdict(brand.emblem) | {"description": brand.emblem.describe()},
                "tagline": brand.tagline,
                "logo_image": f"{folder}/logo.png",
                "emblem_image": f"{folder}/emblem.png",
                "authorized_sellers": list(brand.authorized_sellers),
                "products": [
                    {
                        "id": p.id,
                        "name": p.name,
                        "packaging": p.packaging,
                        "size": p.size,
                        "price": p.price,
                        "split": p.split,
                        "colour": p.design.palette.secondary,
                        "text_lines": list(p.design.lines),
                    }
                    for p in brand.products
                ],
            }
        )
    record = {
        "generator": "brandsentry.synth",
        "version": GENERATOR_VERSION,
        "seed": world.params.seed,
        "brands": brands,
    }
    write_bytes(out / "brands.json", _json_bytes(record))
