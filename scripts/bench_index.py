"""Build rate, query rate and recall@k of ReferenceIndex structures against exact (Flat) search.

Data are clustered unit vectors (products = clusters, photos = noisy views of them): recall on iid random
vectors says nothing about real embeddings. Example:

    .venv/bin/python scripts/bench_index.py --n 100000 --dim 256 --factory Flat HNSW32 IVF1024,PQ32
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from brandsentry.index import IndexParams, ReferenceIndex
from brandsentry.settings import default_settings

EMBEDDER = {"bench": "synthetic-clustered"}


def clustered(n: int, dim: int, clusters: int, noise: float, rng: np.random.Generator, centres=None):
    """`n` unit vectors around `clusters` centres; `noise` is the norm of the per-view perturbation."""
    if centres is None:
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, clusters, n)
    rows = centres[labels] + (noise / np.sqrt(dim)) * rng.standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True), centres


def bench(factory: str, ids, vectors, queries, k: int, params: IndexParams):
    index = ReferenceIndex.create(factory, vectors.shape[1], EMBEDDER, params)
    start = time.perf_counter()
    index.add(ids, vectors)
    build_s = time.perf_counter() - start
    index.search(queries[: params.query_batch], k=k)  # warm-up
    start = time.perf_counter()
    result = index.search(queries, k=k)
    search_s = time.perf_counter() - start
    return result.ids, vectors.shape[0] / build_s, queries.shape[0] / search_s, build_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="reference vectors")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--factory", nargs="+", default=["Flat", "HNSW32", "IVF1024,PQ32"])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=1.0, help="norm of the per-view perturbation")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--query-batch", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    vectors, centres = clustered(args.n, args.dim, args.clusters, args.noise, rng)
    queries, _ = clustered(args.queries, args.dim, args.clusters, args.noise, rng, centres)
    ids = rng.permutation(10 * args.n)[: args.n].astype(np.int64)
    params = default_settings(
        IndexParams,
        "index",
        k=args.k,
        nprobe=args.nprobe,
        ef_search=args.ef_search,
        query_batch=args.query_batch,
    )

    truth, *_ = bench("Flat", ids, vectors, queries, args.k, params)
    print(
        f"n={args.n} dim={args.dim} queries={args.queries} clusters={args.clusters} noise={args.noise} "
        f"k={args.k} nprobe={args.nprobe} ef_search={args.ef_search} query_batch={args.query_batch}"
    )
    print(f"{'factory':<16} {'build s':>8} {'build vec/s':>12} {'QPS':>10} {f'recall@{args.k}':>10}")
    for factory in args.factory:
        found, build_rate, qps, build_s = bench(factory, ids, vectors, queries, args.k, params)
        recall = np.mean([len(np.intersect1d(f, t)) / args.k for f, t in zip(found, truth, strict=True)])
        print(f"{factory:<16} {build_s:>8.1f} {build_rate:>12.0f} {qps:>10.0f} {recall:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
