"""Re-scoring a brand's recent listings after its references changed, and what that changed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from brandsentry.config import Workspace
from brandsentry.errors import ConfigError
from brandsentry.feedback import CUE_COLUMNS
from brandsentry.ledger import iso_utc
from brandsentry.review.evidence import file_slug
from brandsentry.review.runs import ScoringRunLog, log_scoring_run
from brandsentry.review.settings import ReviewError, ReviewSettings
from brandsentry.run_folder import read_results


@dataclass(frozen=True)
class RescanReport:
    """What a rescan scored and what changed."""

    brand: str
    since: str
    out_dir: Path
    listings: int
    model_version: str
    index_version: int
    status: str  # the scoring run's status: complete | error_budget_exceeded
    transitions: pd.DataFrame  # previous decision, new decision, listings
    changes: pd.DataFrame  # one row per listing whose decision changed
    changes_csv: Path
    logged: ScoringRunLog | None


def manifest_columns(results: pd.DataFrame) -> list[str]:
    """The listing-manifest columns a results frame carries (everything the scorer did not add)."""
    from brandsentry.bundle import output_columns

    added = set(output_columns([c for c in results.columns if c in CUE_COLUMNS])) | {"scored_at"}
    return ["listing_id", "claimed_brand", *[c for c in results.columns if c not in added]]


def repin_bundle(bundle, cfg: DictConfig, directory: Path, embedder=None):
    """`bundle` with the workspace's current index, references and brand assets (same models and thresholds).

    A bundle pins the index it was trained against; a rescan after a brand's references changed has to
    see the new ones. Returns the bundle itself when the workspace index is still the pinned version.
    """
    from brandsentry.bundle import ScoringBundle, write_bundle
    from brandsentry.features import ScoringContext
    from brandsentry.index import latest_manifest

    workspace = Workspace.from_config(cfg)
    current = latest_manifest(workspace.index_dir).version
    if current == bundle.metadata.index_version:
        return bundle
    merged = OmegaConf.merge(plain_config(cfg), bundle.config)
    embedder = embedder or bundle.embedder()
    context = ScoringContext.from_config(merged, embedder=embedder)
    metadata = dataclasses.replace(
        bundle.metadata,
        index_version=int(context.index.version),
        image_root=str(workspace.image_store),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_bundle(directory, metadata, merged, bundle.model, context, workspace.index_dir)
    return ScoringBundle(directory, version=f"{bundle.version}+index.v{context.index.version}")


def plain_config(cfg: DictConfig) -> DictConfig:
    """A resolved, non-struct copy of `cfg`, which other configs (a bundle's sections) can be merged into."""
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


def rescan_manifest(workspace: Workspace, brand: str, since: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ledger rows, manifest) of the brand's listings whose latest scoring is at or after `since`.

    The manifest rows are rebuilt from the results of the runs that last scored the listings (results
    carry every manifest column), so a rescan scores exactly what was scored before.
    """
    from brandsentry.ledger import latest_scorings

    previous = latest_scorings(workspace, brand=brand, since=since)
    if previous.empty:
        raise ReviewError(f"no listing of brand {brand!r} was scored since {since} in {workspace.root}")
    manifests = []
    for run_dir, group in previous.groupby("run_dir"):
        results = read_results(run_dir)
        wanted = results[results["listing_id"].astype(str).isin(set(group["listing_id"]))]
        manifests.append(wanted[manifest_columns(results)])
    manifest = pd.concat(manifests, ignore_index=True)
    for column in manifest.select_dtypes(include="object").columns:
        manifest[column] = manifest[column].fillna("").astype(str)
    return previous, manifest


def decision_changes(previous: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transitions: listings per (before, after) decision; changes: the listings whose decision changed)."""
    merged = previous[["listing_id", "decision", "score", "run_dir"]].merge(
        new[["listing_id", "decision", "score"]],
        on="listing_id",
        suffixes=("_before", "_after"),
        validate="1:1",
    )
    transitions = (
        merged.groupby(["decision_before", "decision_after"]).size().rename("listings").reset_index()
    )
    changed = merged["decision_before"] != merged["decision_after"]
    changes = merged[changed].rename(columns={"run_dir": "previous_run"})
    changes = changes.sort_values("score_after", ascending=False, na_position="last", kind="stable")
    return transitions, changes.reset_index(drop=True)


def rescan(cfg: DictConfig, brand: str, since: str, model: str | None = None) -> RescanReport:
    """Re-score the brand's listings last scored at or after `since`, against the current references.

    The listings come from the catalog ledger (`rescan_manifest`); they are scored with `model` (default
    `score.model`) re-pinned to the workspace's current index, into `review.rescan.out/<brand>-<time>/`,
    logged as a `rescan` run, and compared decision by decision with their previous scoring (`changes.csv`).
    """
    from brandsentry.registry import load_bundle
    from brandsentry.scoring import ErrorBudgetExceeded, score_run

    workspace = Workspace.from_config(cfg)
    settings = ReviewSettings.from_config(cfg)
    model_uri = model or OmegaConf.select(cfg, "score.model")
    if not model_uri:
        raise ConfigError("no model to rescan with: pass --model URI or set score.model")
    since_iso = utc_date(since)
    previous, manifest = rescan_manifest(workspace, brand, since_iso)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = settings.rescan.out / f"{file_slug(brand)}-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=False)
    manifest_path = out_dir / "manifest.parquet"
    manifest.to_parquet(manifest_path, index=False)

    bundle = load_bundle(str(model_uri), workspace, tracking_uri=settings.tracking_uri)
    bundle = repin_bundle(bundle, cfg, out_dir / "bundle")
    results_dir = out_dir / "results"
    run_cfg = OmegaConf.merge(
        plain_config(cfg),
        {"score": {"listings": str(manifest_path), "out": str(results_dir), "model": str(model_uri)}},
    )
    status = "complete"
    try:
        score_run(run_cfg, bundle=bundle)
    except ErrorBudgetExceeded:
        status = "error_budget_exceeded"  # every shard is written: still compare and report
    logged = log_scoring_run(cfg, results_dir, kind="rescan", bundle=bundle)
    transitions, changes = decision_changes(previous, read_results(results_dir))
    changes_csv = out_dir / "changes.csv"
    staging = out_dir / ".changes.csv.tmp"
    changes.to_csv(staging, index=False)
    staging.replace(changes_csv)
    return RescanReport(
        brand=brand,
        since=since_iso,
        out_dir=out_dir,
        listings=len(manifest),
        model_version=str(bundle.version),
        index_version=int(bundle.metadata.index_version),
        status=status,
        transitions=transitions,
        changes=changes,
        changes_csv=changes_csv,
        logged=logged,
    )


def utc_date(text: str) -> str:
    """A DATE or ISO timestamp from the command line as an ISO-8601 UTC timestamp (naive = UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReviewError(
            f"not an ISO date or timestamp: {text!r} (e.g. 2026-11-27 or 2026-11-27T08:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso_utc([moment])[0]
