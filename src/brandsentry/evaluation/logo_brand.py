"""Suite `logo_brand`: which brand is this logo? Leave-one-out over a folder-per-brand logo set (logos63).

Each logo is a query against all the others (itself left out); a query counts only when its brand has
another logo to be found. Two recognisers are measured the same way:
- the embedder: the brand of the nearest other logo (exact inner product);
- the logo cue: every other logo as a template, verified by the cue's own local features + RANSAC and
  homography checks; the brand of the template with most inliers under a valid homography, as
  `logo_cues` picks it. A query with no valid homography at all has no answer (a miss).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from brandsentry.cues import CueConfig, LogoTemplate, build_brand_assets
from brandsentry.cues.imagestats import ListingPixels
from brandsentry.cues.keypoints import extract
from brandsentry.cues.logo import inlier_spread, is_verified, verify_template, work_image
from brandsentry.embed import Embedder
from brandsentry.errors import ConfigError
from brandsentry.evaluation.datasets import labelled_images
from brandsentry.evaluation.report import SuiteResult
from brandsentry.evaluation.retrieval import (
    check_max_queries,
    check_views,
    embed_views,
    embedder_params,
    subsample,
    suite_embedder_config,
    suite_views,
)
from brandsentry.features import FeatureSettings
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
from brandsentry.retrieval_metrics import recall_at_k
from brandsentry.settings import load_settings


@dataclass(frozen=True)
class LogoBrandSettings:
    """The `eval` config of suite `logo_brand` (configs/eval/logo_brand.yaml), validated."""

    suite: str
    data_dir: Path  # <brand>/<n>.jpg
    max_queries: int | None  # a seeded random subset of the queries (every logo stays a candidate)
    views: tuple[str, ...] | None  # test-time views of the embedder; None: its own view
    gem_p: float | None  # shorthand for embedder.pool=gem embedder.gem_p=P
    log: bool  # log to MLflow experiment `evaluation`

    def __post_init__(self):
        if self.suite != "logo_brand":
            raise ConfigError(f"eval.suite must be 'logo_brand' for these settings, got {self.suite!r}")
        check_max_queries(self.max_queries, "eval.max_queries")
        check_views(self.views, "eval.views")

    @classmethod
    def from_config(cls, eval_cfg) -> LogoBrandSettings:
        return load_settings(cls, eval_cfg, "eval")


def leave_one_out_ranking(vectors: np.ndarray) -> np.ndarray:
    """(n, n-1) indices of the other rows by decreasing inner product (each row's own index left out)."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :-1]


def logo_cue_answer(
    query_rgb: np.ndarray, templates: list[tuple[str, LogoTemplate]], query_id: int, cues: CueConfig
) -> tuple[str | None, int, bool]:
    """(brand of the best valid template or None, its inliers, whether the cue would call it verified)."""
    params = cues.logo
    work, _ = work_image(ListingPixels(query_rgb), params)
    listing = extract(work, params)
    best: tuple[int, float, str | None, bool] = (0, 0.0, None, False)
    for brand, template in templates:
        if template.ref_id == query_id:
            continue
        found, _, _ = verify_template(template, listing, work.shape, params)
        if found is None:
            continue
        inliers, spread = len(found.inlier_listing_points), inlier_spread(found)
        if (inliers, spread) > best[:2]:
            best = (inliers, spread, brand, is_verified(inliers, spread, params))
    return best[2], best[0], best[3]


def run_logo_brand(cfg: DictConfig, progress: bool = True) -> SuiteResult:
    """Leave-one-out brand R@1 (and R@5) of the embedder and brand R@1 of the logo cue."""
    from tqdm import tqdm

    suite = LogoBrandSettings.from_config(cfg.eval)
    data_dir = suite.data_dir.expanduser()
    seed = int(cfg.seed)
    limits = DecodeLimits.from_config(cfg.images)
    started = time.perf_counter()
    images = labelled_images(data_dir)
    labels = np.asarray(images.labels)

    decoded, failed = {}, []
    for i, path in enumerate(images.paths):
        try:
            decoded[i] = decode_image(path, limits)
        except ImageDecodeError as error:
            failed.append(f"{path}: {error.reason}")
    usable = np.array(sorted(decoded))
    brands, counts = np.unique(labels[usable], return_counts=True)
    findable = set(brands[counts >= 2].tolist())
    candidates = np.array([i for i in usable if labels[i] in findable])
    queries = subsample(candidates, suite.max_queries, seed)

    embedder_cfg = suite_embedder_config(cfg.embedder, suite.gem_p)
    embedder = Embedder.from_config(embedder_cfg)
    views = suite_views(suite.views, embedder)
    paths = [images.paths[i] for i in usable]
    embeddings, failures = embed_views(embedder, paths, views, limits, progress)
    failed += [f"{paths[int(i)]}: {error.reason} (embedder)" for i, error in failures]
    embedded = usable[embeddings.ids]
    row_of = {int(image): row for row, image in enumerate(embedded)}
    ranking = leave_one_out_ranking(embeddings.vectors)
    query_rows = np.array([row_of[int(i)] for i in queries if int(i) in row_of])
    neighbour_labels = labels[embedded][ranking[query_rows]]
    query_labels = labels[embedded][query_rows]

    cues = CueConfig.from_config(cfg.cues)
    templates, skipped = [], 0
    for brand in sorted(set(labels[usable])):
        ids = [int(i) for i in usable if labels[i] == brand]
        assets = build_brand_assets(brand, (), {i: decoded[i] for i in ids}, cues)
        templates += [(brand, template) for template in assets.logos]
        skipped += len(assets.skipped_logos)
    with ThreadPoolExecutor(max(1, FeatureSettings.from_config(cfg.features).workers)) as pool:
        answers = list(
            tqdm(
                pool.map(lambda i: logo_cue_answer(decoded[int(i)], templates, int(i), cues), queries),
                total=len(queries), desc="logo cue", unit="logo", disable=not progress,
            )
        )  # fmt: skip
    predicted = np.array([brand for brand, _, _ in answers], dtype=object)
    verified = np.array([flag for _, _, flag in answers], dtype=bool)
    correct = predicted == labels[queries]

    figures = {
        "embedder_R@1": recall_at_k(query_labels, neighbour_labels, 1),
        "embedder_R@5": recall_at_k(query_labels, neighbour_labels, 5),
        "logo_cue_R@1": float(correct.mean()),
        "logo_cue_answered": float(np.mean(predicted != None)),  # noqa: E711 (elementwise on objects)
        "logo_cue_verified": float(verified.mean()),
        "logo_cue_verified_precision": float(correct[verified].mean()) if verified.any() else float("nan"),
        "brands": float(len(findable)),
        "queries": float(len(queries)),
        "embedder_queries": float(len(query_rows)),
        "templates": float(len(templates)),
        "templates_skipped": float(skipped),
        "wall_s": time.perf_counter() - started,
    }
    params = {
        "data_dir": str(data_dir),
        "max_queries": str(suite.max_queries),
        "views": "+".join(views),
        "gem_p": str(suite.gem_p),
        "seed": str(seed),
        "logo_detector": cues.logo.detector,
        **embedder_params(embedder, embedder_cfg),
    }
    per_brand = {
        str(brand): float(correct[labels[queries] == brand].mean()) for brand in sorted(set(labels[queries]))
    }
    return SuiteResult("logo_brand", figures, params, {"failed": failed, "logo_cue_R@1_per_brand": per_brand})
