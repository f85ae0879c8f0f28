"""Readers for the real-photo evaluation sets; each takes the data directory and never copies it.

- folder per label (GroZi-120 products, logos63 brands): `labelled_images`, `folder_split`
- grocery230 (packages x augmentations with YOLO polygons of the logo region): `read_grocery230`
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brandsentry.errors import BrandsentryError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
# Roboflow exports name each augmentation `<original stem>_<ext>.rf.<hash>.jpg`: the part before `.rf.`
# identifies the package photographed.
_ROBOFLOW = re.compile(r"^(?P<package>.+?)\.rf\.[0-9a-f]+$")


class DatasetLayoutError(BrandsentryError, ValueError):
    """A data directory that does not have the layout its suite reads (missing folders, no images)."""


@dataclass(frozen=True)
class LabelledImages:
    """Image files with one label each, in a fixed order (sorted by label folder, then file name)."""

    paths: tuple[Path, ...]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


def labelled_images(data_dir: Path) -> LabelledImages:
    """Every image under `data_dir/<label>/`, labelled by its folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetLayoutError(f"data directory {data_dir} does not exist")
    paths, labels = [], []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            paths.append(path)
            labels.append(folder.name)
    if not paths:
        raise DatasetLayoutError(f"no images in label folders under {data_dir}")
    return LabelledImages(tuple(paths), tuple(labels))


def folder_split(images: LabelledImages, every: int) -> np.ndarray:
    """Reference mask of the foundation split: frame 0, every, 2*every, ... of each label (sorted by name)."""
    if every < 1:
        raise ValueError(f"reference stride must be >= 1, got {every}")
    position = np.zeros(len(images), dtype=np.int64)
    seen: dict[str, int] = {}
    for i, label in enumerate(images.labels):
        position[i] = seen.get(label, 0)
        seen[label] = position[i] + 1
    return position % every == 0


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class PackagePhoto:
    """One photo of a grocery230 package with its logo regions (polygons in pixels, (n, 2) float each)."""

    package: str
    path: Path
    width: int
    height: int
    logos: tuple[np.ndarray, ...]


def package_of(file_name: str) -> str:
    """The package a grocery230 photo shows: its file stem up to `.rf.` (the stem itself if absent)."""
    stem = Path(file_name).stem
    found = _ROBOFLOW.match(stem)
    return found["package"] if found else stem


def read_polygons(label_file: Path, width: int, height: int) -> tuple[np.ndarray, ...]:
    """YOLO segmentation lines `class x1 y1 x2 y2 ...` (normalised) -> pixel polygons of class 0.

    A malformed line (odd coordinate count, fewer than 3 points, unparsable number) is an error naming
    the file and line: a silently dropped logo would turn a tampered photo into an untouched one.
    """
    polygons = []
    for number, line in enumerate(label_file.read_text().splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            cls, values = int(float(tokens[0])), np.array([float(t) for t in tokens[1:]])
        except ValueError:
            raise DatasetLayoutError(f"{label_file}:{number}: not a YOLO polygon line: {line!r}") from None
        if len(values) % 2 or len(values) < 6:
            raise DatasetLayoutError(
                f"{label_file}:{number}: needs >= 3 x y pairs, got {len(values)} numbers"
            )
        if cls != 0:
            continue
        points = values.reshape(-1, 2) * [width, height]
        polygons.append(np.clip(points, 0, [width, height]))
    return tuple(polygons)


def read_grocery230(data_dir: Path) -> list[PackagePhoto]:
    """Every photo of `data_dir/images` with a logo polygon in `data_dir/labels/<stem>.txt`, sorted by name.

    Photos without a label file or without a class-0 polygon cannot be tampered and are an error, not
    skipped, so the benchmark never shrinks without saying so.
    """
    from PIL import Image

    data_dir = Path(data_dir)
    image_dir, label_dir = data_dir / "images", data_dir / "labels"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise DatasetLayoutError(f"{data_dir} needs images/ and labels/ folders")
    photos, problems = [], []
    for path in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label_file = label_dir / f"{path.stem}.txt"
        if not label_file.is_file():
            problems.append(f"{path.name}: no labels/{label_file.name}")
            continue
        with Image.open(path) as image:
            width, height = image.size
        logos = read_polygons(label_file, width, height)
        if not logos:
            problems.append(f"{path.name}: no class-0 logo polygon")
            continue
        photos.append(PackagePhoto(package_of(path.name), path, width, height, logos))
    if problems:
        raise DatasetLayoutError(f"{len(problems)} unusable photo(s) in {data_dir}: {problems[:5]}")
    if not photos:
        raise DatasetLayoutError(f"no images in {image_dir}")
    return photos
