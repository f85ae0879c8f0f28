"""The daily batch job: a listings manifest in, one Parquet row per listing out, shard by shard.

The manifest is cut into shards of `shard_size` consecutive rows, and shards into chunks of up to
`search_batch` rows (the unit of FAISS search, cues and classifier: exact search is far cheaper per query
in batches of a few hundred). Each shard is written atomically as `part-NNNNN.parquet` plus its embeddings
(`_embeddings/part-NNNNN.npy`; the folder's layout is `run_folder`'s) once all of its chunks are scored. A shard's rows depend on its own rows only
(model batches and chunks never straddle shards), so a run killed at any point resumes from its finished
shards and ends with the rows of an uninterrupted run, bit for bit when batch size, threads, runtime and
device are the same (else equal to float rounding, ~1e-7 in similarities), whatever the number of lanes.

Layouts (`score.lanes`, auto = one lane per usable CPU, at most 4 and one per 5,000 listings to score;
1 on CUDA). One lane: DataLoader workers decode and preprocess model batches (exactly as training decodes),
the main thread embeds them (GPU with AMP and pinned memory, or CPU), and a scorer thread hands each chunk
to `ScoringBundle.score_batch` (FAISS search, cheap cues on a thread pool, cascade, classifier) and writes
finished shards. Several lanes (`_score_in_lanes`): lane 0 is a thread of this process, the others are
spawned processes; each lane is a whole pipeline (decode, model with `torch_threads` threads, cues,
classifier, one chunk after the other) pulling chunks from one queue, and this process puts the rows back
into shards and writes them. Lanes have no GIL between them and no hand-over of decoded pixels, and every
core runs the model, but a spawned lane costs ~7 CPU-s to start (imports, model, index) and its own
memory: on the dev box 2 lanes scored 500 listings at 17 img/s vs 24 in one process, hence auto = lanes
for big days only. Ray actors score whole shards with the same `ShardScorer`.

The embedder runs in ONNX Runtime on CPU by default (`embedder.runtime=auto`; same vectors as PyTorch to
1e-4, see `embed_runtime`), and the cheap cues' per-reference statistics are computed once per lane.
Memory is bounded whatever the day's size: decoded images of two chunks with one lane, of one chunk per
lane with several (and this process holds at most two chunks per lane of results besides the shards being
assembled); only the manifest's own rows (text) are held for the whole run. Every lane holds its own
model, index and reference caches, so lanes multiply that part of the memory. Figures (one process,
500 listings, nearly idle 2-core box: 24 img/s vs 16 before the ONNX runtime and reference caches) are
in the README, from scripts/bench_score.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import math
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig, OmegaConf

from brandsentry import run_folder
from brandsentry.bundle import ScoringBundle, output_columns
from brandsentry.config import Workspace, require
from brandsentry.embed import Embedder
from brandsentry.embed_runtime import RUNTIMES
from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.features import ScoringContext, count_cue_failures, format_cue_failures, read_listings
from brandsentry.files import atomic_write, atomic_write_bytes, file_sha256
from brandsentry.registry import load_bundle
from brandsentry.run_folder import (
    EMBEDDINGS_DIR,
    LOCK_FILE,
    RUN_FILE,
    SUCCESS_FILE,
    SUMMARY_FILE,
    embeddings_path,
    legacy_entries,
    part_files,
    part_path,
    temp_files,
)

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
PROGRESS_MODES = ("auto", "bar", "log", "off")
# Columns whose cells are lists; every other object column is written as text.
_LIST_TYPES = {
    "top_ref_ids": pa.list_(pa.int64()),
    "top_similarities": pa.list_(pa.float32()),
    "cue_failures": pa.list_(pa.string()),
}


class ScoreRunError(BrandsentryError):
    """The output folder holds another run (other manifest, model or shard size), or shards went missing."""


class ErrorBudgetExceeded(BrandsentryError):
    """More listings than `score.error_budget` allows ended as error rows; every shard is written anyway."""

    def __init__(self, summary: ScoreSummary):
        self.summary = summary
        super().__init__(
            f"{summary.decisions.get('error', 0)} of {summary.listings} listings are errors "
            f"({summary.error_fraction:.1%} > error budget {summary.error_budget:.1%}): "
            f"{_format_counts(summary.errors)}; results and {SUMMARY_FILE} are in {summary.out_dir}"
        )


# ---- settings and plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None
    num_cpus: int | None = None
    actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float | None = None  # None = 1 when the cluster has GPUs, else 0
    decode_workers: int = 0


@dataclass(frozen=True)
class ScoreSettings:
    """The `score` config group, validated."""

    listings: Path
    out: Path
    model: str
    engine: str = "local"
    shard_size: int = 1000
    batch_size: int | None = None
    search_batch: int = 256
    device: str = "auto"
    decode_workers: int | None = None
    torch_threads: int | None = None
    cue_workers: int | None = None
    lanes: int | None = None  # None = auto: see `lane_count`
    runtime: str | None = None  # None = the bundle's embedder.runtime
    error_budget: float = 0.05
    force: bool = False
    progress: str = "auto"
    log_every_s: float = 30.0
    ray: RaySettings = field(default_factory=RaySettings)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ScoreSettings:
        score = require(cfg, "score")
        listings = Path(str(require(cfg, "score.listings"))).expanduser()
        out = score.get("out")
        out = (
            Path(str(out)).expanduser()
            if out
            else Workspace.from_config(cfg).runs_dir / "score" / listings.stem
        )
        ray_cfg = score.get("ray") or {}
        gpus = ray_cfg.get("gpus_per_actor", "auto")
        settings = cls(
            listings=listings,
            out=out,
            model=str(require(cfg, "score.model")),
            engine=str(score.get("engine", "local")),
            shard_size=int(score.get("shard_size", 1000)),
            batch_size=_optional_int(score.get("batch_size")),
            search_batch=int(score.get("search_batch", 256)),
            device=str(score.get("device", "auto")),
            decode_workers=_optional_int(score.get("decode_workers")),
            torch_threads=_optional_int(score.get("torch_threads")),
            cue_workers=_optional_int(score.get("cue_workers")),
            lanes=None if str(score.get("lanes", "auto")) == "auto" else int(score.get("lanes")),
            runtime=None if score.get("runtime") is None else str(score.get("runtime")),
            error_budget=float(score.get("error_budget", 0.05)),
            force=bool(score.get("force", False)),
            progress=str(score.get("progress", "auto")),
            log_every_s=float(score.get("log_every_s", 30)),
            ray=RaySettings(
                address=ray_cfg.get("address"),
                num_cpus=_optional_int(ray_cfg.get("num_cpus")),
                actors=int(ray_cfg.get("actors", 2)),
                cpus_per_actor=float(ray_cfg.get("cpus_per_actor", 1)),
                gpus_per_actor=None if str(gpus) == "auto" else float(gpus),
                decode_workers=int(ray_cfg.get("decode_workers", 0)),
            ),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        problems = []
        if self.engine not in ENGINES:
            problems.append(f"score.engine={self.engine!r} (expected one of {', '.join(ENGINES)})")
        if self.shard_size < 1:
            problems.append(f"score.shard_size={self.shard_size} (must be >= 1)")
        if self.batch_size is not None and self.batch_size < 1:
            problems.append(f"score.batch_size={self.batch_size} (must be >= 1)")
        if self.search_batch < 1:
            problems.append(f"score.search_batch={self.search_batch} (must be >= 1)")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"score.device={self.device!r} (expected auto, cpu or cuda)")
        if not 0.0 <= self.error_budget <= 1.0:
            problems.append(f"score.error_budget={self.error_budget} (a fraction in [0, 1])")
        if self.progress not in PROGRESS_MODES:
            problems.append(f"score.progress={self.progress!r} (expected one of {', '.join(PROGRESS_MODES)})")
        for name in ("decode_workers", "torch_threads", "cue_workers"):
            value = getattr(self, name)
            if value is not None and value < (1 if name != "decode_workers" else 0):
                problems.append(f"score.{name}={value} (too small)")
        if self.ray.actors < 1:
            problems.append(f"score.ray.actors={self.ray.actors} (must be >= 1)")
        if self.lanes is not None and self.lanes < 1:
            problems.append(f"score.lanes={self.lanes} (must be >= 1 or auto)")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            problems.append(f"score.runtime={self.runtime!r} (expected null or one of {', '.join(RUNTIMES)})")
        if problems:
            raise ConfigError("invalid score config: " + "; ".join(problems))


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


MAX_AUTO_LANES = 4  # each lane holds its own model and index copy: more is memory, not speed, on most hosts
ROWS_PER_AUTO_LANE = 5000  # a spawned lane costs ~7 CPU-s to start (imports, model, index) on the dev box:
# 2 lanes scored 500 listings at 17 img/s vs 24 for one process (scripts/bench_score.py), so only big days


def lane_count(settings: ScoreSettings, chunks: int, rows: int) -> int:
    """Scoring lanes of the local engine: `score.lanes`, or auto = 1 on CUDA, else one per usable CPU (at
    most MAX_AUTO_LANES, one per ROWS_PER_AUTO_LANE listings to score); never more than chunks to score."""
    lanes = settings.lanes
    if lanes is None:
        cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        cpus = len(os.sched_getaffinity(0))
        lanes = 1 if cuda else min(cpus, MAX_AUTO_LANES, rows // ROWS_PER_AUTO_LANE)
    return max(1, min(lanes, chunks))


@dataclass(frozen=True)
class Shard:
    """Manifest rows [start, stop) of shard `number`."""

    number: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def plan_shards(rows: int, shard_size: int) -> list[Shard]:
    return [
        Shard(i, start, min(start + shard_size, rows)) for i, start in enumerate(range(0, rows, shard_size))
    ]


@dataclass(frozen=True)
class RunIdentity:
    """What makes two runs the same run: resuming is allowed only when all of it matches."""

    manifest_sha256: str
    rows: int
    model_version: str
    shard_size: int

    def differences(self, other: dict) -> list[str]:
        return [
            f"{key} {other.get(key)!r} -> {value!r}"
            for key, value in asdict(self).items()
            if other.get(key) != value
        ]


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run produced: the hook for logging it (review) and what `summary.json` holds."""

    out_dir: Path
    status: str  # complete | error_budget_exceeded
    manifest: str
    model_uri: str
    model_version: str
    engine: str
    listings: int
    shards: int
    shards_reused: int
    decisions: dict[str, int]
    errors: dict[str, int]
    error_fraction: float
    error_budget: float
    expensive_cues: int
    scored_now: int
    images_per_s: float  # listings scored by this invocation per second of scoring
    elapsed_s: float  # wall time of this invocation, model loading included
    already_complete: bool = False
    cue_failures: dict[str, dict[str, int]] = field(default_factory=dict)  # cue -> exception type -> listings

    def to_dict(self) -> dict:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ScoreSummary:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**{**known, "out_dir": Path(known["out_dir"])})


