"""`score.engine=ray`: Ray Data actors score whole shards with the same `ShardScorer` as the local engine."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from brandsentry.bundle import ScoringBundle
from brandsentry.features import read_listings
from brandsentry.files import file_sha256
from brandsentry.scoring.pipeline import ShardScorer
from brandsentry.scoring.plan import RunIdentity, ScoreRunError, Shard
from brandsentry.scoring.progress import Progress
from brandsentry.scoring.settings import AUTO, ScoreSettings, portable_config


class RayShardActor:
    """A Ray Data actor: holds the bundle, index and manifest; each call scores and writes whole shards.

    It loads the bundle folder the driver resolved (never the URI again: an alias moved mid-run must
    not mix two models in one day) and checks that it sees the driver's manifest.
    """

    def __init__(self, cfg: dict, bundle_path: str, bundle_version: str, identity: dict):
        cfg = OmegaConf.create(cfg)
        settings = ScoreSettings.from_config(cfg)
        listings = read_listings(settings.listings)
        bundle = ScoringBundle(Path(bundle_path), version=bundle_version)
        found = RunIdentity(
            file_sha256(settings.listings), len(listings), str(bundle.version), settings.shard_size
        )
        if asdict(found) != identity:
            raise ScoreRunError(
                f"a Ray actor sees another run than the driver: {found.differences(identity)}"
            )
        self.scorer = ShardScorer.build(
            bundle, listings, settings.out, settings, decode_workers=settings.ray.decode_workers
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards = [
            Shard(int(n), int(a), int(b))
            for n, a, b in zip(batch["number"], batch["start"], batch["stop"], strict=True)
        ]
        self.scorer.score(shards)
        return {"number": batch["number"], "rows": np.array([s.size for s in shards], dtype=np.int64)}


def score_with_ray(
    cfg: DictConfig,
    settings: ScoreSettings,
    bundle: ScoringBundle,
    identity: RunIdentity,
    pending: list[Shard],
    progress: Progress,
) -> None:
    """`map_batches` over the pending shards with a fixed pool of `RayShardActor`s (a GPU each when there are)."""
    if not pending:
        return
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=settings.ray.address,
            num_cpus=settings.ray.num_cpus if settings.ray.address is None else None,
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=False,
        )
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        gpus = settings.ray.gpus_per_actor
        if gpus == AUTO:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        items = [{"number": s.number, "start": s.start, "stop": s.stop} for s in pending]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            RayShardActor,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=settings.ray.actors),
            fn_constructor_kwargs={
                "cfg": portable_config(cfg, settings),
                "bundle_path": str(bundle.path.resolve()),
                "bundle_version": str(bundle.version),
                "identity": asdict(identity),
            },
            num_cpus=settings.ray.cpus_per_actor,
            num_gpus=gpus,
        )
        for done in dataset.iter_rows():
            progress.advance(int(done["rows"]))
    finally:
        if started_here:
            ray.shutdown()
