"""int8 embedders: the backbone quantised by NNCF on a workspace's own reference photos, behind an accuracy gate.

`calibrated_embedder(settings, paths, limits)` draws the calibration set from the given reference files (by
content, so the same photos give the same set whatever their ids or order): `int8.calibration_images` of
them, or all of them filled up with seeded augmented views (crop, flip, colour jitter) when there are fewer;
below `int8.min_references` it refuses. The quantised IR is cached under `embedder.onnx_cache`, keyed by
the fp32 graph, the preprocessing, the calibration set's sha256 and the recipe, so rebuilding an index over
the same references gives the same model, hence the same embedder identity.

The gate is self-retrieval, what the index lives on: `int8.probe_images` fresh augmented views of the
calibration photos (another seed than any calibration view) are searched among the photos themselves, each
precision in its own space; the int8 model is refused when its R@1 (the view finds its own photo) falls more
than `int8.max_recall_drop` below fp32's, or when the mean cosine of its probe vectors to fp32's is below
`int8.min_cosine` (a floor against a broken model: int8 vectors are not fp32 vectors, ~0.85 on GroZi-120).

The caller saves `Embedder.model_files` with what it builds (the index version, and so every bundle
copied from it): scoring elsewhere needs those files, never the references again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

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
    """The quantised backbone retrieves worse than fp32 (or strays too far from it) on reference views."""


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
    photos = _draw(paths, int8)
    key = calibration_key(fp32, sorted(photos), int8, limits)
    xml = resolve_cache_dir(settings.onnx_cache) / f"{fp32.identity.arch}-int8-{key}.xml"
    decoded = _decode(list(photos.values()), fp32.preprocessing, limits)
    added = int8.calibration_images - len(decoded)
    log.info(
        "int8 calibration set of %s: %d reference photo(s)%s, model %s",
        fp32.identity.arch,
        len(decoded),
        f" + {added} augmented views of them (fewer than {int8.calibration_images} references)"
        if added
        else "",
        "cached" if xml.is_file() else "quantised now",
    )
    if not xml.is_file():
        views = decoded + _augmented_views(decoded, added, np.random.default_rng([int8.seed, 1]))
        quantise(fp32.backbone_file, views, lambda rgb: fp32.preprocess(rgb).numpy()[None], xml)
    embedder = Embedder.from_config(settings, int8_model=xml)
    gate = Gate.measure(fp32, embedder, decoded, int8)
    if not gate.passes(int8):
        raise Int8GateError(
            f"int8 embedder {embedder.identity.key()} fails the accuracy gate ({gate.describe()}; "
            f"embedder.int8.max_recall_drop={int8.max_recall_drop}, min_cosine={int8.min_cosine}): use "
            "embedder.precision=fp32, or another calibration (more references, embedder.int8.seed)"
        )
    log.info("int8 embedder %s passes the accuracy gate: %s", embedder.identity.key(), gate.describe())
    return embedder


@dataclass(frozen=True)
class Gate:
    """Self-retrieval of augmented reference views in fp32 and int8, and their int8-to-fp32 cosine."""

    probes: int
    recall_fp32: float  # share of probe views whose nearest photo is their own
    recall_int8: float
    cosine: float  # mean cosine of the int8 and fp32 vectors of the same probe views

    @classmethod
    def measure(
        cls, fp32: Embedder, int8: Embedder, photos: list[np.ndarray], settings: Int8Settings
    ) -> Gate:
        rng = np.random.default_rng([settings.seed, 2])  # not a calibration view's seed
        sources = np.arange(settings.probe_images) % len(photos)
        views = [augmented(photos[i], rng) for i in sources]
        queries, recalls = {}, {}
        for name, embedder in (("fp32", fp32), ("int8", int8)):
            gallery, queries[name] = embedder.embed_arrays(photos), embedder.embed_arrays(views)
            recalls[name] = float(np.mean(np.argmax(queries[name] @ gallery.T, axis=1) == sources))
        cosine = float(np.mean(np.sum(queries["fp32"] * queries["int8"], axis=1)))
        return cls(len(views), recalls["fp32"], recalls["int8"], cosine)

    def passes(self, settings: Int8Settings) -> bool:
        return (
            self.recall_int8 >= self.recall_fp32 - settings.max_recall_drop
            and self.cosine >= settings.min_cosine
        )

    def describe(self) -> str:
        return (
            f"self-retrieval R@1 {self.recall_int8:.4f} int8 vs {self.recall_fp32:.4f} fp32 on {self.probes} "
            f"augmented reference views, mean cosine to fp32 {self.cosine:.4f}"
        )


def _draw(paths: Sequence[Path], int8: Int8Settings) -> dict[str, Path]:
    """The calibration photos by sha256: `calibration_images` of the distinct ones, drawn by content (the
    same photos give the same set whatever their order or names)."""
    photos = {file_sha256(Path(p)): Path(p) for p in paths if Path(p).is_file()}
    if len(photos) < int8.min_references:
        raise CalibrationError(
            f"embedder.precision=int8 calibrates on the workspace's references: {len(photos)} distinct "
            f"reference photo(s), at least embedder.int8.min_references={int8.min_references} needed; "
            "add references or use embedder.precision=fp32"
        )
    shas = sorted(photos)
    order = np.random.default_rng([int8.seed, 0x1A78]).permutation(len(shas))
    return {shas[i]: photos[shas[i]] for i in order[: int8.calibration_images]}


def calibration_key(fp32: Embedder, shas: Sequence[str], int8: Int8Settings, limits: DecodeLimits) -> str:
    """Everything that shapes the quantised model: graph, preprocessing, calibration set, recipe."""
    parts = {
        "graph": Path(fp32.backbone_file).name,  # the export's own cache key (weights, pooling, opset, ...)
        "identity": fp32.identity.to_dict(),  # preprocessing decides the calibration tensors
        "calibration": hashlib.sha256("\n".join(shas).encode()).hexdigest(),
        "size": int8.calibration_images,
        "seed": int8.seed,
        "augmentation": AUGMENTATION,
        "limits": asdict(limits),
        **recipe(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _decode(paths: Sequence[Path], preprocessing: Preprocessing, limits: DecodeLimits) -> list[np.ndarray]:
    """The photos that decode, at the preprocessing's resize size (as the embedder decodes them)."""
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
    return photos


def _augmented_views(photos: list[np.ndarray], count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` augmented views, of each photo in turn."""
    return [augmented(photos[i % len(photos)], rng) for i in range(max(0, count))]


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