# ---- the run -------------------------------------------------------------------------------------------


def score_run(cfg: DictConfig, bundle: ScoringBundle | None = None) -> ScoreSummary:
    """Score the manifest `cfg.score.listings` into `cfg.score.out` (resuming, or a no-op when finished).

    `bundle`: one already loaded (then `score.model` only names it in the summary), e.g. to log the run
    with it afterwards. Raises `ListingManifestError` before any work for a bad manifest, `ScoreRunError`
    when `out` holds another run, and `ErrorBudgetExceeded` after writing everything when too many
    listings ended as errors.
    """
    started = time.perf_counter()
    settings = ScoreSettings.from_config(cfg)
    listings = read_listings(settings.listings)
    digest = file_sha256(settings.listings)
    if bundle is None:
        bundle = load_bundle(settings.model, Workspace.from_config(cfg))
    identity = RunIdentity(digest, len(listings), str(bundle.version), settings.shard_size)
    shards = plan_shards(len(listings), settings.shard_size)
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(out):
        finished = _prepare_out(out, identity, settings)
        if finished is not None:
            log.info("%s already holds the finished run (force=true scores it again)", out)
            return finished
        pending = [shard for shard in shards if not _shard_done(out, shard)]
        log.info(
            "scoring %d listings of %s with model %s into %s: %d shard(s), %d to do, engine %s",
            len(listings), settings.listings, identity.model_version, out, len(shards), len(pending),
            settings.engine,
        )  # fmt: skip
        scoring_started = time.perf_counter()
        with Progress(len(listings), len(listings) - sum(s.size for s in pending), settings) as progress:
            chunks = _chunks(pending, settings.search_batch)
            lanes = lane_count(settings, len(chunks), sum(shard.size for shard in pending))
            if settings.engine == "ray":
                _score_with_ray(cfg, settings, bundle, identity, pending, progress)
            elif lanes > 1:
                _score_in_lanes(cfg, settings, bundle, listings, out, pending, chunks, lanes, progress)
            else:
                scorer = ShardScorer.build(bundle, listings, out, settings)
                scorer.score(pending, progress.advance)
        scoring_s = time.perf_counter() - scoring_started
        summary = _summarise(
            out, shards, settings, identity, len(shards) - len(pending), sum(s.size for s in pending),
            scoring_s, time.perf_counter() - started,
        )  # fmt: skip
        atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=2).encode())
        if summary.status != "complete":
            raise ErrorBudgetExceeded(summary)
        atomic_write_bytes(out / SUCCESS_FILE, b"")
    log.info(
        "scored %d listings in %.1f s (%.1f images/s): %s; errors: %s",
        summary.listings, summary.elapsed_s, summary.images_per_s, _format_counts(summary.decisions),
        _format_counts(summary.errors) or "none",
    )  # fmt: skip
    log.info("cue failures: %s", format_cue_failures(summary.cue_failures))
    return summary


