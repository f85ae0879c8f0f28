"""The `score` config group, validated, and how many lanes the local engine runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from brandsentry.config import Workspace, require
from brandsentry.embed_runtime import RUNTIMES
from brandsentry.errors import ConfigError
from brandsentry.settings import load_settings

ENGINES = ("local", "ray")
PROGRESS_MODES = ("auto", "bar", "log", "off")
TCMALLOC_MODES = ("auto", "true", "false")
AUTO = "auto"
MAX_AUTO_LANES = 4  # each lane holds its own model and index copy: more is memory, not speed, on most hosts
ROWS_PER_AUTO_LANE = 5000  # a spawned lane costs ~7 CPU-s to start (imports, model, index) on the dev box:
# 2 lanes scored 500 listings at 17 img/s vs 24 for one process (scripts/bench_score.py), so only big days


@dataclass(frozen=True)
class RaySettings:
    """`score.ray`: the Ray engine."""

    address: str | None  # None = start a local cluster for the run
    num_cpus: int | None  # None = all of this machine's
    actors: int
    cpus_per_actor: float
    gpus_per_actor: float | str  # "auto" = 1 when the cluster has GPUs, else 0
    decode_workers: int

    def __post_init__(self) -> None:
        problems = []
        if self.actors < 1:
            problems.append(f"score.ray.actors={self.actors} (must be >= 1)")
        if isinstance(self.gpus_per_actor, str) and self.gpus_per_actor != AUTO:
            problems.append(f"score.ray.gpus_per_actor={self.gpus_per_actor!r} (a number or auto)")
        if problems:
            raise ConfigError("invalid score config: " + "; ".join(problems))


@dataclass(frozen=True)
class ScoreSettings:
    """The `score` config group (configs/score/), validated.

    `from_config` refuses an unset `listings` and fills in `out` (null = <workspace>/runs/score/<manifest
    stem>), so settings it returns always have both.
    """

    listings: Path | None
    out: Path | None
    model: str
    engine: str
    shard_size: int
    batch_size: int | None  # None = the bundle's embedder batch size
    search_batch: int
    device: str
    decode_workers: int | None  # None = the bundle's embedder num_workers
    model_threads: int | None  # None = the bundle's embedder threads
    cue_workers: int | None  # None = the bundle's features.workers
    lanes: int | str  # "auto": see `lane_count`
    runtime: str | None  # None = the bundle's embedder.runtime
    error_budget: float
    force: bool
    tcmalloc: bool | str  # auto | true | false (`brandsentry score` only)
    log_run: bool
    progress: str
    log_every_s: float
    ray: RaySettings

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ScoreSettings:
        score = require(cfg, "score")
        require(cfg, "score.listings")
        settings = load_settings(cls, score, "score")
        listings = settings.listings.expanduser()
        out = (
            settings.out.expanduser()
            if score.out
            else Workspace.from_config(cfg).runs_dir / "score" / listings.stem
        )
        return replace(settings, listings=listings, out=out)

    def __post_init__(self) -> None:
        problems = []
        if self.engine not in ENGINES:
            problems.append(f"score.engine={self.engine!r} (expected one of {', '.join(ENGINES)})")
        if self.shard_size < 1:
            problems.append(f"score.shard_size={self.shard_size} (must be >= 1)")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"score.batch_size={self.batch_size} (must be >= 1)")
        if self.search_batch < 1:
            problems.append(f"score.search_batch={self.search_batch} (must be >= 1)")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"score.device={self.device!r} (expected auto, cpu or cuda)")
        if not 0.0 <= self.error_budget <= 1.0:
            problems.append(f"score.error_budget={self.error_budget} (a fraction in [0, 1])")
        if self.progress not in PROGRESS_MODES:
            problems.append(f"score.progress={self.progress!r} (expected one of {', '.join(PROGRESS_MODES)})")
        for name in ("decode_workers", "model_threads", "cue_workers"):
            value = getattr(self, name)
            if value is not None and value < (1 if name != "decode_workers" else 0):
                problems.append(f"score.{name}={value} (too small)")
        if self.lanes != AUTO and (isinstance(self.lanes, str) or self.lanes < 1):
            problems.append(f"score.lanes={self.lanes!r} (must be >= 1 or auto)")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            problems.append(f"score.runtime={self.runtime!r} (expected null or one of {', '.join(RUNTIMES)})")
        if self.tcmalloc_mode not in TCMALLOC_MODES:
            problems.append(f"score.tcmalloc={self.tcmalloc!r} (expected auto, true or false)")
        if problems:
            raise ConfigError("invalid score config: " + "; ".join(problems))

    @property
    def tcmalloc_mode(self) -> str:
        """`tcmalloc` as one of TCMALLOC_MODES (the YAML reads true/false as booleans)."""
        return str(self.tcmalloc).lower()


def lane_count(settings: ScoreSettings, chunks: int, rows: int) -> int:
    """Scoring lanes of the local engine: `score.lanes`, or auto = 1 on CUDA, else one per usable CPU (at
    most MAX_AUTO_LANES, one per ROWS_PER_AUTO_LANE listings to score); never more than chunks to score."""
    lanes = settings.lanes
    if lanes == AUTO:
        cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        cpus = len(os.sched_getaffinity(0))
        lanes = 1 if cuda else min(cpus, MAX_AUTO_LANES, rows // ROWS_PER_AUTO_LANE)
    return max(1, min(lanes, chunks))


def portable_config(cfg: DictConfig, settings: ScoreSettings) -> dict:
    """The config as plain data, with the manifest and output folder absolute (lanes and actors run elsewhere)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    data["score"]["listings"] = str(settings.listings.resolve())
    data["score"]["out"] = str(settings.out.resolve())
    return data
