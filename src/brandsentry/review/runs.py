"""A finished scoring run as an MLflow run of the `scoring` experiment.

The run is named `score-<run folder>` (`rescan-<run folder>`), timed from the scoring's own timestamps,
described in words, and has the scored listings as its dataset input and, for a registered model version,
that version's logged model as its model input (tags `model_version_uri`, `model_run_id`; the version's
tag `last_logged_scoring_run` points back). Counts by decision, errors by reason, score statistics, drift
over all brands and throughput are metrics; per-brand rates and drift are the `decisions_by_brand.json`
table; the score histogram and decisions by brand are plots; drift against the trailing daily runs also
sets tags `drift_warning`, `drift_offenders`; the evidence page is under `evidence/`. The run is also
recorded in the catalog's ledger (what rescans and verdict imports read).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from brandsentry.config import Workspace
from brandsentry.ledger import record_scoring_run
from brandsentry.review.attribution import CascadePredictor
from brandsentry.review.drift import DriftReport, compare_histograms, run_histograms
from brandsentry.review.evidence import (
    EVIDENCE_ARTIFACT,
    EvidencePage,
    ImageSources,
    build_evidence_page,
    reference_table,
)
from brandsentry.review.settings import DECISIONS, HISTOGRAMS_ARTIFACT, RUN_KINDS, ReviewError, ReviewSettings
from brandsentry.run_folder import read_results, read_summary

log = logging.getLogger(__name__)


_METRIC_UNSAFE = re.compile(r"[^\w.\- /]")


def metric_key(*parts: str) -> str:
    """An MLflow-safe metric name from parts (brand names may hold characters MLflow refuses)."""
    return ".".join(_METRIC_UNSAFE.sub("_", str(part).strip()) or "_" for part in parts)


def run_metrics(results: pd.DataFrame, summary: Mapping | None = None) -> dict[str, float]:
    """Counts by decision, per-brand flag rates, errors by reason, score statistics and throughput."""
    n = len(results)
    decisions = results["decision"].astype(str)
    metrics: dict[str, float] = {"listings": float(n)}
    for decision in DECISIONS:
        count = int((decisions == decision).sum())
        metrics[f"decisions.{decision}"] = float(count)
        metrics[f"decision_rate.{decision}"] = count / n if n else math.nan
    brands = results["claimed_brand"].astype(str).str.strip()
    for brand, rows in decisions.groupby(brands):
        metrics[metric_key("brand", brand, "listings")] = float(len(rows))
        metrics[metric_key("brand", brand, "flag_rate")] = float((rows == "flag").mean())
        metrics[metric_key("brand", brand, "review_rate")] = float((rows == "review").mean())
    errors = results.loc[decisions == "error", "error"] if "error" in results else pd.Series(dtype=str)
    for reason, count in errors.fillna("unknown").astype(str).value_counts().items():
        metrics[metric_key("errors", reason)] = float(count)
    scores = pd.to_numeric(results["score"], errors="coerce").dropna()
    if len(scores):
        metrics.update(
            {
                "score.mean": float(scores.mean()),
                "score.p50": float(scores.quantile(0.5)),
                "score.p95": float(scores.quantile(0.95)),
            }
        )
    if "escalated" in results:
        ok = decisions != "error"
        metrics["escalation_rate"] = float(results.loc[ok, "escalated"].astype(float).mean())
    summary = summary or {}
    if summary.get("scored_now", 1) and isinstance(summary.get("images_per_s"), int | float):
        metrics["throughput.images_per_s"] = float(summary["images_per_s"])  # a resumed run's own speed
        metrics["throughput.elapsed_s"] = float(summary.get("elapsed_s", math.nan))
    return metrics


def split_brand_metrics(metrics: Mapping[str, float]) -> tuple[dict[str, float], pd.DataFrame]:
    """(run metrics, one row per brand): per-brand rates and drift read better as tables than as a few
    hundred single-point charts in the MLflow UI; drift over all brands stays a metric."""
    headline: dict[str, float] = {}
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        brand = re.fullmatch(r"brand\.(?P<brand>.+)\.(?P<metric>\w+)", key)
        drift = re.fullmatch(r"drift\.(?P<brand>.+)\.(?P<metric>\w+)\.psi", key)
        if brand is not None:
            rows.setdefault(brand["brand"], {})[brand["metric"]] = value
        elif drift is not None and drift["brand"] != "all":
            rows.setdefault(drift["brand"], {})[f"drift_{drift['metric']}_psi"] = value
        else:
            headline[key] = value
    table = pd.DataFrame([{"brand": brand, **row} for brand, row in sorted(rows.items())])
    return headline, table


# ---- MLflow --------------------------------------------------------------------------------------------


def mlflow_client(workspace: Workspace, settings: ReviewSettings):
    """(client, experiment id) of the scoring experiment, created with artifacts under the workspace."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = settings.tracking_uri or workspace.mlflow_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is not None:
        return client, experiment.experiment_id
    location = (workspace.mlflow_artifacts / settings.experiment).as_uri()
    try:
        return client, client.create_experiment(settings.experiment, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        return client, client.get_experiment_by_name(settings.experiment).experiment_id


def logged_runs(client, experiment_id: str, run_dir: Path):
    """Finished MLflow runs already logged for this run directory."""
    escaped = str(run_dir).replace("'", "\\'")
    return client.search_runs(
        [experiment_id], filter_string=f"tags.run_dir = '{escaped}' and attributes.status = 'FINISHED'"
    )


def trailing_histograms(client, experiment_id: str, scored_at: str, run_dir: Path, window: int):
    """(run ids, histograms) of the `window` latest finished daily runs scored before `scored_at`."""
    runs = client.search_runs(
        [experiment_id],
        filter_string="tags.run_kind = 'daily' and attributes.status = 'FINISHED'",
        max_results=max(50, 4 * window),
        order_by=["attributes.start_time DESC"],
    )
    earlier = [
        r
        for r in runs
        if r.data.tags.get("scored_at", "") < scored_at and r.data.tags.get("run_dir") != str(run_dir)
    ]
    earlier.sort(key=lambda r: r.data.tags.get("scored_at", ""), reverse=True)
    ids, histograms = [], []
    with tempfile.TemporaryDirectory() as scratch, _quiet_downloads():
        for run in earlier[:window]:
            try:
                path = client.download_artifacts(run.info.run_id, HISTOGRAMS_ARTIFACT, scratch)
                histograms.append(json.loads(Path(path).read_text()))
                ids.append(run.info.run_id)
            except Exception as exc:  # batch edge: one unreadable past run shrinks the baseline, no more
                log.warning(
                    "drift baseline: run %s has no readable %s: %s", run.info.run_id, HISTOGRAMS_ARTIFACT, exc
                )
    return ids, histograms


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow download progress bars in a command's output (one per baseline run otherwise)."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


@dataclass(frozen=True)
class ScoringRunLog:
    """What `log_scoring_run` logged."""

    run_id: str
    experiment_id: str
    run_dir: Path
    kind: str
    model_version: str
    metrics: dict[str, float]
    drift: DriftReport | None
    evidence: EvidencePage | None
    tracking_uri: str


def _decisions_by_brand_figure(results: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = (
        results.assign(brand=results["claimed_brand"].astype(str).str.strip())
        .groupby("brand")["decision"]
        .agg(flag=lambda d: (d == "flag").mean(), review=lambda d: (d == "review").mean())
    )
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(rates) + 1.4))
    ax.barh(rates.index, rates["flag"], color="tab:red", label="flag")
    ax.barh(rates.index, rates["review"], left=rates["flag"], color="tab:orange", label="review")
    ax.set(xlabel="share of the brand's listings", title="Decisions by claimed brand", xlim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def log_scoring_run(
    cfg: DictConfig,
    out_dir: str | Path,
    *,
    kind: str = "daily",
    force: bool = False,
    bundle=None,
) -> ScoringRunLog:
    """Log a finished scoring run to the MLflow `scoring` experiment, with drift and the evidence page.

    Also records the run in the catalog's ledger (`ledger.record_scoring_run`). A run directory already
    logged is refused unless `force`, which replaces the earlier MLflow run (so a re-log never counts twice
    in the drift baseline). Only `daily` runs are compared with, and form, the drift baseline; `rescan`
    runs are logged without. `bundle` (the `ScoringBundle` that scored the run) adds cue attributions.
    """
    if kind not in RUN_KINDS:
        raise ReviewError(f"unknown run kind {kind!r} (expected one of {', '.join(RUN_KINDS)})")
    settings = ReviewSettings.from_config(cfg)
    workspace = Workspace.from_config(cfg).ensure()
    out_dir = Path(out_dir).resolve()
    results = read_results(out_dir)
    summary = read_summary(out_dir)
    client, experiment_id = mlflow_client(workspace, settings)
    earlier = logged_runs(client, experiment_id, out_dir)
    if earlier and not force:
        raise ReviewError(
            f"scoring run {out_dir} is already logged as MLflow run {earlier[0].info.run_id} "
            "(use --force to replace it)"
        )
    recorded = record_scoring_run(workspace, out_dir)
    scored_at = recorded.first_scored_at
    versions = {str(v).strip() for v in results.get("model_version", pd.Series(dtype=str)).dropna()}
    model_version = ",".join(sorted(versions - {""})) or "unknown"

    metrics = run_metrics(results, summary)
    histograms = run_histograms(results, settings.drift)
    drift = None
    if kind == "daily":
        ids, history = trailing_histograms(client, experiment_id, scored_at, out_dir, settings.drift.window)
        drift = compare_histograms(histograms, history, settings.drift, ids)
        for check in drift.checks:
            scope = "all" if check.scope == "*" else check.scope
            metrics[metric_key("drift", scope, check.metric, "psi")] = check.psi
    page = _evidence_page(cfg, workspace, results, out_dir, settings, bundle, model_version)

    tags = {
        "run_kind": kind,
        "run_dir": str(out_dir),
        "scored_at": scored_at,
        "model_version": model_version,
        "score_status": str(summary.get("status", "complete")),
        "evidence_items": str(len(page.items)),
    }
    if drift is not None:
        tags.update(
            drift_warning=str(bool(drift.warnings)).lower(),
            drift_baseline_runs=str(len(drift.baseline_runs)),
            drift_offenders=drift.describe()[:5000] or "none",
        )
    params = {
        "run_dir": str(out_dir),
        "evidence_top": str(settings.evidence.top),
        "drift_window": str(settings.drift.window),
        **{key: str(summary[key])[:6000] for key in ("manifest", "model_uri", "listings") if key in summary},
    }
    registered = registered_version(client, model_version)
    model = f"`{model_version}`"
    if registered is not None:
        uri = f"models:/{registered.name}/{registered.version}"
        tags.update(model_version_uri=uri, model_run_id=registered.run_id)
        model = f"`{uri}` (`{model_version}`, training run `{registered.run_id}`)"
    tags["mlflow.note.content"] = scoring_description(out_dir, summary, metrics, model, drift, page)
    start, end = scoring_window(recorded.first_scored_at, recorded.last_scored_at, summary)
    name = f"{'score' if kind == 'daily' else kind}-{out_dir.name}"
    run_id = client.create_run(experiment_id, start_time=start, tags=tags, run_name=name).info.run_id
    try:
        _log_contents(client, run_id, metrics, params, results, histograms, drift, summary, page)
        _log_inputs(client, run_id, results, summary, out_dir, registered)
        client.set_terminated(run_id, "FINISHED", end_time=end)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    if registered is not None:
        client.set_model_version_tag(registered.name, registered.version, "last_logged_scoring_run", run_id)
    for stale in earlier:
        client.delete_run(stale.info.run_id)
    return ScoringRunLog(
        run_id=run_id,
        experiment_id=experiment_id,
        run_dir=out_dir,
        kind=kind,
        model_version=model_version,
        metrics=metrics,
        drift=drift,
        evidence=page,
        tracking_uri=settings.tracking_uri or workspace.mlflow_uri,
    )


def registered_version(client, model_version: str):
    """The registered `ModelVersion` a run was scored with ("NAME/N", "NAME/N+index.vK"), None if not one.

    A run scored with a bundle folder, or with several versions, names no single registered version.
    """
    from mlflow.exceptions import MlflowException

    match = re.fullmatch(r"(?P<name>[^/@+,]+)/(?P<version>\d+)(\+[^,]*)?", model_version)
    if match is None:
        return None
    try:
        return client.get_model_version(match["name"], match["version"])
    except MlflowException:
        log.info(
            "model version %s is not registered in this MLflow store: the run is not linked", model_version
        )
        return None


def logged_model_id(version) -> str | None:
    """The logged model behind a registered version: a SQL registry keeps it only as the `models:/m-...`
    source that `log_model(registered_model_name=...)` registers."""
    if version.model_id:
        return version.model_id
    match = re.fullmatch(r"models:/(m-[0-9a-f]+)", str(version.source))
    return match[1] if match else None


def scoring_window(first_scored_at: str, last_scored_at: str, summary: Mapping) -> tuple[int, int]:
    """(start, end) of the scoring itself in epoch ms, for the run's timestamps: logging comes after it
    (`review log` maybe days later). The start reaches back over the invocation's `elapsed_s` (model
    loading, the first batch); a resumed run keeps the start of its earlier shards."""
    end = pd.Timestamp(last_scored_at)
    start = pd.Timestamp(first_scored_at)
    elapsed = summary.get("elapsed_s")
    if isinstance(elapsed, int | float) and math.isfinite(elapsed):
        start = min(start, end - pd.Timedelta(seconds=float(elapsed)))
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def scoring_description(out_dir, summary, metrics, model: str, drift, page) -> str:
    """The run's description (mlflow.note.content): what was scored, with what, and what came out."""
    counts = ", ".join(f"{d} {int(metrics.get(f'decisions.{d}', 0))}" for d in DECISIONS)
    source = f"`{summary['manifest']}`" if "manifest" in summary else f"the results in `{out_dir}`"
    lines = [
        f"Scored {int(metrics['listings'])} listings of {source} with model {model}: {counts}.",
        "",
        f"- results: `{out_dir}`",
        f"- evidence page: `{EVIDENCE_ARTIFACT}/index.html` ({len(page.items)} listing(s))",
    ]
    if drift is not None:
        state = f"WARNING: {drift.describe()}" if drift.warnings else "no check over the bound"
        lines.append(f"- drift against {len(drift.baseline_runs)} earlier daily run(s): {state}")
    return "\n".join(lines) + "\n"


def _log_inputs(client, run_id, results, summary, out_dir, registered) -> None:
    """The scored listings as the run's dataset input (context `scoring`), and the logged model it used."""
    import mlflow.data
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import DatasetInput, InputTag, LoggedModelInput

    columns = [
        c
        for c in ("listing_id", "image_path", "claimed_brand", "claimed_product", "seller_id")
        if c in results
    ]
    source = str(summary.get("manifest") or out_dir)
    dataset = mlflow.data.from_pandas(
        results[columns].astype(str), source=LocalArtifactDatasetSource(source), name=Path(source).stem
    )
    context = InputTag("mlflow.data.context", "scoring")
    model_id = logged_model_id(registered) if registered is not None else None
    models = [LoggedModelInput(model_id)] if model_id else None
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), [context])], models=models)