def _prepare_out(out: Path, identity: RunIdentity, settings: ScoreSettings) -> ScoreSummary | None:
    """Start, resume or refuse; the finished run's summary when there is nothing to do."""
    run_file = out / RUN_FILE
    if settings.force:
        run_folder.clear(out)
    elif legacy_entries(out):
        raise ScoreRunError(
            f"{out} holds {', '.join(legacy_entries(out))} of the layout before results became a Parquet "
            "dataset folder; pass force=true to score it again, or choose another out="
        )
    elif run_file.is_file():
        recorded = json.loads(run_file.read_text())
        differences = identity.differences(recorded)
        if differences:
            raise ScoreRunError(
                f"{out} holds a run of another input or model ({'; '.join(differences)}); "
                "pass force=true to discard it and start over, or choose another out="
            )
        if (out / SUCCESS_FILE).is_file() and (out / SUMMARY_FILE).is_file():
            summary = ScoreSummary.from_dict(json.loads((out / SUMMARY_FILE).read_text()))
            return replace(summary, already_complete=True, scored_now=0)
    elif part_files(out):
        raise ScoreRunError(f"{out} holds result shards but no {RUN_FILE}; pass force=true to start over")
    for stale in temp_files(out):
        stale.unlink()  # half-written files of a killed run
    (out / SUCCESS_FILE).unlink(missing_ok=True)
    record = {**asdict(identity), "manifest": str(settings.listings.resolve()), "model_uri": settings.model}
    atomic_write_bytes(run_file, json.dumps(record, indent=2).encode())
    return None


