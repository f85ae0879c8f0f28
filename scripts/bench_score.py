"""Throughput and memory of the daily batch job (`brandsentry score`) on a synthetic world's day 2, against a
fixed reference measured in the same run.

Builds a throw-away workspace from a world (the demo world by default; generated unless --world is given),
trains the DEFAULT bundle on day 1 (every default cue behind the learned cascade: what `brandsentry train`
makes) and a cheap-cue bundle (logo and OCR off), then prints:

- the fixed reference: the old default model alone, ONNX Runtime fp32 Lite0 (centre crop, average pooling)
  on 2 threads, batch 32, on already decoded and preprocessed day-2 images (105-118 img/s on the 2-core dev
  box when idle); every throughput below is also a ratio to it;
- day 2 end to end (decode, embed, FAISS, cues, cascade, classifier, Parquet shards) with the default bundle
  and with the cheap one: images/s, CPU ms per listing, the escalation rate, and each cue group's ms per
  listing (measured while training featurised day 1, every cue on every listing);
- peak RSS for day 2 and for day 2 repeated --repeat times (flat in the number of listings, or not);
- with --layouts, how lanes and runtimes share the cores (cheap bundle).

Every figure comes from its own child process (clean peak RSS; tcmalloc preloaded when present unless
--no-tcmalloc). Usage:

    .venv/bin/python scripts/bench_score.py [--world DIR] [--keep DIR] [--repeat 4] [--layouts] [overrides]

Overrides apply to every step (e.g. `embedder.runtime=onnx` to measure another runtime).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
TRAINING = ("logger.register=false",)  # the default classifier and cues: the product as users train it
CHEAP_CUES = ("cues.logo.enabled=false", "cues.text.enabled=false")
REFERENCE = ("embedder=lite0", "embedder.runtime=onnx", "embedder.threads=2", "embedder.batch_size=32")
GOALS = {"default": 60.0, "cheap": 120.0}  # images/s on the 2-core box (issue: the default path at CPU speed)


# ---- child processes: one measurement each ---------------------------------------------------------------


def child_reference(spec: dict) -> dict:
    """The fixed reference: ONNX Runtime fp32 Lite0 alone, 2 threads, batch 32, on preprocessed images."""
    import torch

    from brandsentry.config import load_config
    from brandsentry.embed import Embedder
    from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
    from brandsentry.settings import default_settings

    embedder = Embedder.from_config(load_config(list(REFERENCE)).embedder)
    limits = default_settings(DecodeLimits, "images")
    preprocess = embedder.preprocessing
    paths = json.loads(Path(spec["paths"]).read_text())
    tensors = []
    for path in paths:  # the day's undecodable listings are error rows for the scorer: none here
        try:
            tensors.append(preprocess(decode_image(path, limits, target_size=preprocess.resize_size)))
        except ImageDecodeError:
            continue
    batches = [torch.stack(tensors[i : i + 32]) for i in range(0, len(tensors), 32)]
    embedder.embed_batch(batches[0])  # warm-up
    started = time.perf_counter()
    for batch in batches:
        embedder.embed_batch(batch)
    return {"images_per_s": len(tensors) / (time.perf_counter() - started), "runtime": embedder.runtime}


def child_score(spec: dict) -> dict:
    """`score_run` on a manifest, as `brandsentry score` runs it."""
    from brandsentry.config import load_config
    from brandsentry.scoring import score_run

    cfg = load_config(spec["overrides"])
    cpu, samples, done = cpu_seconds(), [], threading.Event()

    def sample_rss() -> None:  # RSS of this process and its lanes/workers every 0.25 s: flat, or growing?
        while not done.wait(0.25):
            samples.append(tree_rss_mib())

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    summary = score_run(cfg)
    done.set()
    sampler.join()
    half = len(samples) // 2
    return {
        "images_per_s": summary.images_per_s,
        "cpu_ms": 1000 * (cpu_seconds() - cpu) / summary.listings,
        "tree_peak_rss_mib": max(samples, default=0.0),
        "rss_first_half_mib": max(samples[:half], default=0.0),
        "rss_second_half_mib": max(samples[half:], default=0.0),
        "elapsed_s": summary.elapsed_s,
        "listings": summary.listings,
        "escalated": summary.escalated,
        "escalation_rate": summary.escalation_rate,
        "errors": summary.decisions["error"],
    }


def tree_rss_mib() -> float:
    """Resident memory of this process plus all of its descendants (scoring lanes, decode workers), MiB."""
    import psutil

    total = 0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            total += process.memory_info().rss
    return total / 2**20


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader's decode workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_child(kind: str, spec: dict, tcmalloc: bool) -> dict:
    """Run one measurement in a fresh interpreter; its result plus the peak RSS of it and its workers."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if tcmalloc:
        env["LD_PRELOAD"] = str(TCMALLOC)
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stdout, stderr = process.communicate()
    if process.returncode:
        raise SystemExit(f"{kind} measurement failed:\n{stderr[-3000:]}")
    lines = stdout.splitlines()
    result = json.loads(next(line[7:] for line in lines if line.startswith("RESULT ")))
    result["peak_rss_mib"] = (
        int(next(line for line in lines if line.startswith("PEAK_RSS_KIB ")).split()[1]) / 1024
    )
    return result


