"""The daily batch job: a listings manifest in, one Parquet row per listing out, shard by shard.

The manifest is cut into shards of `shard_size` consecutive rows, and shards into chunks of up to
`search_batch` rows (the unit of FAISS search, cues and classifier: exact search is far cheaper per query
in batches of a few hundred). Each shard is written atomically as `part-NNNNN.parquet` plus its embeddings
(`_embeddings/part-NNNNN.npy`; the folder's layout is `run_folder`'s) once all of its chunks are scored. A
shard's rows depend on its own rows only (model batches and chunks never straddle shards), so a run killed
at any point resumes from its finished shards and ends with the rows of an uninterrupted run, bit for bit
when batch size, threads, runtime and device are the same (else equal to float rounding, ~1e-7 in
similarities), whatever the number of lanes.

Modules, in the order the data flows: `settings` (the `score` config group, lane count) → `plan` (run
identity, shards, chunks) → `pipeline` (`ShardScorer`: one lane's decode → embed → score → write) →
`lanes` (the local engine on several processes) and `ray_engine` (Ray Data actors) → `run` (`score_run`:
the output folder, its lock, the summary); `progress` reports along the way.

Memory is bounded whatever the day's size (see `pipeline` and `lanes`); only the manifest's own rows
(text) are held for the whole run. Figures (one process, 500 listings, nearly idle 2-core box: 24 img/s vs
16 before the ONNX runtime and reference caches) are in the README, from scripts/bench_score.py.

The exports below load on first use: a spawned lane imports this package before `lanes.lane_entry` may
import anything heavy.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ErrorBudgetExceeded": "run",
    "ScoreRunError": "plan",
    "ScoreSettings": "settings",
    "ScoreSummary": "run",
    "ShardScorer": "pipeline",
    "lane_count": "settings",
    "plan_shards": "plan",
    "score_run": "run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