def _shard_done(out: Path, shard: Shard) -> bool:
    part = part_path(out, shard.number)
    if not part.is_file() or not embeddings_path(out, shard.number).is_file():
        return False
    return pq.ParquetFile(part).metadata.num_rows == shard.size


def _summarise(
    out: Path,
    shards: list[Shard],
    settings: ScoreSettings,
    identity: RunIdentity,
    reused: int,
    scored_now: int,
    scoring_s: float,
    elapsed_s: float,
) -> ScoreSummary:
    """Counts read back from the written shards: the summary describes exactly what is on disk."""
    decisions: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    failures: list = []
    expensive = rows = 0
    for shard in shards:
        part = part_path(out, shard.number)
        if not _shard_done(out, shard):
            raise ScoreRunError(f"shard {part} is missing or incomplete after scoring")
        frame = pd.read_parquet(part, columns=["decision", "error", "expensive_cues", "cue_failures"])
        rows += len(frame)
        decisions.update(frame["decision"].astype(str))
        errors.update(frame.loc[frame["decision"] == "error", "error"].fillna("unknown").astype(str))
        expensive += int(frame["expensive_cues"].fillna(False).astype(bool).sum())
        failures.extend(entries for entries in frame["cue_failures"] if entries is not None and len(entries))
    fraction = decisions.get("error", 0) / rows if rows else 0.0
    return ScoreSummary(
        out_dir=out.resolve(),
        status="complete" if fraction <= settings.error_budget else "error_budget_exceeded",
        manifest=str(settings.listings.resolve()),
        model_uri=settings.model,
        model_version=identity.model_version,
        engine=settings.engine,
        listings=rows,
        shards=len(shards),
        shards_reused=reused,
        decisions={d: decisions.get(d, 0) for d in ("flag", "review", "pass", "error")},
        errors=dict(sorted(errors.items())),
        error_fraction=fraction,
        error_budget=settings.error_budget,
        expensive_cues=expensive,
        scored_now=scored_now,
        images_per_s=scored_now / scoring_s if scored_now and scoring_s > 0 else 0.0,
        elapsed_s=elapsed_s,
        cue_failures=count_cue_failures(failures),
    )


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


# ---- one shard after another: the pipeline both engines run ----------------------------------------


@dataclass(frozen=True)
class DecodedListings:
    """Manifest rows [start, stop) as a decode worker hands them over (one model batch).

    The decoded RGB images travel packed in one flat uint8 tensor (`pixels`, one shared-memory segment per
    batch instead of one per image) and are unpacked as zero-copy views; `shapes[i]` is None where
    `errors[i]` says why row i cannot be scored. `tensor` stacks the preprocessed good images.
    """

    chunk: tuple[int, int, int]  # (shard, start, stop) of the scoring chunk this batch belongs to
    start: int
    stop: int
    pixels: torch.Tensor
    shapes: list[tuple[int, int, int] | None]
    errors: list[tuple[str, str] | None]
    tensor: torch.Tensor

    def pin_memory(self) -> DecodedListings:
        """Called by the DataLoader when pin_memory is on (CUDA): asynchronous host-to-device copy."""
        return replace(self, tensor=self.tensor.pin_memory())

    def images(self) -> list[np.ndarray | None]:
        flat, images, offset = self.pixels.numpy(), [], 0
        for shape in self.shapes:
            if shape is None:
                images.append(None)
                continue
            size = shape[0] * shape[1] * shape[2]
            images.append(flat[offset : offset + size].reshape(shape))
            offset += size
        return images


