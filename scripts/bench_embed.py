"""Throughput of the embedding stage: decode only, embed only, and decode+embed through the Embedder's DataLoader.

Generates N ~1000x750 q90 JPEGs in a temp dir. The goal on a CPU box is (decode+embed)/(embed only) close
to 1: decoding must hide behind the model. Usage:

    .venv/bin/python scripts/bench_embed.py --n 300 --threads 1 --workers 1 [--runtime torch|onnx|openvino]

`--compare` instead measures the backbone runtimes against each other in one run (the box is shared: only
the ratios to ONNX Runtime fp32 mean anything): ms per image on one thread (batch 32, pre-decoded tensors,
the runtimes interleaved round by round, median), and img/s of two lanes (two processes, one thread each,
at once), for ONNX Runtime fp32, OpenVINO fp32 and OpenVINO int8 (calibrated on the generated JPEGs with
the gate off: speed does not depend on what it was calibrated on; accuracy is scripts/eval_retrieval.py's).
It also times what folding normalisation into the compiled model (OpenVINO PrePostProcessor, uint8 NHWC
input) would change: the host's letterbox + normalise per image, and the model on uint8 input.

    .venv/bin/python scripts/bench_embed.py --compare --n 256 [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brandsentry.config import load_config
from brandsentry.embed import Embedder, EmbedderSettings, Preprocessing
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
    parser.add_argument(
        "--runtime", choices=("auto", "torch", "onnx", "openvino"), help="default: embedder config"
    )
    parser.add_argument(
        "--compare", action="store_true", help="ONNX Runtime vs OpenVINO fp32 vs int8 (see above)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="--compare: interleaved rounds per runtime")
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

    if args.compare:
        return compare_runtimes(cfg, args.n, width, height, args.rounds)
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


# ---- --compare: the backbone runtimes against each other ------------------------------------------------------
RUNTIMES = ("onnx", "openvino", "openvino int8")


def compare_runtimes(cfg, count: int, width: int, height: int, rounds: int) -> int:
    from brandsentry.embed_int8 import calibrated_embedder

    torch.set_num_threads(1)
    settings = replace(EmbedderSettings.from_config(cfg), threads=1, num_workers=0)
    limits = default_settings(DecodeLimits, "images")
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as tmp:
        paths = make_jpegs(Path(tmp), count, width, height)
        int8_settings = replace(
            settings, precision="int8", int8=replace(settings.int8, min_cosine=-1.0, min_references=1)
        )
        embedders = {
            "onnx": Embedder.from_config(replace(settings, runtime="onnx")),
            "openvino": Embedder.from_config(replace(settings, runtime="openvino")),
            "openvino int8": calibrated_embedder(int8_settings, paths, limits),
        }
        preprocessing = embedders["onnx"].preprocessing
        tensors = [decode_and_preprocess(path, preprocessing) for path in paths]
        per_image = {name: [] for name in RUNTIMES}
        for _ in range(rounds):
            for name in RUNTIMES:
                per_image[name].append(1000.0 / bench_embed(embedders[name], tensors))
        batches = Path(tmp) / "batches.npy"
        np.save(batches, torch.stack(tensors).numpy())
        int8_model = embedders["openvino int8"].backbone_file
        lanes = {name: two_lanes(settings, name, int8_model, batches) for name in RUNTIMES}
        folded = fold_normalisation(embedders["openvino"], paths, preprocessing, limits, rounds)
    ms = {name: statistics.median(values) for name, values in per_image.items()}
    print(
        f"{settings.arch} input {preprocessing.input_size} view {preprocessing.view}, batch {settings.batch_size}, "
        f"{count} JPEGs {width}x{height}, {rounds} interleaved rounds (median), ratios to ONNX Runtime fp32"
    )
    print(f"{'runtime':<18}{'ms/image/thread':>16}{'x ORT':>8}{'2-lane img/s':>14}{'x ORT':>8}")
    for name in RUNTIMES:
        print(
            f"{name:<18}{ms[name]:>16.2f}{ms['onnx'] / ms[name]:>8.2f}{lanes[name]:>14.1f}"
            f"{lanes[name] / lanes['onnx']:>8.2f}"
        )
    print(
        "fold normalise into the model (PrePostProcessor, uint8 NHWC input), OpenVINO fp32, ms per image: "
        f"host letterbox+normalise {folded['host_float']:.2f} -> uint8 letterbox {folded['host_uint8']:.2f}; "
        f"model {folded['model_float']:.2f} -> {folded['model_uint8']:.2f}; "
        f"decode+preprocess+model {folded['total_float']:.2f} -> {folded['total_uint8']:.2f} "
        f"({folded['total_float'] / folded['total_uint8']:.2f}x)"
    )
    return 0


def two_lanes(settings: EmbedderSettings, name: str, int8_model: Path, batches: Path) -> float:
    """img/s of two processes embedding the same batches at once, one thread each."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    lanes = [
        context.Process(target=_lane, args=(settings, name, int8_model, batches, barrier, results))
        for _ in range(2)
    ]
    for lane in lanes:
        lane.start()
    done = [results.get(timeout=900) for _ in lanes]
    for lane in lanes:
        lane.join()
    return sum(images for images, _ in done) / max(seconds for _, seconds in done)


