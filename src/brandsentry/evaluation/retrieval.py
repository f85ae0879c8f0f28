"""Suite `retrieval`: instance retrieval on a folder-per-product set (GroZi-120 in-situ) by exact search.

The foundation split: every `reference_every`-th frame of a product (sorted by file name, from the first)
is a reference, the others are queries. The embedding is the configured embedder's own (its
`embedder.view` and `embedder.pool` included), i.e. what the index and the scorer use. Test-time views
(`eval.views`) instead average the embeddings of several views of each image (centre crop, its mirror,
the whole image letterboxed, ...); mirrored views make vectors partly blind to mirroring, so they are an
evaluation knob, not something the scorer does. `eval.gem_p=P` is shorthand for
`embedder.pool=gem embedder.gem_p=P`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from brandsentry.embed import Embedder, EmbedderSettings, Embeddings, Preprocessing
from brandsentry.embed_int8 import embedder_for_references
from brandsentry.errors import ConfigError
from brandsentry.evaluation.datasets import folder_split, labelled_images
from brandsentry.evaluation.report import SuiteResult
from brandsentry.finetune import FinetuneSettings
from brandsentry.image_batches import ImageBatches
from brandsentry.images import DecodeLimits, ImageDecodeError
from brandsentry.retrieval_metrics import retrieval_report
from brandsentry.settings import default_settings, load_settings

VIEWS = ("center", "flip", "full", "full_flip")


def check_views(views: Sequence[str] | None, key: str) -> None:
    """`views` (None: the embedder's own) must be known test-time views, at least one."""
    if views is None:
        return
    unknown = sorted(set(views) - set(VIEWS))
    if unknown or not views:
        raise ConfigError(f"unknown {key} {unknown}; choose from {list(VIEWS)}")


def check_max_queries(max_queries: int | None, key: str) -> None:
    if max_queries is not None and max_queries < 1:
        raise ConfigError(f"{key} must be >= 1 or null, got {max_queries}")


@dataclass(frozen=True)
class RetrievalSettings:
    """The `eval` config of suite `retrieval` (configs/eval/retrieval.yaml), validated."""

    suite: str
    data_dir: Path  # <product>/<frame>.jpg
    reference_every: int  # frames 0, k, 2k, ... of each product are references, the others queries
    max_queries: int | None  # a seeded random subset of the queries (references always all)
    views: tuple[str, ...] | None  # test-time views averaged per image; None: the embedder's own
    gem_p: float | None  # shorthand for embedder.pool=gem embedder.gem_p=P
    log: bool  # log to MLflow experiment `evaluation`

    def __post_init__(self):
        if self.suite != "retrieval":
            raise ConfigError(f"eval.suite must be 'retrieval' for these settings, got {self.suite!r}")
        if self.reference_every < 1:
            raise ConfigError(f"eval.reference_every must be >= 1, got {self.reference_every}")
        check_max_queries(self.max_queries, "eval.max_queries")
        check_views(self.views, "eval.views")

    @classmethod
    def from_config(cls, eval_cfg) -> RetrievalSettings:
        return load_settings(cls, eval_cfg, "eval")


def suite_embedder_config(embedder_cfg: DictConfig, gem_p: float | None) -> DictConfig:
    """The embedder config a suite evaluates: `embedder_cfg` with the suite's `eval.gem_p` applied."""
    if gem_p is None:
        return embedder_cfg
    plain = OmegaConf.to_container(embedder_cfg, resolve=True)
    return OmegaConf.create({**plain, "pool": "gem", "gem_p": float(gem_p)})


def suite_views(views: Sequence[str] | None, embedder: Embedder) -> tuple[str, ...]:
    """The suite's `eval.views`, or the embedder's own view when unset (the production embedding)."""
    return (embedder.preprocessing.view,) if views is None else tuple(views)


class ViewStack:
    """An image's test-time views as one (views, 3, S, S) tensor: the centre crop and the letterboxed whole
    image, each also mirrored; a transform of `ImageBatches`."""

    def __init__(self, preprocessing: Preprocessing, views: Sequence[str]):
        unknown = sorted(set(views) - set(VIEWS))
        if unknown or not views:
            raise ConfigError(f"unknown view(s) {unknown}; choose from {list(VIEWS)}")
        self.views = tuple(views)
        self.center = replace(preprocessing, view="center")
        self.full = replace(preprocessing, view="full")

    @property
    def resize_size(self) -> int:
        return self.center.resize_size

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        tensors = {}
        if {"center", "flip"} & set(self.views):
            tensors["center"] = self.center(rgb)
            tensors["flip"] = torch.flip(tensors["center"], dims=[2])
        if {"full", "full_flip"} & set(self.views):
            tensors["full"] = self.full(rgb)
            tensors["full_flip"] = torch.flip(tensors["full"], dims=[2])
        return torch.stack([tensors[view] for view in self.views])


def embed_views(
    embedder: Embedder,
    paths: Sequence[Path],
    views: Sequence[str] | None = None,
    limits: DecodeLimits | None = None,
    progress: bool = False,
) -> tuple[Embeddings, list[tuple[int, ImageDecodeError]]]:
    """Unit vectors of the mean embedding over `views` of each file; the embedder's own view alone (or
    None) is exactly `embed_files`, the production embedding. `limits`: None for the `images` defaults."""
    limits = limits or default_settings(DecodeLimits, "images")
    if views is None or tuple(views) == (embedder.preprocessing.view,):
        return embedder.embed_files(paths, limits=limits, progress=progress)
    from tqdm import tqdm

    batches = ImageBatches.consecutive(
        paths, max(1, embedder.batch_size // len(views)), ViewStack(embedder.preprocessing, views), limits
    )
    vectors = np.empty((len(paths), embedder.dim), dtype=np.float32)
    embedded = np.zeros(len(paths), dtype=bool)
    failures = []
    with tqdm(total=len(paths), unit="img", desc=f"embed {'+'.join(views)}", disable=not progress) as bar:
        for batch in batches.loader(embedder.num_workers):
            if len(batch.indices):
                count, n_views = batch.tensor.shape[:2]
                flat = embedder.embed_batch(batch.tensor.flatten(0, 1)).reshape(count, n_views, -1)
                mean = flat.mean(axis=1)
                vectors[batch.indices] = mean / np.linalg.norm(mean, axis=1, keepdims=True)
                embedded[batch.indices] = True
            failures.extend(batch.errors)
            bar.update(len(batch.indices) + len(batch.errors))
    ids = np.arange(len(paths))
    return Embeddings(ids=ids[embedded], vectors=vectors[embedded]), failures


def subsample(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most `limit` of `indices`, drawn by a seeded permutation and kept in their order."""
    if limit is None or limit >= len(indices):
        return indices
    if limit < 1:
        raise ConfigError(f"a query limit must be >= 1, got {limit}")
    chosen = np.random.default_rng([seed, 0xE7A1]).permutation(len(indices))[:limit]
    return indices[np.sort(chosen)]


def embedder_params(embedder: Embedder, embedder_cfg: DictConfig) -> dict[str, str]:
    identity = embedder.identity
    return {
        "embedder": identity.arch,
        "embedder_weights": str(embedder_cfg.weights),
        "embedder_key": identity.key(),
        "input_size": str(identity.input_size),
        "embedder_view": identity.view,
        "embedder_pool": identity.pool if identity.gem_p is None else f"{identity.pool}{identity.gem_p:g}",
    }


def run_retrieval(cfg: DictConfig, progress: bool = True) -> SuiteResult:
    """R@1, R@5 and mAP of the configured embedder (optionally fine-tuned on the references first)."""
    suite = RetrievalSettings.from_config(cfg.eval)
    finetune = FinetuneSettings.from_config(cfg.finetune)
    data_dir = suite.data_dir.expanduser()
    seed = int(cfg.seed)
    limits = DecodeLimits.from_config(cfg.images)
    started = time.perf_counter()
    images = labelled_images(data_dir)
    is_reference = folder_split(images, suite.reference_every)
    reference_idx = np.flatnonzero(is_reference)
    query_idx = subsample(np.flatnonzero(~is_reference), suite.max_queries, seed)
    labels = np.asarray(images.labels)
    paths = np.asarray(images.paths, dtype=object)

    embedder_cfg, finetuned = cfg.embedder, {}
    if finetune.enabled:
        from brandsentry.finetune import finetune_embedder, weights_path

        out = weights_path(cfg, "retrieval")
        report = finetune_embedder(
            cfg, list(paths[reference_idx]), list(labels[reference_idx]), out, progress
        )
        embedder_cfg = OmegaConf.merge(cfg.embedder, {"weights": str(out)})
        finetuned = report.params()
    embedder_cfg = suite_embedder_config(embedder_cfg, suite.gem_p)
    settings = EmbedderSettings.from_config(embedder_cfg)
    embedder = embedder_for_references(settings, list(paths[reference_idx]), limits)
    views = suite_views(suite.views, embedder)
    embed_started = time.perf_counter()
    chosen = np.concatenate([reference_idx, query_idx])
    embeddings, failures = embed_views(embedder, list(paths[chosen]), views, limits, progress)
    embed_seconds = time.perf_counter() - embed_started
    kept = chosen[embeddings.ids]
    reference_rows = is_reference[kept]
    figures = retrieval_report(
        embeddings.vectors[reference_rows],
        labels[kept][reference_rows],
        embeddings.vectors[~reference_rows],
        labels[kept][~reference_rows],
    )
    figures.update(
        labels=float(len(set(images.labels))),
        references=float(reference_rows.sum()),
        queries=float((~reference_rows).sum()),
        failed=float(len(failures)),
        embed_images_per_s=len(chosen) / embed_seconds,
        wall_s=time.perf_counter() - started,
    )
    params = {
        "data_dir": str(data_dir),
        "reference_every": str(suite.reference_every),
        "max_queries": str(suite.max_queries),
        "views": "+".join(views),
        "gem_p": str(suite.gem_p),
        "seed": str(seed),
        **embedder_params(embedder, embedder_cfg),
        **finetuned,
    }
    failed = [f"{paths[chosen[int(i)]]}: {error.reason}" for i, error in failures]
    return SuiteResult("retrieval", figures, params, {"failed": failed})
