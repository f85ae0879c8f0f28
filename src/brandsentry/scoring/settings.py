"""The `score` config group, validated, and how many lanes the local engine runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from brandsentry.config import Workspace, require
from brandsentry.embed_runtime import RUNTIMES
from brandsentry.errors import ConfigError

ENGINES = ("local", "ray")
PROGRESS_MODES = ("auto", "bar", "log", "off")
MAX_AUTO_LANES = 4  # each lane holds its own model and index copy: more is memory, not speed, on most hosts
ROWS_PER_AUTO_LANE = 5000  # a spawned lane costs ~7 CPU-s to start (imports, model, index) on the dev box:
# 2 lanes scored 500 listings at 17 img/s vs 24 for one process (scripts/bench_score.py), so only big days


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None
    num_cpus: int | None = None
    actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None  # None = 1 when the cluster has GPUs, else 0
    decode_workers: int = 0


@dataclass(frozen=True)
class ScoreSettings:
    """The `score` config group, validated."""

    listings: Path
    out: Path
    model: str
    engine: str = "local"
    shard_size: int = 1000
    batch_size: int | None = None
    search_batch: int = 256
    device: str = "auto"
    decode_workers: int | None = None
    model_threads: int | None = None
    cue_workers: int | None = None
    lanes: int | None = None  # None = auto: see `lane_count`
    runtime: str | None = None  # None = the bundle's embedder.runtime
    error_budget: float = 0.05
    force: bool = False
    progress: str = "auto"
    log_every_s: float = 30.0
    ray: RaySettings = field(default_factory=RaySettings)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ScoreSettings:
        score = require(cfg, "score")
        listings = Path(str(require(cfg, "score.listings"))).expanduser()
        out = score.get("out")
        out = (
            Path(str(out)).expanduser()
            if out
            else Workspace.from_config(cfg).runs_dir / "score" / listings.stem
        )
        ray_cfg = score.get("ray") or {}
        gpus = ray_cfg.get("gpus_per_actor", "auto")
        settings = cls(
            listings=listings,
            out=out,
            model=str(require(cfg, "score.model")),
            engine=str(score.get("engine", "local")),
            shard_size=int(score.get("shard_size", 1000)),
            batch_size=_optional_int(score.get("batch_size")),
            search_batch=int(score.get("search_batch", 256)),
            device=str(score.get("device", "auto")),
            decode_workers=_optional_int(score.get("decode_workers")),
            model_threads=_optional_int(score.get("model_threads")),
            cue_workers=_optional_int(score.get("cue_workers")),
            lanes=None if str(score.get("lanes", "auto")) == "auto" else int(score.get("lanes")),
            runtime=None if score.get("runtime") is None else str(score.get("runtime")),
            error_budget=float(score.get("error_budget", 0.05)),
            force=bool(score.get("force", False)),
            progress=str(score.get("progress", "auto")),
            log_every_s=float(score.get("log_every_s", 30)),
            ray=RaySettings(
                address=ray_cfg.get("address"),
                num_cpus=_optional_int(ray_cfg.get("num_cpus")),
                actors=int(ray_cfg.get("actors", 2)),
                cpus_per_actor=float(ray_cfg.get("cpus_per_actor", 1)),
                gpus_per_actor=None if str(gpus) == "auto" else float(gpus),
                decode_workers=int(ray_cfg.get("decode_workers", 0)),
            ),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
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
        if self.ray.actors < 1:
            problems.append(f"score.ray.actors={self.ray.actors} (must be >= 1)")
        if self.lanes is not None and self.lanes < 1:
            problems.append(f"score.lanes={self.lanes} (must be >= 1 or auto)")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            problems.append(f"score.runtime={self.runtime!r} (expected null or one of {', '.join(RUNTIMES)})")
        if problems:
            raise ConfigError("invalid score config: " + "; ".join(problems))


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def lane_count(settings: ScoreSettings, chunks: int, rows: int) -> int:
    """Scoring lanes of the local engine: `score.lanes`, or auto = 1 on CUDA, else one per usable CPU (at
    most MAX_AUTO_LANES, one per ROWS_PER_AUTO_LANE listings to score); never more than chunks to score."""
    lanes = settings.lanes
    if lanes is None:
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