def child_main(kind: str, spec: str) -> int:
    """Print the result and the peak RSS of this process (the main one; decode workers are smaller)."""
    import resource

    result = {"reference": child_reference, "score": child_score}[kind](json.loads(spec))
    print(f"PEAK_RSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
    result["worker_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))
    return 0


# ---- setup ---------------------------------------------------------------------------------------------


def quiet(step: list[str]) -> None:
    """One `brandsentry` command with its chatter swallowed; a failure stops the benchmark naming the step."""
    import io

    from brandsentry.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(step)
    if code:
        raise SystemExit(f"setup step failed: brandsentry {' '.join(step)}")


def build_workspace(root: Path, world: Path, overrides: list[str]) -> list[str]:
    """References, brand assets and index of `world` in a fresh workspace -> the workspace overrides."""
    overrides = [f"workspace={root / 'workspace'}", *overrides]
    quiet(["refs", "import", str(world / "references.csv"), *overrides])
    quiet(["brands", "import", str(world / "brands.json"), *overrides])
    quiet(["sellers", "import", str(world / "authorized_sellers.csv"), *overrides])
    quiet(["index", "build", *overrides])
    return overrides


def train_bundle(overrides: list[str], world: Path, cues: tuple[str, ...]) -> dict:
    """A bundle trained on the world's day 1: its folder, training metrics and seconds."""
    from brandsentry.config import load_config
    from brandsentry.train import train

    started = time.perf_counter()
    cfg = load_config([*overrides, f"listings={world / 'listings_day1.csv'}", *TRAINING, *cues], "train")
    result = train(cfg)
    return {"bundle": str(result.bundle_dir), "metrics": dict(result.metrics),
            "seconds": time.perf_counter() - started}  # fmt: skip


def repeated_manifest(day: Path, repeat: int, out: Path) -> Path:
    """Day 2's rows `repeat` times over (fresh listing ids, same images, absolute paths): the memory run."""
    import pandas as pd

    rows = pd.read_csv(day)
    rows["image_path"] = [str(day.parent / path) for path in rows["image_path"]]
    frames = [rows.assign(listing_id=rows["listing_id"].astype(str) + f"-r{r}") for r in range(repeat)]
    pd.concat(frames, ignore_index=True).to_csv(out, index=False)
    return out


def image_paths(day: Path, out: Path) -> Path:
    """The day's decodable-looking image files (the reference model's input)."""
    import pandas as pd

    paths = [day.parent / path for path in pd.read_csv(day)["image_path"]]
    out.write_text(json.dumps([str(path) for path in paths if path.is_file()]))
    return out


def score_spec(overrides: list[str], manifest: Path, bundle: str, out: Path, *extra: str) -> dict:
    return {
        "overrides": [
            *overrides,
            f"score.listings={manifest}",
            f"score.out={out}",
            f"score.model={bundle}",
            "score.progress=off",
            "score.force=true",
            "score.device=cpu",
            "score.error_budget=1.0",
            *extra,
        ]  # fmt: skip
    }


def setup(root: Path, args) -> dict:
    """World, workspace and both bundles; kept in `root` with --keep and reused when the inputs match."""
    setup_file = root / "setup.json"
    wanted = {"world": str(args.world) if args.world else None, "overrides_given": args.overrides}
    if args.keep and setup_file.is_file():
        kept = json.loads(setup_file.read_text())
        if {key: kept.get(key) for key in wanted} == wanted:
            print(f"reusing the world, workspace and bundles kept in {root}")
            return kept
    started = time.perf_counter()
    world = args.world
    if world is None:
        world = root / "world"
        quiet(["synth", "world", f"out={world}"])
        quiet(["synth", "world", f"out={world}", "day=2"])
    if not (world / "listings_day2.csv").is_file():
        raise SystemExit(
            f"{world} has no listings_day2.csv (generate it: brandsentry synth world out={world} day=2)"
        )
    overrides = build_workspace(root, world, args.overrides)
    default, cheap = train_bundle(overrides, world, ()), train_bundle(overrides, world, CHEAP_CUES)
    kept = {**wanted, "world_dir": str(world), "overrides": overrides, "default": default, "cheap": cheap}
    setup_file.write_text(json.dumps(kept))
    print(f"setup {time.perf_counter() - started:.0f} s (default bundle trained in {default['seconds']:.0f} s, "
          f"cheap one in {cheap['seconds']:.0f} s)")  # fmt: skip
    return kept


# ---- main ----------------------------------------------------------------------------------------------


def cue_costs(metrics: dict) -> str:
    costs = {k[5:-3]: v for k, v in metrics.items() if k.startswith("cost.") and k.endswith("_ms")}
    return ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(costs.items(), key=lambda kv: -kv[1]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world", type=Path, help="a synthetic world folder with listings_day1/2.csv "
                        "(default: generate the demo world)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=4, help="day 2 repeated this often for the memory run")
    parser.add_argument("--layouts", action="store_true", help="also compare lanes and runtimes")
    parser.add_argument("--no-tcmalloc", action="store_true", help="do not preload tcmalloc")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temp dir); "
                        "a later run with the same --world and overrides reuses it")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. embedder.runtime=onnx")
    args = parser.parse_args()
    tcmalloc = TCMALLOC.is_file() and not args.no_tcmalloc
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars among the figures

    with tempfile.TemporaryDirectory(prefix="bench_score_") as temp:
        root = args.keep or Path(temp)
        root.mkdir(parents=True, exist_ok=True)
        kept = setup(root, args)
        world, overrides = Path(kept["world_dir"]), kept["overrides"]
        day = world / "listings_day2.csv"
        paths = image_paths(day, root / "paths.json")
        big = repeated_manifest(day, args.repeat, root / "listings_repeated.csv")
        print(f"tcmalloc {'preloaded' if tcmalloc else 'off'}; cores {os.cpu_count()}", flush=True)

        load_before = load_average()
        reference = run_child("reference", {"paths": str(paths)}, tcmalloc)
        runs = {
            name: run_child("score", score_spec(overrides, day, kept[name]["bundle"], root / f"out_{name}"),
                            tcmalloc)
            for name in ("default", "cheap")
        }  # fmt: skip
        repeated = run_child(
            "score", score_spec(overrides, big, kept["default"]["bundle"], root / "out_repeated"), tcmalloc
        )
        ref = reference["images_per_s"]
        print(f"\n{world.name} day 2 ({runs['default']['listings']} listings), CPU, load average before: "
              f"{load_before}, after: {load_average()}")  # fmt: skip
        print(f"fixed reference (ONNX Runtime fp32 Lite0 alone, 2 threads, batch 32, preprocessed): "
              f"{ref:7.1f} images/s")  # fmt: skip
        for name, label in (("default", "default bundle (every default cue, learned cascade)"),
                            ("cheap", "cheap path (logo and OCR off)")):  # fmt: skip
            run, metrics = runs[name], kept[name]["metrics"]
            goal = GOALS[name]
            print(f"{label}: {run['images_per_s']:7.1f} images/s end to end = {run['images_per_s'] / ref:.2f} x "
                  f"the reference; {run['cpu_ms']:.1f} ms CPU per listing; escalated "
                  f"{run['escalated']}/{run['listings'] - run['errors']} ({run['escalation_rate']:.0%}; "
                  f"validation {metrics.get('val.escalation_rate', 0):.0%}); goal >= {goal:.0f} images/s: "
                  f"{'met' if run['images_per_s'] >= goal else 'NOT met'}")  # fmt: skip
            print(f"  cue ms per listing (training, day 1, every cue on every listing): {cue_costs(metrics)}")
            print(f"  validation ROC-AUC {metrics['val.roc_auc']:.3f} (everything escalated "
                  f"{metrics.get('val.full.roc_auc', float('nan')):.3f}), test {metrics['test.roc_auc']:.3f}")  # fmt: skip
        print("  (end to end includes building the scorer - model, index - and starting any second lane's "
              "process, not loading the bundle; the reference excludes decoding)")  # fmt: skip
        print(f"peak RSS (all processes), default bundle: {runs['default']['tree_peak_rss_mib']:7.0f} MiB for "
              f"{runs['default']['listings']} listings, {repeated['tree_peak_rss_mib']:7.0f} MiB for "
              f"{repeated['listings']} (first half {repeated['rss_first_half_mib']:.0f} MiB, second half "
              f"{repeated['rss_second_half_mib']:.0f} MiB); {repeated['images_per_s']:.1f} images/s", flush=True)  # fmt: skip

        if args.layouts:
            print("\nlayouts, cheap bundle, day 2:")
            layouts = (
                ("2 lanes (default)", ()),
                ("1 lane, 1 decode worker", ("score.lanes=1", "score.decode_workers=1")),
                ("1 lane, 2 model threads, 1 decode worker", ("score.lanes=1", "score.model_threads=2",
                                                              "score.decode_workers=1")),
                ("2 lanes, torch runtime", ("score.lanes=2", "score.runtime=torch")),
            )  # fmt: skip
            for name, knobs in layouts:
                spec = score_spec(overrides, day, kept["cheap"]["bundle"], root / "out_layout", *knobs)
                result = run_child("score", spec, tcmalloc)
                print(f"  {name:42s} {result['images_per_s']:6.1f} images/s ({result['images_per_s'] / ref:.2f} x), "
                      f"{result['cpu_ms']:.1f} ms CPU per listing", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).parent))
        raise SystemExit(child_main(sys.argv[2], sys.argv[3]))
    raise SystemExit(main())
