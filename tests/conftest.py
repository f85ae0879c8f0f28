"""Shared helpers that make small test images on the fly (no image files live in the repository)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
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


# ---- tiny_workspace / tiny_trained: a synthetic world imported, indexed and trained on (session-wide) ----------
# Built once per test session through the CLI, as an operator would. Tests that write to a workspace (train,
# register, score into it) should work on `copy_workspace(...)` so that test order never matters.

TINY_WORLD_LISTINGS = 150  # enough labelled listings that validation and test hold both classes
# Training settings for tests: OCR costs ~0.7 s per listing on the 2-core box (it is covered by test_cues),
# and a ~90-listing training split needs smaller leaves than the default.
TINY_TRAIN_OVERRIDES = ("cues.text.enabled=false", "classifier.min_samples_leaf=10")


@dataclass(frozen=True)
class TinyWorkspace:
    """A workspace holding the tiny synthetic world: references, wordmarks, sellers, an index (tiny_random)."""

    path: Path  # the workspace root
    world: Path  # the synthetic world (references.csv, brands.json, listings_day1.csv with labels, ...)
    overrides: tuple[str, ...]  # `workspace=... embedder=tiny_random`: pass to every command and load_config

    @property
    def listings(self) -> Path:
        return self.world / "listings_day1.csv"


def copy_workspace(source: TinyWorkspace, destination: Path) -> TinyWorkspace:
    """An independent copy of a workspace (same world); its overrides point at the copy."""
    shutil.copytree(source.path, destination)
    overrides = tuple(
        f"workspace={destination}" if o.startswith("workspace=") else o for o in source.overrides
    )
    return TinyWorkspace(destination, source.world, overrides)


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory) -> TinyWorkspace:
    """synth tiny world (150 listings) -> refs import -> brands import -> sellers import -> index build."""
    from brandsentry.cli import main

    root = tmp_path_factory.mktemp("tiny")
    world, workspace = root / "world", root / "workspace"
    overrides = (f"workspace={workspace}", "embedder=tiny_random")
    steps = (
        ["synth", "world", "synth=tiny", f"synth.listings={TINY_WORLD_LISTINGS}", f"out={world}"],
        ["refs", "import", str(world / "references.csv"), *overrides],
        ["brands", "import", str(world / "brands.json"), *overrides],
        ["sellers", "import", str(world / "authorized_sellers.csv"), *overrides],
        ["index", "build", *overrides],
    )
    for step in steps:
        assert main(step) == 0, f"tiny workspace step failed: brandsentry {' '.join(step)}"
    return TinyWorkspace(workspace, world, overrides)


@dataclass(frozen=True)
class TinyTrained:
    """A copy of the tiny workspace with one trained, registered and promoted (`champion`) model."""

    workspace: TinyWorkspace
    result: object  # brandsentry.train.TrainingResult
    overrides: tuple[str, ...]  # the workspace overrides plus the training ones


@pytest.fixture(scope="session")
def tiny_trained(tiny_workspace, tmp_path_factory) -> TinyTrained:
    """`brandsentry train` (through Hydra) on a copy of the tiny workspace: brandsentry/1 is champion."""
    from brandsentry.train import run_hydra_train

    workspace = copy_workspace(tiny_workspace, tmp_path_factory.mktemp("trained") / "workspace")
    overrides = (*workspace.overrides, *TINY_TRAIN_OVERRIDES)
    (result,) = run_hydra_train([f"listings={workspace.listings}", *overrides])
    return TinyTrained(workspace, result, overrides)