class ListingBatches(torch.utils.data.Dataset):
    """Item i = model batch i, decoded exactly as training decodes (`ScoringContext.decode`) and preprocessed.

    A row whose image decodes but cannot be preprocessed becomes an error too: one odd file must not stop
    the day (a rerun would stop at the same row again).
    """

    def __init__(self, context: ScoringContext, listings: pd.DataFrame, spans: Sequence[tuple]):
        self.context = context
        self.listings = listings
        self.spans = list(spans)

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, index: int) -> DecodedListings:
        chunk, start, stop = self.spans[index]
        images, errors = self.context.decode(self.listings.iloc[start:stop])
        tensors = []
        for i, image in enumerate(images):
            if image is None:
                continue
            try:
                tensors.append(self.context.embedder.preprocess(image))
            except Exception as exc:  # row edge: an error row with the reason
                images[i], errors[i] = None, ("preprocess_failed", f"{type(exc).__name__}: {exc}")
        good = [image for image in images if image is not None]
        pixels = torch.empty(sum(image.size for image in good), dtype=torch.uint8)
        if torch.utils.data.get_worker_info() is not None:
            pixels.share_memory_()  # filled in place: no second copy when it is sent to the main process
        flat, offset = pixels.numpy(), 0
        for image in good:
            flat[offset : offset + image.size] = image.reshape(-1)
            offset += image.size
        size = self.context.embedder.preprocessing.input_size
        return DecodedListings(
            chunk=chunk,
            start=start,
            stop=stop,
            pixels=pixels,
            shapes=[None if image is None else image.shape for image in images],
            errors=errors,
            tensor=torch.stack(tensors) if tensors else torch.empty(0, 3, size, size),
        )


