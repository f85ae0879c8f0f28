"""The reference index at catalogue scale: build time, memory, query rate and nearest-first agreement of FAISS
factory strings against exact (Flat) search, on a corpus of real-like embeddings.

Never iid random vectors (ANN recall means nothing there). The corpus starts from real photos embedded by
the default embedder (GroZi-120 frames, logos63, grocery230 under ../shared/data; cached under /tmp keyed by
the files, the embedder identity and the augmentation settings):
- real rows: the photos that are not held out, plus a crop/colour-jittered view of some of them;
- synthetic rows up to `--n`: new products shifted from a real product's centroid along the corpus'
  principal directions (by 0.35-1x the distance to that product's nearest other product; 10% unshifted,
  i.e. more views of the real product), each with 1 + Poisson(7) views = centroid + a real member's residual
  (scaled 0.8-1.2) + noise along the principal directions at half the product's own spread, re-normalised.
Queries are held-out photos (every 8th frame of a product, one of each grocery package's three views) and a
crop/jittered view of each: never corpus members. Flat runs first in the same process and is the reference:
nearest-first = top-1 id equal to Flat's, recall@k against Flat's top k, QPS relative to Flat's. The corpus
is streamed by blocks (regenerated per index, seeded), so memory is one index plus a block. Example:

    .venv/bin/python scripts/bench_index.py --n 1000000 \\
        --factories "PCAR256,IVF4096,PQ64x4fs,RFlat" "IVF4096,PQ64x4fs,RFlat" --nprobe 8 16 32
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from brandsentry.config import load_config
from brandsentry.files import atomic_write
from brandsentry.index import IndexParams, ReferenceIndex

DATA = Path("../shared/data")  # beside the development checkout, as in the README
AUGMENTATION = {"crop": (0.65, 0.95), "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "version": 1}
SHIFT = (0.35, 1.0)  # synthetic product shift, in units of the source product's nearest-centroid distance
UNSHIFTED = 0.1  # share of synthetic products that are more views of a real product
VIEWS_POISSON = 7  # views per synthetic product: 1 + Poisson(7)
NOISE = 0.5  # per-view noise norm, in units of the source product's own spread
BASIS = 256  # principal directions the shifts and the noise live in
BLOCK = 4096  # synthetic products per generated block (~32k rows)
ADD_ROWS = 65536  # rows per add while building
PROBE_ROWS = 50_000  # the Flat load probe (see main)
HOLD_OUT_EVERY = 8
EMBEDDER = {"bench": "real-like"}


# ---- real photo embeddings -----------------------------------------------------------------------------
def photo_split(data: Path) -> tuple[list[Path], list[str], list[bool]]:
    """Every photo with its product (folder, or grocery package) and whether it is held out as a query."""
    paths, groups, held_out = [], [], []

    def take(members: list[Path], group: str, query_at) -> None:
        for number, path in enumerate(sorted(members)):
            paths.append(path)
            groups.append(group)
            held_out.append(query_at(number))

    for folder in sorted(p for p in (data / "grozi120").iterdir() if p.is_dir()):
        take(list(folder.glob("*.jpg")), f"grozi/{folder.name}", lambda i: i % HOLD_OUT_EVERY == 4)
    for folder in sorted(p for p in (data / "logos63").iterdir() if p.is_dir()):
        take(list(folder.glob("*.jpg")), f"logo/{folder.name}", lambda i: i % HOLD_OUT_EVERY == 4)
    packages: dict[str, list[Path]] = {}
    for path in (data / "grocery230" / "images").glob("*.jpg"):
        packages.setdefault(re.split(r"_(?:png|jpg)", path.name, maxsplit=1)[0], []).append(path)
    for package, members in sorted(packages.items()):
        take(members, f"grocery/{package}", lambda i: i == 1)
    if not paths:
        raise SystemExit(f"no photos under {data} (grozi120, logos63, grocery230)")
    return paths, groups, held_out


def augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another view of a photo: a random crop of 65-95% of each side, brightness/contrast/saturation jitter."""
    height, width = rgb.shape[:2]
    low, high = AUGMENTATION["crop"]
    crop_h, crop_w = (max(8, int(side * rng.uniform(low, high))) for side in (height, width))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    image = rgb[top : top + crop_h, left : left + crop_w].astype(np.float32)
    image *= 1 + rng.uniform(-1, 1) * AUGMENTATION["brightness"]
    mean = image.mean()
    image = mean + (image - mean) * (1 + rng.uniform(-1, 1) * AUGMENTATION["contrast"])
    grey = image.mean(axis=2, keepdims=True)
    image = grey + (image - grey) * (1 + rng.uniform(-1, 1) * AUGMENTATION["saturation"])
    return np.clip(image, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RealEmbeddings:
    """Unit vectors of the photos and their augmented views; `group` indexes `group_names`."""

    corpus: np.ndarray
    corpus_group: np.ndarray
    corpus_augmented: np.ndarray  # bool: an augmented view (not the photo itself)
    queries: np.ndarray
    query_augmented: np.ndarray
    group_names: list[str]
    key: str  # of the inputs they were embedded from


def real_embeddings(data: Path, corpus_views: int, cache: Path, seed: int) -> RealEmbeddings:
    """Embed the photos (and augmented views) with the default embedder, once per set of inputs."""
    from brandsentry.embed import Embedder
    from brandsentry.images import DecodeLimits, decode_image
    from brandsentry.settings import default_settings

    paths, groups, held_out = photo_split(data)
    cfg = load_config(["embedder.runtime=onnx", "embedder.threads=2"]).embedder
    embedder = Embedder.from_config(cfg)
    inputs = {
        "embedder": embedder.identity.to_dict(),
        "files": [(str(p.relative_to(data)), p.stat().st_size) for p in paths],
        "augmentation": AUGMENTATION,
        "corpus_views": corpus_views,
        "seed": seed,
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"real-{key}.npz"
    names = sorted(set(groups))
    if not path.is_file():
        rng = np.random.default_rng(seed)
        held = np.asarray(held_out)
        corpus_rows = np.flatnonzero(~held)
        views = np.sort(rng.choice(corpus_rows, min(corpus_views, corpus_rows.size), replace=False))
        limits = default_settings(DecodeLimits, "images")
        jobs = [(i, False) for i in range(len(paths))] + [(i, True) for i in views]
        jobs += [(i, True) for i in np.flatnonzero(held)]
        vectors = np.empty((len(jobs), embedder.dim), dtype=np.float32)
        started = time.perf_counter()
        for start in range(0, len(jobs), 256):
            images = []
            for row, augmented in jobs[start : start + 256]:
                rgb = decode_image(paths[row], limits, target_size=embedder.preprocessing.resize_size)
                images.append(augment(rgb, rng) if augmented else rgb)
            vectors[start : start + len(images)] = embedder.embed_arrays(images)
            print(
                f"  embedded {start + len(images)}/{len(jobs)} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        rows = np.array([row for row, _ in jobs])
        augmented = np.array([aug for _, aug in jobs])
        group = np.array([names.index(groups[row]) for row in rows], dtype=np.int32)
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write(
            path,
            lambda handle: np.savez(
                handle, vectors=vectors, held=held[rows], augmented=augmented, group=group
            ),
        )
    saved = np.load(path)
    held, augmented = saved["held"], saved["augmented"]
    return RealEmbeddings(
        corpus=saved["vectors"][~held],
        corpus_group=saved["group"][~held],
        corpus_augmented=augmented[~held],
        queries=saved["vectors"][held],
        query_augmented=augmented[held],
        group_names=names,
        key=key,
    )


# ---- the corpus ------------------------------------------------------------------------------------------
class Corpus:
    """`n` unit vectors: seeded blocks of synthetic products, each with its share of the real rows (so any
    prefix is a fair sample, e.g. the training one); see the module docstring."""

    def __init__(self, real: RealEmbeddings, n: int, seed: int):
        self.real, self.groups = real.corpus, real.corpus_group
        if n < self.real.shape[0]:
            raise SystemExit(f"--n {n} is below the {self.real.shape[0]} real rows")
        self.n, self.dim, self.seed = n, self.real.shape[1], seed
        self.key = hashlib.sha256(
            json.dumps([real.key, n, seed, SHIFT, UNSHIFTED, VIEWS_POISSON, NOISE, BASIS, BLOCK]).encode()
        ).hexdigest()[:16]
        count = int(self.groups.max()) + 1
        self.members = [np.flatnonzero(self.groups == g) for g in range(count)]
        self.sizes = np.array([m.size for m in self.members])
        self.first = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.flat_members = np.concatenate(self.members)
        self.centroids = np.stack([self.real[m].mean(axis=0) for m in self.members]).astype(np.float32)
        residual = self.real - self.centroids[self.groups]
        spread = np.sqrt(np.bincount(self.groups, (residual**2).sum(axis=1), count) / self.sizes)
        self.spread = np.where(self.sizes < 2, np.median(spread[self.sizes >= 2]), spread).astype(np.float32)
        squared = (self.centroids**2).sum(1)
        distance = squared[:, None] + squared[None, :] - 2 * self.centroids @ self.centroids.T
        np.fill_diagonal(distance, np.inf)
        self.gap = np.sqrt(np.maximum(distance.min(axis=1), 0)).astype(np.float32)
        centred = self.real - self.real.mean(axis=0)
        variance, directions = np.linalg.eigh(centred.T @ centred)  # ascending
        variance, directions = np.maximum(variance[::-1][:BASIS], 0), directions[:, ::-1][:, :BASIS]
        # z @ basis (z ~ N(0, I)) has unit expected norm and the shape of the corpus' principal spectrum
        self.basis = (np.sqrt(variance / variance.sum())[:, None] * directions.T).astype(np.float32)
        rng = np.random.default_rng([seed, 0])
        synthetic = n - self.real.shape[0]
        views = 1 + rng.poisson(VIEWS_POISSON, synthetic // (VIEWS_POISSON + 1) + 64)
        while views.sum() < synthetic:
            views = np.concatenate([views, 1 + rng.poisson(VIEWS_POISSON, 64)])
        ends = np.cumsum(views)
        keep = int(np.searchsorted(ends, synthetic)) + 1 if synthetic else 0
        self.views = views[:keep]
        if keep:
            self.views[-1] -= ends[keep - 1] - synthetic
        self.source = rng.integers(0, count, keep)
        self.shift = np.where(rng.random(keep) < UNSHIFTED, 0.0, rng.uniform(*SHIFT, keep)).astype(np.float32)
        blocks = max(1, -(-keep // BLOCK))
        self.real_parts = np.array_split(rng.permutation(self.real.shape[0]), blocks)
        lengths = [
            (part.size, int(self.views[b * BLOCK : (b + 1) * BLOCK].sum()))
            for b, part in enumerate(self.real_parts)
        ]
        self.is_real = np.concatenate([np.repeat([True, False], pair) for pair in lengths])

    def rows(self, cache: Path) -> np.ndarray:
        """The corpus, memory-mapped from a .npy under `cache` (written once: one corpus file at a time)."""
        path = cache / f"corpus-{self.key}.npy"
        if not path.is_file():
            for old in cache.glob("corpus-*.npy"):
                old.unlink()
            atomic_write(path, self._write)
        return np.load(path, mmap_mode="r")

    def _write(self, handle) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(handle, {**header, "shape": (self.n, self.dim)})
        for block, part in enumerate(self.real_parts):
            handle.write(self.real[part].tobytes())
            handle.write(self._synthetic(block, slice(block * BLOCK, (block + 1) * BLOCK)).tobytes())

    def _synthetic(self, block: int, products: slice) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, block])
        source, views = self.source[products], self.views[products]
        shifts = rng.standard_normal((source.size, self.basis.shape[0]), dtype=np.float32) @ self.basis
        centres = self.centroids[source] + shifts * (self.shift[products] * self.gap[source])[:, None]
        product = np.repeat(np.arange(source.size), views)
        group = source[product]
        member = self.flat_members[
            self.first[group] + (rng.random(group.size) * self.sizes[group]).astype(int)
        ]
        rows = centres[product]
        scale = rng.uniform(0.8, 1.2, (group.size, 1)).astype(np.float32)
        rows += scale * (self.real[member] - self.centroids[group])
        noise = rng.standard_normal((group.size, self.basis.shape[0]), dtype=np.float32) @ self.basis
        rows += noise * (NOISE * self.spread[group])[:, None]
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows


# ---- measuring -------------------------------------------------------------------------------------------
def build(factory: str, rows: np.ndarray, ids: np.ndarray, params: IndexParams):
    """Add in blocks (the first of `train_size` rows when the structure trains on it); index, seconds."""
    index = ReferenceIndex.create(factory, rows.shape[1], EMBEDDER, params)
    started = time.perf_counter()
    start = 0 if index.is_trained else min(params.train_size, rows.shape[0])
    if start:
        index.add(ids[:start], rows[:start])
    for begin in range(start, rows.shape[0], ADD_ROWS):
        index.add(ids[begin : begin + ADD_ROWS], rows[begin : begin + ADD_ROWS])
    return index, time.perf_counter() - started


def anonymous_rss() -> int:
    """Resident anonymous memory (the index, arrays): unlike RSS, without the memory-mapped corpus' pages."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^RssAnon:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024


def timed_search(index: ReferenceIndex, queries: np.ndarray, k: int):
    index.search(queries[: index.params.query_batch], k=k)  # warm-up
    started = time.perf_counter()
    result = index.search(queries, k=k)
    return result, queries.shape[0] / (time.perf_counter() - started)


def knob_grid(index: ReferenceIndex, values: dict[str, list[int]]) -> list[dict]:
    """The search-time settings this family has, every combination of the values asked for."""
    grid = [{}]
    for knob in index.search_knobs:
        grid = [{**g, knob: v} for g in grid for v in values[knob]]
    return grid


def describe(knobs: dict) -> str:
    names = {"nprobe": "nprobe", "ef_search": "ef", "refine_k_factor": "kf"}
    return " ".join(f"{names[k]}={v}" for k, v in knobs.items()) or "-"


def percentile_text(values: np.ndarray) -> str:
    p10, p50 = np.percentile(values, [10, 50])
    return f"median {p50:.3f}, 10th percentile {p10:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="corpus size (real rows + synthetic)")
    parser.add_argument(
        "--factories",
        nargs="+",
        default=["PCAR256,IVF4096,PQ64x4fs,RFlat", "PCAR256,IVF4096,PQ64x4fs,Refine(SQ8)"],
        help="FAISS factory strings compared with Flat (which always runs first)",
    )
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32], help="IVF lists probed")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64], help="HNSW candidate list")
    parser.add_argument(
        "--k-factor", type=int, nargs="+", default=[8, 16, 32], help="refine shortlist = k x this"
    )
    parser.add_argument("--train-size", type=int, help="default: the large index config's train_size")
    parser.add_argument("--corpus-views", type=int, default=4000, help="augmented photo views in the corpus")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "brandsentry-bench-index")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.threads)
    real = real_embeddings(args.data, args.corpus_views, args.cache, args.seed)
    corpus = Corpus(real, args.n, args.seed)
    started = time.perf_counter()
    rows = corpus.rows(args.cache)
    print(f"corpus ready in {time.perf_counter() - started:.0f} s (cached: {args.cache})")
    queries = real.queries
    params = IndexParams.from_config(load_config(["index=large"]).index)
    if args.train_size:
        params = replace(params, train_size=args.train_size)
    k = params.k
    knob_values = {"nprobe": args.nprobe, "ef_search": args.ef_search, "refine_k_factor": args.k_factor}
    ids = np.random.default_rng([args.seed, 2]).permutation(10 * args.n)[: args.n].astype(np.int64)
    print(
        f"corpus {args.n:,} x {corpus.dim}: {corpus.real.shape[0]:,} real rows ({int(real.corpus_augmented.sum()):,}"
        f" augmented views) from {len(real.group_names)} products, {corpus.views.size:,} synthetic products; "
        f"{queries.shape[0]:,} held-out queries ({int(real.query_augmented.sum()):,} augmented views); "
        f"k={k}, query_batch={params.query_batch}, train_size={params.train_size}, {args.threads} threads"
    )

    # the box is shared: a small Flat index timed beside every row rescales Flat's QPS to that moment's load
    probe = ReferenceIndex.create("Flat", corpus.dim, EMBEDDER, params)
    probe.add(ids[:PROBE_ROWS], rows[:PROBE_ROWS])

    def probe_qps() -> float:
        return timed_search(probe, queries[: params.query_batch], k)[1]

    baseline_rss, before = anonymous_rss(), probe_qps()
    flat, flat_build = build("Flat", rows, ids, params)
    truth, flat_qps = timed_search(flat, queries, k)
    probe_at_flat = (before + probe_qps()) / 2
    flat_rss, flat_bytes = anonymous_rss() - baseline_rss, flat.serialized_bytes()
    del flat
    real_only = ReferenceIndex.create("Flat", corpus.dim, EMBEDDER, params)
    real_only.add(ids[corpus.is_real], rows[corpus.is_real])
    small = real_only.search(queries, k=2)
    print(
        f"exact top-1 similarity, real rows only: {percentile_text(small.scores[:, 0])}; "
        f"full corpus: {percentile_text(truth.scores[:, 0])}"
    )
    print(
        f"exact top1-top2 margin, real rows only: {percentile_text(small.scores[:, 0] - small.scores[:, 1])}; "
        f"full corpus: {percentile_text(truth.scores[:, 0] - truth.scores[:, 1])}"
    )
    real_ids = ids[corpus.is_real]
    print(f"queries whose exact top-1 is a synthetic row: {np.mean(~np.isin(truth.ids[:, 0], real_ids)):.2f}")
    del real_only

    header = (
        f"{'factory':<38} {'search':<16} {'build s':>8} {'index MiB':>10} {'RSS MiB':>8} {'QPS':>8} "
        f"{'x Flat':>7} {'nearest-1st':>11} {f'recall@{k}':>9}"
    )
    print(header)
    mib = 2**20
    print(
        f"{'Flat':<38} {'-':<16} {flat_build:>8.1f} {flat_bytes / mib:>10.0f} {flat_rss / mib:>8.0f} "
        f"{flat_qps:>8.0f} {1.0:>7.1f} {1.0:>11.3f} {1.0:>9.3f}",
        flush=True,
    )
    for factory in args.factories:
        index, build_s = build(factory, rows, ids, params)
        rss, size = anonymous_rss() - baseline_rss, index.serialized_bytes()
        for knobs in knob_grid(index, knob_values):
            index.retune(replace(index.params, **knobs))
            before = probe_qps()
            found, qps = timed_search(index, queries, k)
            flat_now = flat_qps * (before + probe_qps()) / 2 / probe_at_flat
            first = np.mean(found.ids[:, 0] == truth.ids[:, 0])
            recall = np.mean(
                [np.intersect1d(f, t).size / k for f, t in zip(found.ids, truth.ids, strict=True)]
            )
            print(
                f"{factory:<38} {describe(knobs):<16} {build_s:>8.1f} {size / mib:>10.0f} {rss / mib:>8.0f} "
                f"{qps:>8.0f} {qps / flat_now:>7.1f} {first:>11.3f} {recall:>9.3f}",
                flush=True,
            )
        del index
    print(
        "index MiB: what a save writes; RSS MiB: resident anonymous memory over the start, index built; "
        f"x Flat: QPS / Flat's, Flat's rescaled by a {PROBE_ROWS:,}-row Flat probe timed before and after"
    )


if __name__ == "__main__":
    main()