def _evidence_page(cfg, workspace, results, out_dir, settings, bundle, model_version) -> EvidencePage:
    """The run's evidence page, reading reference pixels from the workspace's image store."""
    from brandsentry.catalog import Catalog
    from brandsentry.images import DecodeLimits, decode_image

    with Catalog.open(workspace) as catalog:
        references = reference_table(catalog)
        wordmarks = catalog.wordmarks()
    limits = DecodeLimits.from_config(cfg.images)

    def load_reference(ref_id: int) -> np.ndarray:
        return decode_image(workspace.image_store / references.at[int(ref_id), "stored_path"], limits)

    return build_evidence_page(
        results,
        out_dir,
        settings,
        references=references,
        wordmarks=wordmarks,
        sources=ImageSources(
            load_listing=lambda path: decode_image(path, limits),
            load_reference=load_reference,
            logo_template_side=int(cfg.cues.logo.template_max_side),
        ),
        predictor=CascadePredictor.from_bundle(bundle) if bundle is not None else None,
        title=f"Evidence: {out_dir.name} (model {model_version})",
    )


def _log_contents(client, run_id, metrics, params, results, histograms, drift, summary, page) -> None:
    import matplotlib.pyplot as plt
    from mlflow.entities import Metric, Param

    from brandsentry.plots import score_histogram

    now = int(time.time() * 1000)
    headline, by_brand = split_brand_metrics(metrics)
    metric_list = [Metric(k, float(v), now, 0) for k, v in headline.items() if np.isfinite(v)]
    for start in range(0, len(metric_list), 900):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metric_list[start : start + 900])
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    if len(by_brand):
        client.log_table(run_id, by_brand, "decisions_by_brand.json")
    scores = pd.to_numeric(results["score"], errors="coerce").dropna().to_numpy()
    for figure, name in (
        (score_histogram(scores), "plots/score_histogram.png"),
        (_decisions_by_brand_figure(results), "plots/decisions_by_brand.png"),
    ):
        client.log_figure(run_id, figure, name)
        plt.close(figure)
    client.log_dict(run_id, histograms, HISTOGRAMS_ARTIFACT)
    if drift is not None:
        client.log_dict(run_id, drift.to_dict(), "drift/report.json")
    if summary:
        client.log_dict(run_id, summary, "summary.json")
    client.log_artifacts(run_id, str(page.directory), EVIDENCE_ARTIFACT)


