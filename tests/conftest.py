"""Shared helpers that make small test images on the fly (no image files live in the repository)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
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


# ---- world / reference: the trained tiny workspace's day, scored once per test module that asks ------------------
# Shared by the scoring tests (test_score, test_score_ray): `world` is a copy of the trained workspace and the
# first 60 listings of its day; `reference` one uninterrupted scoring run of that day that runs are compared with.


@dataclass(frozen=True)
class World:
    """A copy of the trained tiny workspace, its bundle, and the first 60 listings of its day as the day."""

    workspace: TinyWorkspace
    listings: Path  # manifest with absolute image paths
    bundle: Path
    overrides: tuple[str, ...]
    brands: tuple[str, ...]
    feature_names: tuple[str, ...]


def write_day(source: Path, destination: Path, rows: int | None = None, copies: int = 1) -> Path:
    """The first `rows` listings of `source` (`copies` times, with new ids) with absolute image paths."""
    day = pd.read_csv(source, dtype=str, keep_default_na=False).head(rows)
    day["image_path"] = [str(source.parent / p) for p in day["image_path"]]
    if copies > 1:
        day = pd.concat([day.assign(listing_id=day["listing_id"] + f"~{c}") for c in range(copies)])
    day.to_csv(destination, index=False)
    return destination


@pytest.fixture(scope="module")
def world(tiny_trained, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("score")
    workspace = copy_workspace(tiny_trained.workspace, root / "workspace")
    bundle = tiny_trained.result.bundle_dir
    metadata = json.loads((bundle / "bundle.json").read_text())
    brands = pd.read_csv(workspace.world / "references.csv")["brand"].unique()
    return World(
        workspace=workspace,
        listings=write_day(workspace.listings, root / "day.csv", rows=60),
        bundle=bundle,
        overrides=workspace.overrides,
        brands=tuple(sorted(brands)),
        feature_names=tuple(metadata["feature_names"]),
    )


def first_rows(world: World, n: int) -> Path:
    return write_day(world.listings, world.listings.with_name(f"first{n}.csv"), rows=n)


def score_config(world, out: Path, *extra: str, listings: Path | None = None):
    from brandsentry.config import load_config

    return load_config(
        [
            *world.overrides,
            f"score.listings={listings or world.listings}",
            f"score.out={out}",
            f"score.model={world.bundle}",
            "score.progress=off",
            "score.error_budget=1.0",
            "score.model_threads=1",  # bit-identical rows across runs need the same threads and batches
            "score.lanes=1",  # one process (monkeypatches reach it); lanes have their own tests
            *extra,
        ]
    )


def read_results(out: Path) -> pd.DataFrame:
    from brandsentry.run_folder import part_files

    return pd.concat([pd.read_parquet(p) for p in part_files(out)], ignore_index=True)


def read_vectors(out: Path) -> np.ndarray:
    from brandsentry.run_folder import embedding_files

    return np.concatenate([np.load(p) for p in embedding_files(out)])


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["scored_at"])


def assert_close_results(results: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal up to float rounding: model batches cut differently move similarities by ~1e-7."""
    assert list(results.columns) == list(expected.columns)
    for column in results.columns.drop("scored_at"):
        got, want = results[column], expected[column]
        if column in ("top_ref_ids", "top_similarities"):
            assert got.map(len).equals(want.map(len)), column
            got, want = pd.Series(np.concatenate(got.tolist())), pd.Series(np.concatenate(want.tolist()))
        if got.dtype.kind == "f":
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=column)
        else:
            assert got.equals(want), column


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """One uninterrupted run of the tiny world's day (shards of 10 rows, decode in a worker process)."""
    from brandsentry.scoring import score_run

    out = tmp_path_factory.mktemp("reference") / "day1"
    summary = score_run(score_config(world, out, "score.shard_size=10", "score.decode_workers=1"))
    return out, summary, read_results(out)