def _lane(settings, name, int8_model, batches, barrier, results) -> None:
    torch.set_num_threads(1)
    if name == "openvino int8":
        embedder = Embedder.from_config(replace(settings, precision="int8"), int8_model=int8_model)
    else:
        embedder = Embedder.from_config(replace(settings, runtime=name))
    tensors = list(torch.from_numpy(np.load(batches)))
    embedder.embed_batch(torch.stack(tensors[: embedder.batch_size]))  # warm-up
    barrier.wait()
    started = time.perf_counter()
    bench_embed(embedder, tensors)
    results.put((len(tensors), time.perf_counter() - started))


def fold_normalisation(
    embedder: Embedder, paths: list[Path], preprocessing: Preprocessing, limits, rounds: int
) -> dict[str, float]:
    """ms per image of the host and model steps today (float letterbox) and with normalisation and the
    layout change folded into the compiled model (the host only letterboxes uint8)."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(embedder.backbone_file))
    steps = ov.preprocess.PrePostProcessor(model)
    steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    steps.input().model().set_layout(ov.Layout("NCHW"))
    scale = [255.0 * s for s in preprocessing.std]
    steps.input().preprocess().convert_element_type(ov.Type.f32).mean(
        [255.0 * m for m in preprocessing.mean]
    ).scale(scale)
    config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}
    folded = core.compile_model(steps.build(), "CPU", config).create_infer_request()
    decoded = [decode_image(path, limits, target_size=preprocessing.resize_size) for path in paths]
    size, batch = preprocessing.input_size, embedder.batch_size

    def uint8_letterbox(rgb: np.ndarray) -> np.ndarray:
        image = Image.fromarray(rgb)
        fitted = tuple(max(1, round(side * size / max(image.size))) for side in image.size)
        canvas = np.empty((size, size, 3), dtype=np.uint8)
        canvas[:] = np.rint(np.asarray(preprocessing.mean) * 255).astype(np.uint8)
        left, top = (size - fitted[0]) // 2, (size - fitted[1]) // 2
        canvas[top : top + fitted[1], left : left + fitted[0]] = np.asarray(image.resize(fitted))
        return canvas

    def per_image(step, items) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            step(items)
            times.append((time.perf_counter() - started) * 1000 / len(items))
        return statistics.median(times)

    floats = [preprocessing(rgb) for rgb in decoded]
    uint8s = np.stack([uint8_letterbox(rgb) for rgb in decoded])
    stacked = torch.stack(floats)
    decode = per_image(
        lambda ps: [decode_image(p, limits, target_size=preprocessing.resize_size) for p in ps], paths
    )
    figures = {
        "host_float": per_image(lambda items: [preprocessing(rgb) for rgb in items], decoded),
        "host_uint8": per_image(lambda items: [uint8_letterbox(rgb) for rgb in items], decoded),
        "model_float": per_image(
            lambda items: [embedder.embed_batch(items[i : i + batch]) for i in range(0, len(items), batch)],
            stacked,
        ),
        "model_uint8": per_image(
            lambda items: [folded.infer([items[i : i + batch]]) for i in range(0, len(items), batch)], uint8s
        ),
    }
    figures["total_float"] = decode + figures["host_float"] + figures["model_float"]
    figures["total_uint8"] = decode + figures["host_uint8"] + figures["model_uint8"]
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
