"""Writing a synthetic world to disk: references, brand assets, authorised sellers and daily listing manifests.

Every image is seeded from (seed, stream, day, item index) alone, so the bytes do not depend on the number
of worker processes or on scheduling. Manifests are planned in the parent process (`synth.plan`) and written
atomically after all their images exist; `world.json` is written last, so a folder with it holds a complete
world.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
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
from brandsentry.files import atomic_write_bytes
from brandsentry.synth.brands import (
    COUNTERFEIT_KINDS,
    Design,
    WorldModel,
    build_world,
    counterfeit_design,
    rgb_of,
    rng_for,
)
from brandsentry.synth.objects import render_package
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
from brandsentry.synth.plan import (
    ERROR_KINDS,
    LISTING_COLUMNS,
    REFERENCE_COLUMNS,
    ImageJob,
    SynthParams,
    plan_day,
    reference_jobs,
    reference_row,
)
from brandsentry.synth.render import (
    apply_print_defect,
    front_aspect,
    render_emblem,
    render_front,
    render_logo,
)

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"


class SynthWorldError(BrandsentryError):
    """The output folder holds no complete world, or a world made with other parameters."""


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


# ---------------------------------------------------------------------------------------------- public API


def generate_world(
    out_dir: str | Path, cfg_synth: Mapping | SynthParams, workers: int | None = None
) -> WorldSummary:
    """Brands, references, authorised sellers and day 1's listings under `out_dir` (the same seed, the same
    bytes); `cfg_synth` is the `synth` config (or its settings), `workers` overrides its `workers`."""
    started = time.perf_counter()
    params = _params(cfg_synth)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = out / "world.json"
    if stale.exists():
        stale.unlink()  # an interrupted rewrite must not look complete
    world = build_world(params.world)
    worker_count = _workers(params, workers)
    references = reference_jobs(world, params)
    _run_jobs(out, params, references, worker_count)
    _write_csv(out / "references.csv", REFERENCE_COLUMNS, [reference_row(world, job) for job in references])
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


def generate_day(
    out_dir: str | Path, cfg_synth: Mapping | SynthParams, day: int, workers: int | None = None
) -> Path:
    """Day `day`'s listing manifest from the world already in `out_dir`; returns the manifest's path."""
    if int(day) < 1:
        raise ConfigError(f"day must be >= 1, got {day}")
    params = _params(cfg_synth)
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
    manifest, _ = _generate_listings(out, params, world, int(day), references, _workers(params, workers))
    return manifest


# ---------------------------------------------------------------------------------------------- rendering


def render_job(world: WorldModel, params: SynthParams, job: ImageJob, out: Path) -> bytes:
    """The bytes of one image file."""
    rng = rng_for(*job.entropy)
    long_side = params.long_side
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


def _params(cfg_synth: Mapping | SynthParams) -> SynthParams:
    return cfg_synth if isinstance(cfg_synth, SynthParams) else SynthParams.from_config(cfg_synth)


def _workers(params: SynthParams, workers: int | None) -> int:
    if workers is not None:
        return max(1, int(workers))
    return params.workers if params.workers > 0 else max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------- files


def write_bytes(path: Path, data: bytes) -> None:
    """Atomic, and readable by all (0644): a world is meant to be read by other users and servers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data, mode=0o644)


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
