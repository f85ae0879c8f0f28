"""Instance retrieval on a folder-per-product image set (GroZi-120): R@1, R@5 and mAP by exact search.

Every 7th frame of a product (by sorted filename, index 0, 7, 14, ...) is a reference, the others are
queries; `embedder.precision=int8` is calibrated on the references, as `brandsentry index build` calibrates on
a workspace's. `--max-queries N`: a seeded subset of the queries (all references). Usage:

    .venv/bin/python scripts/eval_retrieval.py /work/shared/data/grozi120 [embedder=lite1 embedder.batch_size=64]
    .venv/bin/python scripts/eval_retrieval.py /work/shared/data/grozi120 --max-queries 2000 embedder.precision=int8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from brandsentry.config import load_config
from brandsentry.embed import EmbedderSettings
from brandsentry.embed_int8 import embedder_for_references
from brandsentry.evaluation.datasets import DatasetLayoutError, folder_split, labelled_images
from brandsentry.evaluation.retrieval import subsample
from brandsentry.images import DecodeLimits
from brandsentry.retrieval_metrics import retrieval_report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path)
    parser.add_argument(
        "overrides", nargs="*", help="config overrides, e.g. embedder=lite1 embedder.threads=2"
    )
    parser.add_argument("--every", type=int, default=7, help="every N-th frame of a product is a reference")
    parser.add_argument("--max-queries", type=int, help="a seeded subset of the queries (seed: config seed)")
    args = parser.parse_intermixed_args()

    cfg = load_config(args.overrides)
    limits = DecodeLimits.from_config(cfg.images)
    started = time.perf_counter()
    try:
        images = labelled_images(args.data_dir)
    except DatasetLayoutError as exc:
        raise SystemExit(str(exc)) from None
    is_reference = np.asarray(folder_split(images, args.every))
    queries = subsample(np.flatnonzero(~is_reference), args.max_queries, int(cfg.seed))
    chosen = np.sort(np.concatenate([np.flatnonzero(is_reference), queries]))
    paths = [images.paths[i] for i in chosen]
    labels, is_reference = list(np.asarray(images.labels)[chosen]), list(is_reference[chosen])
    references = [path for path, ref in zip(paths, is_reference, strict=True) if ref]
    embedder = embedder_for_references(EmbedderSettings.from_config(cfg.embedder), references, limits)
    embed_started = time.perf_counter()
    embeddings, failures = embedder.embed_files(paths, limits=limits, progress=True)
    embed_seconds = time.perf_counter() - embed_started
    for _, error in failures:
        print(f"failed: {error}")

    labels_kept = np.asarray(labels)[embeddings.ids]
    reference_mask = np.asarray(is_reference)[embeddings.ids]
    report = retrieval_report(
        embeddings.vectors[reference_mask],
        labels_kept[reference_mask],
        embeddings.vectors[~reference_mask],
        labels_kept[~reference_mask],
    )
    total_seconds = time.perf_counter() - started
    print(
        f"embedder {embedder.identity.arch} ({embedder.identity.key()}), input {embedder.identity.input_size}, "
        f"{embedder.identity.precision} on {embedder.runtime}, batch {embedder.batch_size}, "
        f"workers {embedder.num_workers}, device {embedder.device}"
    )
    print(
        f"images {len(paths)} (failed {len(failures)}), labels {len(set(labels))}, "
        f"references {int(reference_mask.sum())}, queries {int((~reference_mask).sum())}"
    )
    print("  ".join(f"{name} {value:.4f}" for name, value in report.items()))
    print(
        f"wall {total_seconds:.1f} s (embedding {embed_seconds:.1f} s, {len(paths) / embed_seconds:.1f} img/s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