class ShardScorer:
    """Scores whole shards and writes them: decode workers → embed (this thread) → score + write (a thread)."""

    def __init__(
        self,
        bundle: ScoringBundle,
        context: ScoringContext,
        listings: pd.DataFrame,
        out: Path,
        decode_workers: int,
        search_batch: int,
    ):
        self.bundle = bundle
        self.context = context
        self.listings = listings
        self.out = Path(out)
        self.decode_workers = decode_workers
        self.search_batch = search_batch
        self.embedder = context.embedder
        results = output_columns(bundle.feature_names) + ["scored_at"]
        self.carried = [c for c in listings.columns if c not in results]
        shadowed = [c for c in listings.columns if c in results and c not in ("listing_id", "claimed_brand")]
        if shadowed:
            log.warning(
                "manifest column(s) %s are result columns: the results keep the scorer's values", shadowed
            )

    @classmethod
    def build(
        cls,
        bundle: ScoringBundle,
        listings: pd.DataFrame,
        out: Path,
        settings: ScoreSettings,
        decode_workers: int | None = None,
    ) -> ShardScorer:
        """The bundle's context with this run's device, batch size and thread layout."""
        import cv2

        cv2.setNumThreads(1)  # cues run on a thread pool already; OpenCV's own threads would oversubscribe
        embedder_cfg = OmegaConf.to_container(bundle.config.embedder, resolve=True)
        embedder_cfg["device"] = settings.device
        for key, value in (
            ("batch_size", settings.batch_size),
            ("num_workers", settings.decode_workers),
            ("threads", settings.torch_threads),
            ("runtime", settings.runtime),
        ):
            if value is not None:
                embedder_cfg[key] = value
        context = bundle.context(embedder=Embedder.from_config(embedder_cfg), workers=settings.cue_workers)
        workers = context.embedder.num_workers if decode_workers is None else decode_workers
        return cls(bundle, context, listings, out, workers, settings.search_batch)

    def score(self, shards: Sequence[Shard], on_rows: Callable[[int], None] = lambda n: None) -> None:
        """Score and write `shards`; `on_rows(n)` after each scoring chunk (progress).

        Model batches (`embedder.batch_size` rows) are embedded here while the previous chunk (up to
        `search_batch` rows, never across a shard) is searched, cued, classified and written on the scorer
        thread; FAISS answers a few hundred queries at once far faster per query than 32.
        """
        if not shards:
            return
        spans = [
            (chunk, start, stop)
            for chunk in _chunks(shards, self.search_batch)
            for start, stop in _cut(chunk[1], chunk[2], self.embedder.batch_size)
        ]
        loader = torch.utils.data.DataLoader(
            ListingBatches(self.context, self.listings, spans),
            batch_size=None,
            num_workers=self.decode_workers,
            pin_memory=self.embedder.device.type == "cuda",
            prefetch_factor=2 if self.decode_workers else None,
        )
        buffers = {shard.number: _ShardBuffer(shard) for shard in shards}
        in_flight: deque[Future] = deque()
        batches: list[tuple[DecodedListings, np.ndarray | str]] = []
        with ThreadPoolExecutor(1, "scorer", initializer=_one_openmp_thread) as scorer:
            for decoded in loader:
                batches.append((decoded, self._embed(decoded)))
                if decoded.stop == decoded.chunk[2]:
                    in_flight.append(scorer.submit(self._score_chunk, batches, buffers, on_rows))
                    batches = []
                    while len(in_flight) > 1:  # one chunk scoring while the next one embeds
                        in_flight.popleft().result()
            while in_flight:
                in_flight.popleft().result()

    def _embed(self, decoded: DecodedListings) -> np.ndarray | str:
        """(rows, dim) unit vectors, NaN where a row failed to decode; the failure if the model failed."""
        vectors = np.full((decoded.stop - decoded.start, self.embedder.dim), np.nan, dtype=np.float32)
        good = [i for i, shape in enumerate(decoded.shapes) if shape is not None]
        if good:
            try:
                vectors[good] = self.embedder.embed_batch(decoded.tensor)
            except Exception as exc:  # batch edge: the batch's rows become error rows, the run goes on
                log.exception("embedding rows %d-%d failed", decoded.start, decoded.stop)
                return f"{type(exc).__name__}: {exc}"[:1000]
        return vectors

    def _score_chunk(
        self,
        batches: list[tuple[DecodedListings, np.ndarray | str]],
        buffers: dict[int, _ShardBuffer],
        on_rows: Callable[[int], None],
    ) -> None:
        shard, start, stop = batches[0][0].chunk
        rows = self.listings.iloc[start:stop].reset_index(drop=True)
        self._collect(buffers, shard, start, *self._chunk_frame(rows, batches))
        on_rows(len(rows))

    def _collect(
        self,
        buffers: dict[int, _ShardBuffer],
        shard: int,
        start: int,
        frame: pd.DataFrame,
        vectors: np.ndarray,
    ) -> None:
        """Add a scored chunk to its shard's buffer; write the shard once all of its rows are in."""
        buffer = buffers[shard]
        buffer.add(start, frame, vectors)
        if buffer.complete:
            self._write(buffer)
            del buffers[shard]

    def score_lane(self, next_task: Callable[[], tuple | None], emit: Callable[..., None]) -> None:
        """The loop of one scoring lane (a thread or process of the local engine).

        `next_task()` gives (task id, (shard, start, stop), the chunk's manifest rows) or None to stop;
        `emit(task id, frame, vectors)` receives each chunk's results. A lane works through its chunk
        serially (decode, embed, then search, cues and classifier), so it holds one chunk of decoded images
        at a time: the other lanes keep the other cores busy. The chunk is cut into the same model batches
        as `score` cuts it, so the results are the same.
        """
        _one_openmp_thread()
        for task_id, chunk, rows in iter(next_task, None):
            rows = rows.reset_index(drop=True)
            spans = [(chunk, a, b) for a, b in _cut(0, len(rows), self.embedder.batch_size)]
            dataset = ListingBatches(self.context, rows, spans)
            batches = []
            for i in range(len(dataset)):
                decoded = dataset[i]
                batches.append((decoded, self._embed(decoded)))
            emit(task_id, *self._chunk_frame(rows, batches))
            del batches

    def _chunk_frame(
        self, rows: pd.DataFrame, batches: list[tuple[DecodedListings, np.ndarray | str]]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """The result rows and embeddings of one chunk (its decoded, embedded model batches)."""
        start, stop = batches[0][0].chunk[1:]
        images, errors, vectors = [], [], []
        for decoded, embedded in batches:
            if isinstance(embedded, str):  # the model failed on this batch
                images += [None] * len(decoded.shapes)
                errors += [error or ("embed_failed", embedded) for error in decoded.errors]
                embedded = np.full((len(decoded.shapes), self.embedder.dim), np.nan, dtype=np.float32)
            else:
                images += decoded.images()
                errors += decoded.errors
            vectors.append(embedded)
        vectors = np.concatenate(vectors)
        try:
            frame = self.bundle.score_batch(rows, images, errors, vectors)
        except Exception as exc:  # chunk edge: error rows with the reason, never lost rows
            log.exception("scoring rows %d-%d failed", start, stop)
            frame = self._failed_rows(rows, "scoring_failed", exc)
        return frame, vectors

    def _failed_rows(self, rows: pd.DataFrame, reason: str, exc: Exception) -> pd.DataFrame:
        n = len(rows)
        frame = pd.DataFrame(
            {
                "listing_id": rows["listing_id"].astype(str).to_numpy(),
                "claimed_brand": rows["claimed_brand"].to_numpy(),
                "score": np.nan,
                "decision": "error",
                "threshold": np.nan,
                "top_ref_ids": [[] for _ in range(n)],
                "top_similarities": [[] for _ in range(n)],
                "expensive_cues": False,
                "cue_failures": [[] for _ in range(n)],
                "error": reason,
                "error_detail": f"{type(exc).__name__}: {exc}"[:1000],
                "model_version": str(self.bundle.version),
                "evidence": "{}",
            }
        )
        cues = pd.DataFrame(np.nan, index=frame.index, columns=self.bundle.feature_names)
        return pd.concat([frame, cues], axis=1)[output_columns(self.bundle.feature_names)]

    def _write(self, buffer: _ShardBuffer) -> None:
        """Embeddings first, then the part: a part on disk means its shard is complete."""
        shard = buffer.shard
        frame, vectors = buffer.assemble()
        expected = self.listings["listing_id"].iloc[shard.start : shard.stop].astype(str).to_numpy()
        if not np.array_equal(frame["listing_id"].astype(str).to_numpy(), expected):
            raise RuntimeError(f"shard {shard.number}: result rows do not line up with manifest rows")
        vectors[(frame["decision"] == "error").to_numpy()] = np.nan
        manifest_rows = self.listings.iloc[shard.start : shard.stop].reset_index(drop=True)
        for column in self.carried:
            frame[column] = manifest_rows[column].to_numpy()
        frame["scored_at"] = pd.Timestamp(datetime.now(UTC))
        table = _to_arrow(frame)
        (self.out / EMBEDDINGS_DIR).mkdir(exist_ok=True)
        atomic_write(embeddings_path(self.out, shard.number), lambda handle: np.save(handle, vectors))
        atomic_write(part_path(self.out, shard.number), lambda handle: pq.write_table(table, handle))


def _cut(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def _chunks(shards: Sequence[Shard], search_batch: int) -> list[tuple[int, int, int]]:
    """(shard, start, stop) of every scoring chunk: `search_batch` rows, never across a shard."""
    return [(shard.number, a, b) for shard in shards for a, b in _cut(shard.start, shard.stop, search_batch)]


# ---- lanes: the local engine on several processes --------------------------------------------------------


def _score_in_lanes(
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

    from brandsentry.score_lane import lane_entry

    context = multiprocessing.get_context("spawn")  # never fork a process that ran torch/ORT/FAISS threads
    tasks, results = context.Queue(), context.Queue()
    spec = {
        "cfg": _absolute_paths(cfg, settings),
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
    buffers: dict[int, _ShardBuffer] = {}
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
            local.score_lane(next_local_task, functools.partial(_put_chunk, results))
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
                buffers[shard] = _ShardBuffer(by_number[shard])
            local._collect(buffers, shard, start, frame, vectors)
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


def _lane_main(lane: int, spec: dict, tasks, results) -> None:
    """A scoring lane's process (started through `score_lane.lane_entry`): build the pipeline from the
    bundle folder, score chunks until told to stop."""
    try:
        settings = ScoreSettings.from_config(OmegaConf.create(spec["cfg"]))
        bundle = ScoringBundle(Path(spec["bundle_path"]), version=spec["bundle_version"])
        scorer = ShardScorer.build(bundle, pd.DataFrame(), settings.out, settings, decode_workers=0)
        scorer.score_lane(tasks.get, functools.partial(_put_chunk, results))
    except BaseException:  # the parent reports it and fails the run
        import traceback

        results.put(("failed", lane, traceback.format_exc()[-4000:]))
        raise SystemExit(1) from None


def _one_openmp_thread() -> None:
    """OpenMP in this thread (the classifier's tree ensembles) runs single-threaded.

    scikit-learn's HistGradientBoosting predicts a batch of ~32 rows tree by tree, each tree an OpenMP
    region; on two busy cores the regions' thread wake-ups made `predict_proba` ~100x slower (4.5 s vs
    36 ms for 96 listings on the dev box). libgomp keeps the thread count per thread, hence here.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")


@dataclass
class _ShardBuffer:
    """The scored batches of one shard until all of its rows are in."""

    shard: Shard
    frames: dict[int, pd.DataFrame] = field(default_factory=dict)
    vectors: dict[int, np.ndarray] = field(default_factory=dict)
    rows: int = 0

    def add(self, start: int, frame: pd.DataFrame, vectors: np.ndarray) -> None:
        self.frames[start], self.vectors[start] = frame, vectors
        self.rows += len(frame)

    @property
    def complete(self) -> bool:
        return self.rows == self.shard.size

    def assemble(self) -> tuple[pd.DataFrame, np.ndarray]:
        order = sorted(self.frames)
        frame = pd.concat([self.frames[s] for s in order], ignore_index=True)
        return frame, np.concatenate([self.vectors[s] for s in order]).astype(np.float32, copy=False)


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A table whose schema depends on column dtypes only, never on values, so every shard agrees."""
    arrays, fields_ = [], []
    for name in frame.columns:
        column = frame[name]
        if name in _LIST_TYPES:
            kind = _LIST_TYPES[name]
            values = [None if v is None else [x for x in np.asarray(v).tolist()] for v in column]
        elif pd.api.types.is_bool_dtype(column):
            kind, values = pa.bool_(), column.to_numpy()
        elif pd.api.types.is_float_dtype(column):
            kind, values = pa.float64(), column.to_numpy(dtype=np.float64)
        elif pd.api.types.is_integer_dtype(column):
            kind, values = pa.int64(), column.to_numpy(dtype=np.int64)
        elif pd.api.types.is_datetime64_any_dtype(column):
            kind, values = pa.timestamp("us", tz="UTC"), column
        else:
            kind = pa.string()
            values = [None if _is_missing(v) else str(v) for v in column]
        arrays.append(pa.array(values, type=kind))
        fields_.append(pa.field(str(name), kind))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields_))


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# ---- Ray Data: the same shards on an actor pool --------------------------------------------------------


class RayShardActor:
    """A Ray Data actor: holds the bundle, index and manifest; each call scores and writes whole shards.

    It loads the bundle folder the driver resolved (never the URI again: an alias moved mid-run must
    not mix two models in one day) and checks that it sees the driver's manifest.
    """

    def __init__(self, cfg: dict, bundle_path: str, bundle_version: str, identity: dict):
        cfg = OmegaConf.create(cfg)
        settings = ScoreSettings.from_config(cfg)
        listings = read_listings(settings.listings)
        bundle = ScoringBundle(Path(bundle_path), version=bundle_version)
        found = RunIdentity(
            file_sha256(settings.listings), len(listings), str(bundle.version), settings.shard_size
        )
        if asdict(found) != identity:
            raise ScoreRunError(
                f"a Ray actor sees another run than the driver: {found.differences(identity)}"
            )
        self.scorer = ShardScorer.build(
            bundle, listings, settings.out, settings, decode_workers=settings.ray.decode_workers
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards = [
            Shard(int(n), int(a), int(b))
            for n, a, b in zip(batch["number"], batch["start"], batch["stop"], strict=True)
        ]
        self.scorer.score(shards)
        return {"number": batch["number"], "rows": np.array([s.size for s in shards], dtype=np.int64)}


def _score_with_ray(
    cfg: DictConfig,
    settings: ScoreSettings,
    bundle: ScoringBundle,
    identity: RunIdentity,
    pending: list[Shard],
    progress: Progress,
) -> None:
    """`map_batches` over the pending shards with a fixed pool of `RayShardActor`s (a GPU each when there are)."""
    if not pending:
        return
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=settings.ray.address,
            num_cpus=settings.ray.num_cpus if settings.ray.address is None else None,
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=False,
        )
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        gpus = settings.ray.gpus_per_actor
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        items = [{"number": s.number, "start": s.start, "stop": s.stop} for s in pending]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            RayShardActor,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=settings.ray.actors),
            fn_constructor_kwargs={
                "cfg": _absolute_paths(cfg, settings),
                "bundle_path": str(bundle.path.resolve()),
                "bundle_version": str(bundle.version),
                "identity": asdict(identity),
            },
            num_cpus=settings.ray.cpus_per_actor,
            num_gpus=gpus,
        )
        for done in dataset.iter_rows():
            progress.advance(int(done["rows"]))
    finally:
        if started_here:
            ray.shutdown()


