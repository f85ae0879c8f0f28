"""int8 embedders: the backbone quantised by NNCF on a workspace's own reference photos, behind an accuracy gate.

`calibrated_embedder(settings, paths, limits)` draws the calibration set from the given reference files (by
content, so the same photos give the same set whatever their ids or order): `int8.calibration_images` of
them, or all of them filled up with seeded augmented views (crop, flip, colour jitter) when there are fewer;
below `int8.min_references` it refuses. The quantised IR is cached under `embedder.onnx_cache`, keyed by
the fp32 graph, the preprocessing, the calibration set's sha256 and the library versions, so rebuilding an
index over the same references gives the same model, hence the same embedder identity. The gate embeds
held-out reference views (references left out of the calibration when there are enough, else other
augmented views) in fp32 and int8 and refuses the model when their mean cosine is below `int8.min_cosine`.

The caller saves `Embedder.model_files` with what it builds (the index version, and so every bundle
copied from it): scoring elsewhere needs those files, never the references again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from brandsentry.embed import Embedder, EmbedderSettings, Preprocessing
from brandsentry.embed_openvino import Int8Settings, quantise, recipe
from brandsentry.embed_runtime import resolve_cache_dir
from brandsentry.errors import BrandsentryError
from brandsentry.files import file_sha256
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image

log = logging.getLogger(__name__)

AUGMENTATION = "crop0.6-1,ratio3/4-4/3,flip0.5,jitter0.2:v1"  # part of the cache key: change it with the code


class CalibrationError(BrandsentryError):
    """Too few usable references to calibrate an int8 embedder on."""


class Int8GateError(BrandsentryError):
    """The quantised backbone strays too far from fp32 on held-out reference views."""


def embedder_for_references(
    settings: EmbedderSettings, paths: Sequence[Path], limits: DecodeLimits
) -> Embedder:
    """The embedder an index of these reference files is built with: int8 calibrated on them (as `brandsentry
    index build` does on a workspace), fp32 as configured. For evaluations that index a folder."""
    if settings.precision == "int8":
        return calibrated_embedder(settings, paths, limits)
    return Embedder.from_config(settings)


def calibrated_embedder(settings: EmbedderSettings, paths: Sequence[Path], limits: DecodeLimits) -> Embedder:
    """An int8 embedder calibrated on the reference files `paths` (cached), after passing the gate."""
    int8 = settings.int8
    fp32 = Embedder.from_config(replace(settings, precision="fp32", runtime="openvino"))
    photos, chosen, held_out = _draw(paths, int8)
    key = calibration_key(fp32, chosen, int8, limits)
    xml = resolve_cache_dir(settings.onnx_cache) / f"{fp32.identity.arch}-int8-{key}.xml"
    added = int8.calibration_images - len(chosen)
    log.info(
        "int8 calibration set of %s: %d reference photo(s)%s, model %s",
        fp32.identity.arch,
        len(chosen),
        f" + {added} augmented views of them (fewer than {int8.calibration_images} references)"
        if added
        else "",
        "cached" if xml.is_file() else "quantised now",
    )
    if not xml.is_file():
        rng = np.random.default_rng([int8.seed, 1])
        samples = _views(
            [photos[s] for s in chosen], int8.calibration_images, fp32.preprocessing, limits, rng
        )
        quantise(fp32.backbone_file, samples, lambda rgb: fp32.preprocess(rgb).numpy()[None], xml)
    embedder = Embedder.from_config(settings, int8_model=xml)
    _gate(fp32, embedder, [photos[s] for s in held_out or chosen], bool(held_out), int8, limits)
    return embedder


def _draw(paths: Sequence[Path], int8: Int8Settings) -> tuple[dict[str, Path], list[str], list[str]]:
    """(photo by sha256, the calibration photos, the held-out probe photos or none): drawn by content,
    so the same photos give the same sets whatever their order or names."""
    photos = {file_sha256(Path(p)): Path(p) for p in paths if Path(p).is_file()}
    if len(photos) < int8.min_references:
        raise CalibrationError(
            f"embedder.precision=int8 calibrates on the workspace's references: {len(photos)} distinct "
            f"reference photo(s), at least embedder.int8.min_references={int8.min_references} needed; "
            "add references or use embedder.precision=fp32"
        )
    shas = sorted(photos)
    order = np.random.default_rng([int8.seed, 0x1A78]).permutation(len(shas))
    chosen = [shas[i] for i in order[: int8.calibration_images]]
    held_out = [shas[i] for i in order[int8.calibration_images :]][: int8.probe_images]
    return photos, chosen, held_out if len(held_out) == int8.probe_images else []


def _gate(
    fp32: Embedder, int8: Embedder, photos: list[Path], held_out: bool, settings: Int8Settings, limits
) -> None:
    """Refuse `int8` when its vectors of probe views stray from fp32's (held-out photos, or other
    augmented views of the calibration photos when too few were left out)."""
    rng = np.random.default_rng([settings.seed, 2])
    views = _views(photos, settings.probe_images, fp32.preprocessing, limits, rng, augment_all=not held_out)
    cosine = gate_cosine(fp32, int8, views)
    source = "held-out references" if held_out else "augmented views of the calibration references"
    if not cosine >= settings.min_cosine:
        raise Int8GateError(
            f"int8 embedder {int8.identity.key()} fails the accuracy gate: mean cosine to fp32 "
            f"{cosine:.4f} on {len(views)} {source} < embedder.int8.min_cosine={settings.min_cosine}; use "
            "embedder.precision=fp32 (or another calibration: more references, embedder.int8.seed)"
        )
    log.info(
        "int8 embedder %s: mean cosine to fp32 %.4f on %d %s (gate %.3f)",
        int8.identity.key(), cosine, len(views), source, settings.min_cosine,
    )  # fmt: skip


def calibration_key(fp32: Embedder, chosen: Sequence[str], int8: Int8Settings, limits: DecodeLimits) -> str:
    """Everything that shapes the quantised model: graph, preprocessing, calibration set, recipe."""
    parts = {
        "graph": Path(fp32.backbone_file).name,  # the export's own cache key (weights, pooling, opset, ...)
        "identity": fp32.identity.to_dict(),  # preprocessing decides the calibration tensors
        "calibration": hashlib.sha256("\n".join(chosen).encode()).hexdigest(),
        "size": int8.calibration_images,
        "seed": int8.seed,
        "augmentation": AUGMENTATION,
        "limits": asdict(limits),
        **recipe(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def gate_cosine(fp32: Embedder, int8: Embedder, views: Sequence[np.ndarray]) -> float:
    """Mean cosine between the fp32 and int8 vectors of the same views."""
    batch = torch.stack([fp32.preprocess(rgb) for rgb in views])
    return float(np.mean(np.sum(fp32.embed_batch(batch) * int8.embed_batch(batch), axis=1)))


def _views(
    paths: Sequence[Path],
    count: int,
    preprocessing: Preprocessing,
    limits: DecodeLimits,
    rng: np.random.Generator,
    augment_all: bool = False,
) -> list[np.ndarray]:
    """`count` RGB arrays: each decodable photo once (unless `augment_all`), then augmented views of them
    in turn until `count` (decoded at the preprocessing's resize size, as the embedder decodes)."""
    photos = []
    for path in paths:
        try:
            photos.append(decode_image(path, limits, target_size=preprocessing.resize_size))
        except ImageDecodeError as error:
            log.warning("int8 calibration skips %s: %s", path, error)
    if not photos:
        raise CalibrationError(
            f"none of the {len(paths)} reference photo(s) chosen for int8 calibration decodes"
        )
    views = [] if augment_all else photos[:count]
    while len(views) < count:
        views.append(augmented(photos[len(views) % len(photos)], rng))
    return views


def augmented(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random view of a photo: a crop of 60-100% of its area (aspect 3/4-4/3), a flip half the time,
    brightness, contrast and saturation each scaled by 0.8-1.2."""
    height, width = rgb.shape[:2]
    area, ratio = rng.uniform(0.6, 1.0), float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    crop_w = max(1, min(width, round(width * np.sqrt(area * ratio))))
    crop_h = max(1, min(height, round(height * np.sqrt(area / ratio))))
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    view = rgb[top : top + crop_h, left : left + crop_w].astype(np.float32)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    view = view * rng.uniform(0.8, 1.2)
    view = (view - view.mean()) * rng.uniform(0.8, 1.2) + view.mean()
    grey = view.mean(axis=2, keepdims=True)
    view = (view - grey) * rng.uniform(0.8, 1.2) + grey
    return np.ascontiguousarray(np.clip(np.rint(view), 0, 255).astype(np.uint8))
