"""The local engine on several processes: scoring lanes, each a whole `ShardScorer` pipeline.

Layouts (`score.lanes`, auto = one lane per usable CPU, at most 4 and one per 5,000 listings to score;
1 on CUDA: `settings.lane_count`). Lane 0 is a thread of this process, the others are spawned processes;
each lane is a whole pipeline (decode, model with `model_threads` threads, cues, classifier, one chunk
after the other) pulling chunks from one queue, and this process puts the rows back into shards and
writes them. Lanes have no GIL between them and no hand-over of decoded pixels, and every core runs the
model, but a spawned lane costs ~7 CPU-s to start (imports, model, index) and its own memory: every lane
holds its own model, index and reference caches, so lanes multiply that part of the memory, and this
process holds at most two chunks per lane of results besides the shards being assembled. On the dev
box 2 lanes scored 500 listings at 17 img/s vs 24 in one process, hence auto = lanes for big days only.

This module is also what a spawned lane imports first (`lane_entry`), so it imports nothing heavy at
import time: the lane asks the kernel to kill it when its parent dies before it imports torch, timm,
FAISS and the rest (tens of seconds on a busy box), so a killed `brandsentry score` never leaves a lane
behind, not even one still starting up. Everything heavy is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from omegaconf import DictConfig

    from brandsentry.bundle import ScoringBundle
    from brandsentry.scoring.plan import Shard
    from brandsentry.scoring.progress import Progress
    from brandsentry.scoring.settings import ScoreSettings


def score_in_lanes(
    cfg: DictConfig,
    settings: ScoreSettings,
    bundle: ScoringBundle,
    listings: pd.DataFrame,
    out: Path,
    shards: Sequence[Shard],
    chunks: list[tuple[int, int, int]],
    lanes: int,
    progress: Progress,
) -> None:
    """Score `chunks` (of `shards`) on `lanes` lanes, each a whole pipeline (decode, model, FAISS, cues, classifier).

    Two cores run two lanes with one thread each faster than one process whose model thread, decode
    worker and cue threads share them (scripts/bench_score.py --layouts): no GIL between them, no
    hand-over of decoded pixels, and both cores run the model. Lane 0 runs in this process (a thread), so
    it starts at once; the others are spawned processes that start pulling chunks from the shared queue
    once they have imported and loaded everything (seconds to tens of seconds on a busy box). This process
    hands out chunks (with their manifest rows: lanes never read the manifest), puts the rows back
    together into shards and writes them exactly as one process would, so results do not depend on the
    number of lanes. At most two chunks per lane wait in the queue, which bounds memory whatever the
    day's size; a lane that dies fails the run (finished shards stay, a rerun resumes).
    """
    import multiprocessing
    import queue as queue_module
    import threading
    import traceback

    from brandsentry.scoring.pipeline import ShardBuffer, ShardScorer
    from brandsentry.scoring.plan import ScoreRunError
    from brandsentry.scoring.settings import portable_config

    context = multiprocessing.get_context("spawn")  # never fork a process that ran torch/ORT/FAISS threads
    tasks, results = context.Queue(), context.Queue()
    spec = {
        "cfg": portable_config(cfg, settings),
        "bundle_path": str(bundle.path.resolve()),
        "bundle_version": str(bundle.version),
        "parent": os.getpid(),
    }
    processes = [
        context.Process(
            target=lane_entry, args=(lane, spec, tasks, results), name=f"score-lane-{lane}", daemon=True
        )
        for lane in range(1, lanes)
    ]
    by_number = {shard.number: shard for shard in shards}
    buffers: dict[int, ShardBuffer] = {}
    handed = outstanding = 0
    stop_local = threading.Event()

    def hand_out() -> None:
        nonlocal handed, outstanding
        while handed < len(chunks) and outstanding < 2 * lanes:
            shard, start, stop = chunks[handed]
            tasks.put((handed, chunks[handed], listings.iloc[start:stop]))
            handed, outstanding = handed + 1, outstanding + 1

    def next_local_task() -> tuple | None:
        while not stop_local.is_set():
            with contextlib.suppress(queue_module.Empty):
                return tasks.get(timeout=0.2)
        return None

    def local_lane() -> None:
        try:
            local.run_lane(next_local_task, functools.partial(_put_chunk, results))
        except BaseException:  # reported to the coordinator, which fails the run
            results.put(("failed", "0 (in-process)", traceback.format_exc()[-4000:]))

    local_thread = threading.Thread(target=local_lane, name="score-lane-0", daemon=True)
    try:
        for process in processes:  # their imports overlap with this process loading its own lane
            process.start()
        local = ShardScorer.build(bundle, listings, out, settings, decode_workers=0)
        local_thread.start()
        hand_out()
        while outstanding:
            dead = [p for p in processes if p.exitcode is not None]
            if dead:
                raise ScoreRunError(
                    f"scoring lane {dead[0].name} ended with exit code {dead[0].exitcode} mid-run; "
                    "the finished shards are kept, a rerun resumes"
                )
            try:
                kind, key, payload = results.get(timeout=1.0)
            except queue_module.Empty:
                continue
            if kind == "failed":
                raise ScoreRunError(f"scoring lane {key} failed:\n{payload}")
            frame, vectors = payload
            shard, start, stop = chunks[key]
            if shard not in buffers:
                buffers[shard] = ShardBuffer(by_number[shard])
            local.collect(buffers, shard, start, frame, vectors)
            outstanding -= 1
            progress.advance(len(frame))
            hand_out()
        for _ in range(lanes):
            tasks.put(None)
        for process in processes:  # a lane still starting up is killed below: lanes never write files
            process.join(timeout=5)
    finally:
        stop_local.set()
        if local_thread.is_alive():
            local_thread.join()
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
        for channel in (tasks, results):
            channel.cancel_join_thread()
            channel.close()


def _put_chunk(results, key: int, frame: pd.DataFrame, vectors: np.ndarray) -> None:
    """What a lane sends the coordinator for each scored chunk."""
    results.put(("chunk", key, (frame, vectors)))


def lane_entry(lane: int, spec: dict, tasks, results) -> None:
    """A spawned scoring lane: die with the parent, then build the pipeline from the bundle folder and
    score chunks until told to stop."""
    _die_with_parent(int(spec["parent"]))
    try:  # the heavy imports, now that the lane dies with its parent
        import pandas as pd
        from omegaconf import OmegaConf

        from brandsentry.bundle import ScoringBundle
        from brandsentry.scoring.pipeline import ShardScorer
        from brandsentry.scoring.settings import ScoreSettings

        settings = ScoreSettings.from_config(OmegaConf.create(spec["cfg"]))
        bundle = ScoringBundle(Path(spec["bundle_path"]), version=spec["bundle_version"])
        scorer = ShardScorer.build(bundle, pd.DataFrame(), settings.out, settings, decode_workers=0)
        scorer.run_lane(tasks.get, functools.partial(_put_chunk, results))
    except BaseException:  # the parent reports it and fails the run
        import traceback

        results.put(("failed", lane, traceback.format_exc()[-4000:]))
        raise SystemExit(1) from None


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies; exit now if the parent is already gone."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):  # not Linux: the parent's cleanup must do
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