def _absolute_paths(cfg: DictConfig, settings: ScoreSettings) -> dict:
    """The config as plain data, with the manifest and output folder absolute (actors run elsewhere)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    data["score"]["listings"] = str(settings.listings.resolve())
    data["score"]["out"] = str(settings.out.resolve())
    return data


# ---- progress ------------------------------------------------------------------------------------------


class Progress:
    """A bar with images/s and ETA on a terminal; a plain log line every `log_every_s` seconds otherwise."""

    def __init__(self, total: int, done: int, settings: ScoreSettings):
        mode = settings.progress
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.total, self.done = mode, total, done
        self.every = settings.log_every_s
        self.started = self.last_log = time.perf_counter()
        self.scored = 0
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="img", desc="score", smoothing=0.1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and self.scored:
            self._log()

    def advance(self, rows: int) -> None:
        self.done += rows
        self.scored += rows
        if self.bar is not None:
            self.bar.update(rows)
        elif self.mode == "log" and time.perf_counter() - self.last_log >= self.every:
            self._log()

    def _log(self) -> None:
        now = time.perf_counter()
        self.last_log = now
        rate = self.scored / max(now - self.started, 1e-9)
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = time.strftime("%H:%M:%S", time.gmtime(remaining)) if math.isfinite(remaining) else "?"
        log.info(
            "scored %d/%d listings (%.1f%%), %.1f images/s, ETA %s",
            self.done, self.total, 100.0 * self.done / max(self.total, 1), rate, eta,
        )  # fmt: skip


# ---- files ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive_lock(out: Path) -> Iterator[None]:
    """One scoring process per output folder; a second one fails at once instead of interleaving shards."""
    with open(out / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ScoreRunError(f"another scoring run is writing {out}") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
