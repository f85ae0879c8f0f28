"""`brandsentry score listings=MANIFEST [out=DIR] [model=URI|PATH] [key=value ...]`: the daily batch job."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from brandsentry.cli._parser import OVERRIDES, add_command

# Shorthands of the command line: `listings=… out=… model=…` mean `score.listings=…` etc.
SHORTHANDS = ("listings", "out", "model", "engine", "device", "force", "batch_size", "shard_size")


# What features.read_listings requires too (tests/test_cli.py holds them equal): checked here before the
# heavy imports.
REQUIRED_COLUMNS = ("listing_id", "image_path", "claimed_brand")

DESCRIPTION = """\
Score every listing of listings=MANIFEST with model=URI|PATH into out=DIR, a Parquet dataset folder
(pandas.read_parquet(DIR) reads it): part-NNNNN.parquet, plus _embeddings/, _summary.json (counts, cue
failures) and _SUCCESS, which readers skip. A rerun resumes from the finished shards; a finished run is a
no-op unless force=true.

The manifest is CSV or Parquet with columns listing_id, image_path (relative to the manifest's folder),
claimed_brand, and optionally claimed_product, title, price, seller_id (any others are kept).

config values (score.* in configs/score/default.yaml; these have shorthands):
  listings=MANIFEST   required
  out=DIR             default WORKSPACE/runs/score/<manifest stem>
  model=URI|PATH      models:/NAME@ALIAS, models:/NAME/VERSION or a bundle folder
                      (default models:/brandsentry@champion)
  engine=local|ray  device=auto|cpu|cuda  batch_size=N  shard_size=N  force=true
and any other, e.g. score.error_budget=F score.decode_workers=N workspace=DIR."""


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "score",
        help="score a day's listings manifest into sharded Parquet results (resumable)",
        description=DESCRIPTION,
        examples=(
            "score listings=data/demo/listings_day2.csv workspace=data/demo-workspace",
            "score listings=day2.parquet out=runs/day2 model=models:/brandsentry/3 engine=ray",
            "score listings=day2.csv force=true score.log_run=false",
        ),
        epilog="exit status:\n"
        "  0  complete\n"
        "  2  nothing scored: bad config, manifest or output folder, or a model that cannot be loaded\n"
        "  3  error budget exceeded (every shard is written)\n"
        "  4  scored but not logged to MLflow (score.log_run=false: never logs)",
        config_values=lambda: f"listings=MANIFEST {OVERRIDES}",
    )
    parser.set_defaults(handler=run)


def expand(overrides: list[str]) -> list[str]:
    return [f"score.{token}" if token.split("=", 1)[0] in SHORTHANDS else token for token in overrides]


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from brandsentry.config import load_config

    cfg = load_config(expand(overrides))
    preflight(cfg)
    _restart_with_tcmalloc(str(cfg.score.tcmalloc).lower())
    from brandsentry.scoring import ErrorBudgetExceeded, ScoreSettings, score_run

    settings = ScoreSettings.from_config(cfg)
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


def preflight(cfg) -> None:
    """The checks that need neither the model nor torch, made before the tcmalloc restart and the heavy
    imports so that a bad invocation fails in about a second: the manifest exists, is readable and has the
    required columns, and the output folder can be a folder (everything else: `score_run`)."""
    from brandsentry.errors import ConfigError

    if cfg.score.listings is None:
        raise ConfigError("required config value score.listings is not set: pass listings=MANIFEST")
    check_manifest(Path(str(cfg.score.listings)).expanduser(), REQUIRED_COLUMNS)
    if cfg.score.out is not None:
        out = Path(str(cfg.score.out)).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError(f"score.out={out} is a file, not a folder")
        existing = next(folder for folder in [out, *out.absolute().parents] if folder.exists())
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"score.out={out}: cannot write in {existing}")


def check_manifest(manifest: Path, required: tuple[str, ...]) -> None:
    """A `ListingManifestError` unless `manifest` is a readable CSV or Parquet file with `required` columns
    (its header alone is read: the full reading comes after the heavy imports)."""
    from brandsentry.errors import ListingManifestError

    if not manifest.is_file():
        raise ListingManifestError(f"listings manifest {manifest} does not exist")
    try:
        columns = _columns(manifest)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ListingManifestError(f"listings manifest {manifest} cannot be read: {exc}") from None
    missing = [column for column in required if column not in columns]
    if missing:
        raise ListingManifestError(f"listings manifest {manifest} lacks column(s) {missing}")


def _columns(manifest: Path) -> list[str]:
    """The manifest's column names, from its header alone."""
    if manifest.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(manifest).names)
    import csv

    with manifest.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), None)
    if header is None:
        raise ValueError("the file is empty")
    return [column.strip() for column in header]


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
    Only a real `brandsentry` process restarts (never one embedded in another program, e.g. a test run), and
    only for auto or true (false never; another value is named by ScoreSettings after no restart).
    """
    from brandsentry.errors import ConfigError

    preloaded = os.environ.get("LD_PRELOAD", "")
    if setting not in ("auto", "true") or "tcmalloc" in preloaded or Path(sys.argv[0]).name != "brandsentry":
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