MODEL_METRICS = ("roc_auc", "pr_auc", "recall_at_p95", "flag_precision", "flag_recall")


def model_versions(tracking_uri: str, model_name: str = "brandsentry") -> pd.DataFrame:
    """Registered versions with their training run's test metrics and reviewed rows: what retraining changed.

    `reviewed rows`: reviewed listings the version trained on; `held back`: reviewed listings left out
    because their product is in validation or test, or the labelled manifest already holds them.

    Training keeps the test split free of reviewer verdicts (they are appended to the training split only),
    so the test figures of successive versions trained on the same manifest compare like for like.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    rows = []
    for found in client.search_model_versions(f"name = '{model_name}'"):
        version = client.get_model_version(model_name, found.version)
        metrics = client.get_run(version.run_id).data.metrics
        rows.append(
            {
                "version": int(version.version),
                "aliases": ",".join(sorted(version.aliases)) or "-",
                "reviewed rows": int(metrics.get("rows.feedback", 0)),
                "held back": int(
                    sum(v for k, v in metrics.items() if k.startswith("rows.excluded.feedback."))
                ),
                **{f"test {key}": metrics.get(f"test.{key}", math.nan) for key in MODEL_METRICS},
            }
        )
    columns = ["version", "aliases", "reviewed rows", "held back", *(f"test {key}" for key in MODEL_METRICS)]
    return pd.DataFrame(rows, columns=columns).sort_values("version").reset_index(drop=True)


def model_uri_of(out_dir: Path) -> str | None:
    """The exact model a run was scored with: `models:/NAME/N` for a registered version, else its bundle path.

    An alias (`@champion`) may have moved since the run, so the recorded version wins over the run's URI.
    """
    summary = read_summary(out_dir)
    version, uri = str(summary.get("model_version", "")), str(summary.get("model_uri", ""))
    if re.fullmatch(r"[^/@]+/\d+", version):
        return f"models:/{version}"
    if uri and not uri.startswith(("models:/", "runs:/")) and Path(uri).is_dir():
        return uri
    return None


def load_bundle_for(cfg: DictConfig, out_dir: str | Path):
    """The scoring bundle that scored a run (for cue attributions), or None when it cannot be identified."""
    from brandsentry.bundle import BundleError
    from brandsentry.registry import load_bundle

    settings = ReviewSettings.from_config(cfg)
    workspace = Workspace.from_config(cfg)
    uri = model_uri_of(Path(out_dir))
    if uri is None:
        log.warning("scoring run %s does not name a registered model version or bundle folder", out_dir)
        return None
    try:
        return load_bundle(uri, workspace, tracking_uri=settings.tracking_uri)
    except BundleError as exc:
        log.warning("model %s of scoring run %s cannot be loaded (%s): no attributions", uri, out_dir, exc)
        return None
