"""Shared helpers that make small test images on the fly (no image files live in the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def photo_array():
    """`photo_array(width, height, seed=0)`: a photo-like (H, W, 3) uint8 array (smooth colour fields + grain)."""

    def make(width: int, height: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        grain = rng.integers(-8, 9, (height, width, 3), dtype=np.int16)
        return np.clip(smooth + grain, 0, 255).astype(np.uint8)

    return make


@pytest.fixture
def image_file(tmp_path):
    """`image_file(name, image, **save_options)`: save a PIL image or array under tmp_path, return its path.

    The format follows the suffix of `name` (PIL's rules); save options go to `Image.save`.
    """

    def write(name: str, image: Image.Image | np.ndarray, **save_options) -> Path:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        path = tmp_path / name
        image.save(path, **save_options)
        return path

    return write
