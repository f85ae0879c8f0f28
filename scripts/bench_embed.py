"""Throughput of the embedding stage: decode only, embed only, and decode+embed through the Embedder's DataLoader.

Generates N ~1000x750 q90 JPEGs in a temp dir. The goal on a CPU box is (decode+embed)/(embed only) close
to 1: decoding must hide behind the model. Usage:

    .venv/bin/python scripts/bench_embed.py --n 300 --threads 1 --workers 1 [--runtime torch|onnx]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brandsentry.config import load_config
from brandsentry.embed import Embedder, Preprocessing
from brandsentry.images import DecodeLimits, decode_image
from brandsentry.settings import default_settings


def make_jpegs(directory: Path, count: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """Photo-like JPEGs: smooth colour fields plus fine grain, so they compress like real photos (~q90)."""
    rng = np.random.default_rng(seed)
    paths = []
    for number in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        grain = rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
        path = directory / f"{number:05d}.jpg"
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def decode_and_preprocess(path: Path, preprocessing: Preprocessing) -> torch.Tensor:
    limits = default_settings(DecodeLimits, "images")
    return preprocessing(decode_image(path, limits, target_size=preprocessing.resize_size))


def bench_decode(paths: list[Path], preprocessing: Preprocessing, processes: int) -> float:
    torch.set_num_threads(1)  # forked decoders inherit it: one thread per process
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(
            partial(decode_and_preprocess, preprocessing=preprocessing), paths[: processes * 2]
        )  # warm-up
        started = time.perf_counter()
        pool.map(partial(decode_and_preprocess, preprocessing=preprocessing), paths, chunksize=8)
        return len(paths) / (time.perf_counter() - started)


def bench_embed(embedder: Embedder, tensors: list[torch.Tensor]) -> float:
    batches = [
        torch.stack(tensors[i : i + embedder.batch_size]) for i in range(0, len(tensors), embedder.batch_size)
    ]
    embedder.embed_batch(batches[0])  # warm-up
    started = time.perf_counter()
    for batch in batches:
        embedder.embed_batch(batch)
    return len(tensors) / (time.perf_counter() - started)


def bench_pipeline(embedder: Embedder, paths: list[Path]) -> float:
    embedder.embed_files(paths[: embedder.batch_size])  # warm-up
    started = time.perf_counter()
    embeddings, failures = embedder.embed_files(paths)
    elapsed = time.perf_counter() - started
    if failures or len(embeddings.ids) != len(paths):
        raise SystemExit(f"benchmark images failed to embed: {failures[:3]}")
    return len(paths) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="number of generated JPEGs")
    parser.add_argument("--size", default="1000x750", help="WIDTHxHEIGHT of the generated JPEGs")
    parser.add_argument("--batch-size", type=int, help="default: embedder config")
    parser.add_argument("--threads", type=int, help="torch intra-op threads in the main process")
    parser.add_argument("--workers", type=int, help="DataLoader decode workers")
    parser.add_argument("--decode-processes", type=int, default=2)
    parser.add_argument("--arch", help="timm architecture (default: embedder config)")
    parser.add_argument("--weights", help="pypi:<stem> | state-dict path | random")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--runtime", choices=("auto", "torch", "onnx"), help="default: embedder config")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. embedder=lite1")
    args = parser.parse_args()

    cfg = load_config(args.overrides).embedder
    for key, value in (
        ("batch_size", args.batch_size),
        ("threads", args.threads),
        ("num_workers", args.workers),
        ("arch", args.arch),
        ("weights", args.weights),
        ("channels_last", args.channels_last),
        ("runtime", args.runtime),
    ):
        if value is not None:
            cfg[key] = value
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp:
        paths = make_jpegs(Path(tmp), args.n, width, height)
        embedder = Embedder.from_config(cfg)
        preprocessing = embedder.preprocessing
        threads = torch.get_num_threads()
        decode_rate = bench_decode(paths, preprocessing, args.decode_processes)
        torch.set_num_threads(threads)
        tensors = [decode_and_preprocess(path, preprocessing) for path in paths]
        embed_rate = bench_embed(embedder, tensors)
        pipeline_rate = bench_pipeline(embedder, paths)

    print(
        f"{embedder.identity.arch} input {preprocessing.input_size} (resize {preprocessing.resize_size}), "
        f"{args.n} JPEGs {width}x{height} q90, device {embedder.device}, batch {embedder.batch_size}, "
        f"torch threads {threads}, workers {embedder.num_workers}, channels_last {embedder.channels_last}, "
        f"runtime {embedder.runtime}"
    )
    print(f"decode+preprocess only ({args.decode_processes} processes, draft): {decode_rate:7.1f} img/s")
    print(f"embed only (pre-decoded tensors):                {embed_rate:7.1f} img/s")
    print(f"decode+embed (DataLoader, {embedder.num_workers} workers):            {pipeline_rate:7.1f} img/s")
    print(f"ratio (decode+embed)/(embed only): {pipeline_rate / embed_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
