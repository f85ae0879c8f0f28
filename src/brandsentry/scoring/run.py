"""A scoring run: start, resume or refuse the output folder, score what is pending, summarise what is on disk.

One process writes an output folder at a time (`exclusive_lock`). `_run.json` records the run's identity
(`plan.RunIdentity`); a rerun with the same identity resumes from the finished shards, one with another
identity is refused unless `score.force`. `_summary.json` is read back from the written parts, and
`_SUCCESS` is written only when the run stayed within its error budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from omegaconf import DictConfig

from brandsentry import run_folder
from brandsentry.bundle import ScoringBundle
from brandsentry.config import Workspace
from brandsentry.errors import BrandsentryError
from brandsentry.features import count_cue_failures, format_cue_failures, read_listings
from brandsentry.files import atomic_write_bytes, file_sha256
from brandsentry.registry import load_bundle
from brandsentry.run_folder import (
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
from brandsentry.scoring.lanes import score_in_lanes
from brandsentry.scoring.pipeline import ShardScorer
from brandsentry.scoring.plan import RunIdentity, ScoreRunError, Shard, plan_shards, scoring_chunks
from brandsentry.scoring.progress import Progress
from brandsentry.scoring.ray_engine import score_with_ray
from brandsentry.scoring.settings import ScoreSettings, lane_count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run produced: the hook for logging it (review) and what `_summary.json` holds."""

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
    escalated: int
    scored_now: int
    images_per_s: float  # listings scored by this invocation per second of scoring
    elapsed_s: float  # wall time of this invocation, model loading included
    already_complete: bool = False
    cue_failures: dict[str, dict[str, int]] = field(default_factory=dict)  # cue -> exception type -> listings
    escalation_rate: float = 0.0  # escalated / listings scored without error
    escalation_by_brand: dict[str, dict] = field(default_factory=dict)  # brand -> listings, escalated, rate

    def to_dict(self) -> dict:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ScoreSummary:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**{**known, "out_dir": Path(known["out_dir"])})


class ErrorBudgetExceeded(BrandsentryError):
    """More listings than `score.error_budget` allows ended as error rows; every shard is written anyway."""

    def __init__(self, summary: ScoreSummary):
        self.summary = summary
        super().__init__(
            f"{summary.decisions.get('error', 0)} of {summary.listings} listings are errors "
            f"({summary.error_fraction:.1%} > error budget {summary.error_budget:.1%}): "
            f"{_format_counts(summary.errors)}; results and {SUMMARY_FILE} are in {summary.out_dir}"
        )


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
    with exclusive_lock(out):
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
            chunks = scoring_chunks(pending, settings.search_batch)
            lanes = lane_count(settings, len(chunks), sum(shard.size for shard in pending))
            if settings.engine == "ray":
                score_with_ray(cfg, settings, bundle, identity, pending, progress)
            elif lanes > 1:
                score_in_lanes(cfg, settings, bundle, listings, out, pending, chunks, lanes, progress)
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
    elif legacy := legacy_entries(out):
        raise ScoreRunError(
            f"{out} holds {', '.join(legacy)} of the layout before results became a Parquet "
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
            summary = ScoreSummary.from_dict(run_folder.read_summary(out))
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
    escalated = rows = 0
    by_brand: dict[str, Counter[str]] = {}
    for shard in shards:
        part = part_path(out, shard.number)
        if not _shard_done(out, shard):
            raise ScoreRunError(f"shard {part} is missing or incomplete after scoring")
        frame = pd.read_parquet(
            part, columns=["claimed_brand", "decision", "error", "escalated", "cue_failures"]
        )
        rows += len(frame)
        decisions.update(frame["decision"].astype(str))
        errors.update(frame.loc[frame["decision"] == "error", "error"].fillna("unknown").astype(str))
        escalated += int(frame["escalated"].fillna(False).astype(bool).sum())
        scored = frame[frame["decision"] != "error"]
        for brand, group in scored.groupby(scored["claimed_brand"].astype(str)):
            counts = by_brand.setdefault(brand, Counter())
            counts["listings"] += len(group)
            counts["escalated"] += int(group["escalated"].fillna(False).astype(bool).sum())
        failures.extend(entries for entries in frame["cue_failures"] if entries is not None and len(entries))
    fraction = decisions.get("error", 0) / rows if rows else 0.0
    scored_ok = rows - decisions.get("error", 0)
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
        escalated=escalated,
        escalation_rate=escalated / scored_ok if scored_ok else 0.0,
        escalation_by_brand={
            brand: {**counts, "rate": counts["escalated"] / counts["listings"]}
            for brand, counts in sorted(by_brand.items())
        },
        scored_now=scored_now,
        images_per_s=scored_now / scoring_s if scored_now and scoring_s > 0 else 0.0,
        elapsed_s=elapsed_s,
        cue_failures=count_cue_failures(failures),
    )


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


@contextlib.contextmanager
def exclusive_lock(out: Path) -> Iterator[None]:
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
