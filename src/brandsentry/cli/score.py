"""`brandsentry score listings=MANIFEST [out=DIR] [model=URI|PATH] [engine=local|ray] ...`: the daily batch job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Shorthands of the command line: `listings=… out=… model=…` mean `score.listings=…` etc.
SHORTHANDS = ("listings", "out", "model", "engine", "device", "force", "batch_size", "shard_size")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score a day's listings manifest into sharded Parquet results (resumable)",
        description="Score every listing of listings=MANIFEST (CSV/Parquet: listing_id, image_path, "
        "claimed_brand, ...) with model=URI|PATH (default models:/brandsentry@champion) into out=DIR "
        "(default WORKSPACE/runs/score/<manifest stem>), a Parquet dataset folder (pandas.read_parquet(DIR) "
        "reads it): part-NNNNN.parquet, plus _embeddings/, _summary.json (counts, cue failures) and "
        "_SUCCESS, which readers skip. A rerun resumes from the finished shards; a finished run is a no-op "
        "unless force=true. Other knobs: engine=local|ray device=auto|cpu|cuda batch_size=N shard_size=N "
        "score.error_budget=F score.decode_workers=N (configs/score/default.yaml).",
        epilog="exit codes: 0 complete, 2 bad manifest/config/output folder, 3 error budget exceeded, "
        "4 scored but not logged to MLflow (score.log_run=false: never logs)",
    )
    parser.set_defaults(handler=run)


def expand(overrides: list[str]) -> list[str]:
    return [f"score.{token}" if token.split("=", 1)[0] in SHORTHANDS else token for token in overrides]


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from brandsentry.config import load_config
    from brandsentry.scoring import ErrorBudgetExceeded, ScoreSettings, score_run

    cfg = load_config(expand(overrides))
    settings = ScoreSettings.from_config(cfg)
    _restart_with_tcmalloc(settings.tcmalloc_mode)
    try:
        summary = score_run(cfg)
    except ErrorBudgetExceeded as exc:
        print(f"brandsentry score: FAILED: {exc}")
        _log_run(cfg, settings, exc.summary)  # reviewers must still see the day
        return 3
    state = "already complete, nothing to do" if summary.already_complete else "complete"
    print(
        f"{summary.out_dir}: {state}; {summary.listings} listings in {summary.shards} shard(s) "
        f"({summary.shards_reused} reused); "
        + ", ".join(f"{decision} {count}" for decision, count in summary.decisions.items())
        + (f"; errors: {', '.join(f'{r} {n}' for r, n in summary.errors.items())}" if summary.errors else "")
        + f"; {summary.escalation_rate:.0%} escalated to the logo/OCR cues"
        + f"; {summary.images_per_s:.1f} images/s, {summary.elapsed_s:.1f} s"
    )
    return _log_run(cfg, settings, summary)


def _log_run(cfg, settings, summary) -> int:
    """Log a run scored now to MLflow (experiment `scoring`) and the catalog's ledger, as `review log` does.

    The results are on disk whatever happens here; a logging failure exits 4 and names the command that
    logs the run later, so that a scheduler notices without scoring the day again.
    """
    if not settings.log_run or summary.already_complete:
        return 0
    from brandsentry.cli.review import report_logged
    from brandsentry.review import load_bundle_for, log_scoring_run

    try:
        bundle = load_bundle_for(cfg, summary.out_dir)
        report_logged(log_scoring_run(cfg, summary.out_dir, kind="daily", force=True, bundle=bundle))
    except Exception as exc:  # the edge: the day is scored; only its log is missing
        print(
            f"brandsentry score: results written but not logged to MLflow ({type(exc).__name__}: {exc}); "
            f"log them with: brandsentry review log {summary.out_dir} --force",
            file=sys.stderr,
        )
        return 4
    return 0


def _restart_with_tcmalloc(setting: str) -> None:
    """Run this command again with tcmalloc preloaded (it replaces this process; it cannot be loaded later).

    With glibc malloc, Lite0 on CPU spends much of its time in page faults: on the 2-core dev box
    end-to-end scoring went from 8.2 to 12.2 images/s with tcmalloc (scripts/bench_score.py --layouts).
    Only a real `brandsentry` process restarts (never one embedded in another program, e.g. a test run).
    """
    from brandsentry.errors import ConfigError

    preloaded = os.environ.get("LD_PRELOAD", "")
    if setting == "false" or "tcmalloc" in preloaded or Path(sys.argv[0]).name != "brandsentry":
        return
    import ctypes.util

    library = ctypes.util.find_library("tcmalloc_minimal")
    if library is None:
        if setting == "true":
            raise ConfigError(
                "score.tcmalloc=true but libtcmalloc_minimal is not installed (libtcmalloc-minimal4)"
            )
        return
    import logging

    logging.getLogger(__name__).info("restarting with %s preloaded (score.tcmalloc=false: never)", library)
    sys.stdout.flush()
    sys.stderr.flush()
    environment = {**os.environ, "LD_PRELOAD": f"{preloaded} {library}".strip()}
    os.execve(sys.executable, [sys.executable, *sys.argv], environment)
