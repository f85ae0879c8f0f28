"""Training: labelled listings → cue features → cascaded classifier → thresholds → MLflow run + bundle.

`brandsentry train listings=MANIFEST` is a Hydra app over configs/train.yaml (`-m` sweeps run one job per
combination). Each job (steps 1-2 are `brandsentry.train.data`):

1. reads the manifest, sets aside error-path rows (`data.exclude_kinds`) and splits by the `split` column,
   or by product when there is none (a product never straddles two splits);
2. featurises every listing against the workspace's current index with the expensive cues computed for all
   (both models need them), cached under workspace/runs/features by dataset digest + everything that
   shapes a feature, so a sweep over classifiers computes cues once;
3. fits the cheap and the full model on train (calibrated on held-out train products), picks per-brand
   thresholds on validation for the target precision using the cascaded score the scorer will produce,
   and reports on test;
4. logs to one MLflow run of experiment `logger.experiment`, opened before step 1 (so its duration is the
   job's) and named `train-<world>-<manifest>-<kind>-<date>`: the manifest as a dataset input, config,
   digests, headline metrics, per-brand and per-kind tables, thresholds (with the brands whose threshold
   reaches no target precision, also warned in the log), plots and a description; writes the scoring
   bundle and registers it as a pyfunc model version with that description; with `logger.auto_promote` the
   version becomes `champion` when there is none, or when it beats the champion's stored
   `logger.promote_metric` on a validation set with the same digest (no re-scoring: the metric and the
   digest are stored per run). The decision is a run and model-version tag and `promotion.json`.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from brandsentry.bundle import BundleMetadata, write_bundle
from brandsentry.classify import (
    CascadeClassifier,
    ClassifierSettings,
    classification_metrics,
    decision_metrics,
)
from brandsentry.config import Workspace, config_dir, hydra_errors_named, require
from brandsentry.errors import BrandsentryError, ConfigError
from brandsentry.features import ScoringContext
from brandsentry.model_choice import choose_model
from brandsentry.registry import (
    BUNDLE_ARTIFACT,
    CHAMPION,
    auto_promotion,
    experiment_id,
    flat_params,
    log_test_plots,
    metric_key,
    mlflow_store,
    promote,
    pyfunc_signature,
    thresholds_table,
    tracking_uri,
    write_pyfunc_code,
)
from brandsentry.train.data import SPLITS, LabelledSet, labelled_set, require_both_classes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingResult:
    """What one training job produced."""

    run_id: str
    experiment_id: str
    run_dir: Path
    bundle_dir: Path
    model_version: str | None  # "NAME/N" when registered
    promoted: bool
    promotion_note: str
    metrics: dict[str, float]
    below_target: dict[str, float]  # brand ("*": the global fallback) -> best validation precision reachable


# ---- fitting and evaluation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """The fitted cascade and everything measured on validation and test."""

    model: CascadeClassifier
    metrics: dict[str, float]
    test_scores: np.ndarray
    test_decisions: np.ndarray
    importance: pd.Series  # permutation importance of the full model's features on validation (ROC-AUC drop)
    model_choice: str  # which kind ships and why (model_choice.choose_model)
    kind: str  # the kind that ships
    below_target: dict[str, float]  # see `thresholds_below_target`


def fit_and_evaluate(data: LabelledSet, context: ScoringContext, settings: ClassifierSettings) -> Evaluation:
    """Fit both models on train, thresholds on validation (cascaded score), metrics on validation and test."""
    rows, features = data.rows, data.features
    masks = {split: (rows["split"] == split).to_numpy() for split in SPLITS}
    for split, mask in masks.items():
        require_both_classes(split, rows["y"].to_numpy()[mask])
    train, validation = masks["train"], masks["validation"]
    y, brands, kinds = (rows[column].to_numpy() for column in ("y", "brand", "kind"))
    cascade = context.cue_cfg.cascade
    parts = {split: features[masks[split]].reset_index(drop=True) for split in ("validation", "test")}
    choice = choose_model(
        settings,
        context.cheap_feature_names,
        context.feature_names,
        (features[train].reset_index(drop=True), y[train], rows["group"].to_numpy()[train]),
        (parts["validation"], y[validation]),
        cascade.max_escalation,
        cascade.max_auc_loss,
    )
    model = choice.model
    scored = {split: model.cascaded_scores(part, cascade.enabled) for split, part in parts.items()}
    model.choose_thresholds(scored["validation"][0], y[validation], brands[validation])
    below = thresholds_below_target(model, scored["validation"][0], y[validation], brands[validation])
    metrics: dict[str, float] = {}
    decisions = {}
    for split, prefix in (("validation", "val"), ("test", "test")):
        mask, (scores, escalated) = masks[split], scored[split]
        decisions[split], _ = model.decide(scores, brands[mask])
        found = {
            **classification_metrics(y[mask], scores, brands[mask], kinds[mask]),
            **decision_metrics(decisions[split], y[mask], kinds[mask]),
            "escalation_rate": float(escalated.mean()),
            **{
                f"brand.{brand}.escalation_rate": float(escalated[brands[mask] == brand].mean())
                for brand in sorted(set(brands[mask]))
            },  # fmt: skip
            "cheap.roc_auc": classification_metrics(y[mask], model.cheap.predict_proba(parts[split]))[
                "roc_auc"
            ],
            "full.roc_auc": classification_metrics(y[mask], model.full.predict_proba(parts[split]))[
                "roc_auc"
            ],
        }
        metrics.update({f"{prefix}.{key}": value for key, value in found.items()})
    metrics.update(cue_costs(data.timings_ms, metrics["test.escalation_rate"]))
    metrics.update({f"rows.{split}": float(mask.sum()) for split, mask in masks.items()})
    metrics.update({f"rows.excluded.{reason}": float(n) for reason, n in data.excluded.items()})
    metrics["rows.feedback"] = float(data.feedback_rows)
    metrics.update(
        {f"cue_failures.{group}.{kind}": float(n) for group, kinds in data.cue_failures.items()
         for kind, n in kinds.items()}
    )  # fmt: skip
    metrics.update({f"val.candidate.{kind}.roc_auc": auc for kind, auc in choice.validation_roc_auc.items()})
    metrics["features.used"] = float(len(model.feature_names))
    metrics["features.dropped"] = float(len(model.dropped_features))
    metrics["thresholds.below_target"] = float(len(below))
    importance = permutation_importance(model, parts["validation"], y[validation])
    return Evaluation(
        model, metrics, scored["test"][0], decisions["test"], importance, choice.reason, choice.kind, below
    )


def thresholds_below_target(
    model: CascadeClassifier, scores: np.ndarray, y: np.ndarray, brands: np.ndarray
) -> dict[str, float]:
    """Brands whose flag threshold reaches no target precision on validation, with the best one reachable.

    Such a threshold sits above 1.0, so the brand is never flagged (its listings can still go to review);
    "*" stands for the global threshold that brands without their own use. Training says so plainly
    instead of leaving a threshold of 1.000 to be decoded.
    """
    from sklearn.metrics import precision_recall_curve

    rule = model.thresholds()
    masks = {"*": np.ones(len(y), dtype=bool)} | {brand: brands == brand for brand in rule["brands"]}
    chosen = {"*": rule["global"], **rule["brands"]}
    below = {}
    for brand, mask in masks.items():
        if chosen[brand] > 1.0 and y[mask].any():
            precision, _, _ = precision_recall_curve(y[mask], scores[mask])
            below[brand] = float(precision[:-1].max())
    for brand, best in below.items():
        log.warning(
            "%s: no flag threshold reaches precision %.2f on validation (best reachable %.2f): "
            "never flagged, at most reviewed",
            "global threshold" if brand == "*" else f"brand {brand}",
            rule["target_precision"],
            best,
        )
    return below


def cue_costs(timings: pd.DataFrame, escalation_rate: float) -> dict[str, float]:
    """Mean ms per listing of each cue group, and of the cascade (expensive groups at the escalation rate)."""
    from brandsentry.cues.compute import GROUPS

    expensive = {group.name for group in GROUPS if group.expensive}
    costs = {f"cost.{group}_ms": float(timings[group].mean()) for group in timings.columns}
    cheap_ms = sum(
        v for k, v in costs.items() if k.removeprefix("cost.").removesuffix("_ms") not in expensive
    )
    full_ms = sum(v for k, v in costs.items() if k.removeprefix("cost.").removesuffix("_ms") in expensive)
    costs["cost.all_cues_ms"] = cheap_ms + full_ms
    costs["cost.cascade_ms"] = cheap_ms + escalation_rate * full_ms
    return costs


def permutation_importance(model: CascadeClassifier, features: pd.DataFrame, y) -> pd.Series:
    """ROC-AUC drop of the full model when each feature is shuffled on validation (5 repeats)."""
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    full = model.full
    with full.threads():
        result = sk_permutation_importance(
            full.model,
            features[full.feature_names].to_numpy(dtype=np.float64),
            np.asarray(y),
            scoring="roc_auc",
            n_repeats=5,
            random_state=full.settings.seed,
        )
    return pd.Series(result.importances_mean, index=full.feature_names).sort_values(ascending=False)


# ---- the job ---------------------------------------------------------------------------------------------
def train(cfg: DictConfig, run_dir: Path | None = None, progress: bool = False) -> TrainingResult:
    """One training job for a composed train config (see the module docstring).

    The MLflow run opens before any work, so that its duration is the job's and a job that fails shows as
    a FAILED run named after its manifest.
    """
    import mlflow
    from mlflow import MlflowClient

    require(cfg, "listings")
    settings = ClassifierSettings.from_config(cfg.classifier)
    workspace = Workspace.from_config(cfg).ensure()
    run_dir = Path(run_dir or str(cfg.paths.run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(cfg)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = experiment_id(client, str(cfg.logger.experiment), workspace)
    model_name = str(cfg.logger.model_name)
    manifest = Path(str(cfg.listings))
    with (
        mlflow_store(uri),
        mlflow.start_run(
            experiment_id=experiment,
            run_name=run_name(manifest, settings.kind),
            description=f"Training `{settings.kind}` on `{manifest}` (completed when the job ends).",
            tags={"listings": str(cfg.listings), "run_dir": str(run_dir)},
        ) as run,
    ):
        run_id = run.info.run_id
        started = time.perf_counter()
        context = ScoringContext.from_config(cfg)
        data = labelled_set(cfg, context, progress=progress)
        featurised_s = time.perf_counter() - started
        mlflow.log_input(manifest_dataset(data, manifest, str(cfg.data.label_column)), context="training")
        evaluation = fit_and_evaluate(data, context, settings)
        metrics = {**evaluation.metrics, "time.features_s": featurised_s}
        metrics["time.total_s"] = time.perf_counter() - started
        if evaluation.kind != settings.kind:
            client.update_run(run_id, name=run_name(manifest, evaluation.kind))
        mlflow.set_tags(
            {
                "dataset_digest": data.dataset_digest,
                "validation_digest": data.validation_digest,
                "embedder": context.embedder.identity.key(),
                "index_version": str(context.index.version),
                "cascade_band": evaluation.model.band.reason,
                "model_choice": evaluation.model_choice,
                "thresholds_below_target": ", ".join(evaluation.below_target) or "none",
            }
        )
        mlflow.log_params(flat_params(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])))
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        headline, breakdowns = split_breakdowns(metrics)
        for by, table in breakdowns.items():
            mlflow.log_table(table, f"metrics_by_{by}.json")
        mlflow.log_dict(evaluation.model.thresholds(), "thresholds.json")
        mlflow.log_table(
            thresholds_table(evaluation.model).assign(
                best_validation_precision=lambda t: t["brand"].map(evaluation.below_target),
                reaches_target=lambda t: ~t["brand"].isin(list(evaluation.below_target)),
            ),
            "thresholds_table.json",
        )
        mlflow.log_dict({k: float(v) for k, v in evaluation.importance.items()}, "feature_importance.json")
        mlflow.log_dict(
            {"used": evaluation.model.feature_names, "dropped": evaluation.model.dropped_features},
            "features.json",
        )
        test = (data.rows["split"] == "test").to_numpy()
        log_test_plots(
            data.rows["y"].to_numpy()[test],
            evaluation.test_scores,
            evaluation.test_decisions,
            evaluation.model,
            evaluation.importance,
            settings.target_precision,
        )

        metadata = BundleMetadata(
            model_name=model_name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            embedder=context.embedder.identity.to_dict(),
            index_version=int(context.index.version),
            image_root=str(context.image_root),
            feature_names=context.feature_names,
            cheap_feature_names=context.cheap_feature_names,
            model_feature_names=evaluation.model.feature_names,
            dropped_features=evaluation.model.dropped_features,
            cascade_band=asdict(evaluation.model.band),
            dataset_digest=data.dataset_digest,
            validation_digest=data.validation_digest,
            metrics=summary_metrics(metrics),
            run_id=run_id,
        )
        bundle_dir = write_bundle(
            run_dir / f"{model_name}-{run_id[:12]}",
            metadata,
            cfg,
            evaluation.model,
            context,
            workspace.index_dir,
        )
        register = bool(cfg.logger.register)
        with warnings.catch_warnings():
            # an input example would be images on this machine: the signature documents the input instead
            warnings.filterwarnings("ignore", message=".*An input example was not provided")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(write_pyfunc_code(run_dir)),
                signature=pyfunc_signature(),
                artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                pip_requirements=[_requirement()],
                registered_model_name=model_name if register else None,
            )
        # linked to the logged model too, so that the model (version) page shows them
        mlflow.log_metrics(
            {metric_key(k): float(v) for k, v in headline.items()}, model_id=info.model_id
        )  # NaN: undefined, e.g. no flag
        version = info.registered_model_version if register else None
        promoted, note = False, "not registered (logger.register=false)"
        if version is not None:
            promoted, note = False, "auto-promotion off (logger.auto_promote=false)"
            if bool(cfg.logger.auto_promote):
                metric = str(cfg.logger.promote_metric)
                if metric not in metrics:
                    raise ConfigError(f"logger.promote_metric {metric!r} is not a training metric")
                promoted, note = auto_promotion(
                    client, model_name, metric, metrics[metric], data.validation_digest
                )
                if promoted:
                    promote(uri, model_name, version)
        decision = promotion_decision(version, promoted)
        mlflow.set_tags({"promotion": note, "promotion_decision": decision})
        mlflow.log_table(
            pd.DataFrame(
                [
                    {
                        "model_version": f"{model_name}/{version}" if version is not None else "",
                        "decision": decision,
                        "reason": note,
                        "metric": str(cfg.logger.promote_metric),
                        "value": metrics.get(str(cfg.logger.promote_metric), float("nan")),
                    }
                ]
            ),
            "promotion.json",
        )
        description = training_description(
            manifest, data, evaluation, metrics, settings.target_precision, f"{decision}: {note}"
        )
        mlflow.set_tag("mlflow.note.content", description)
        if version is not None:
            describe_version(client, model_name, str(version), description, decision, note, data)
    return TrainingResult(
        run_id=run_id,
        experiment_id=experiment,
        run_dir=run_dir,
        bundle_dir=bundle_dir,
        model_version=f"{model_name}/{version}" if version is not None else None,
        promoted=promoted,
        promotion_note=note,
        metrics=metrics,
        below_target=evaluation.below_target,
    )


def run_name(manifest: Path, kind: str) -> str:
    """`train-<world>-<manifest>-<kind>-<date>`: what a run list needs to tell runs apart at a glance."""
    return f"train-{manifest.resolve().parent.name}-{manifest.stem}-{kind}-{datetime.now(UTC):%Y-%m-%d}"


def manifest_dataset(data: LabelledSet, manifest: Path, label_column: str):
    """The manifest as an MLflow dataset: source its path, digest the start of `rows_digest` (as tagged)."""
    import mlflow.data
    from mlflow.data.sources import LocalArtifactDatasetSource

    return mlflow.data.from_pandas(
        data.manifest,
        source=LocalArtifactDatasetSource(str(manifest.resolve())),
        targets=label_column,
        name=manifest.stem,
        digest=data.dataset_digest[:16],
    )


_BREAKDOWN = re.compile(r"^(?P<split>val|test)\.(?P<by>brand|kind)\.(?P<value>.+)\.(?P<metric>\w+)$")


def split_breakdowns(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """(headline metrics, {"brand"|"kind": table}): per-brand and per-kind figures as one table each.

    As scalar metrics they made a hundred single-point charts in the MLflow UI that buried test.roc_auc;
    a table row per split and brand (or kind) reads better. `TrainingResult.metrics` keeps every key.
    """
    headline: dict[str, float] = {}
    cells: dict[str, dict[tuple[str, str], dict[str, float]]] = {"brand": {}, "kind": {}}
    for key, value in metrics.items():
        match = _BREAKDOWN.match(key)
        if match is None:
            headline[key] = value
        else:
            row = cells[match["by"]].setdefault((match["split"], match["value"]), {})
            row[match["metric"]] = value
    tables = {
        by: pd.DataFrame([{"split": split, by: value, **row} for (split, value), row in sorted(rows.items())])
        for by, rows in cells.items()
        if rows
    }
    return headline, tables


def promotion_decision(version, promoted: bool) -> str:
    if version is None:
        return "not registered"
    return f"promoted to @{CHAMPION}" if promoted else "not promoted"


def training_description(
    manifest: Path,
    data: LabelledSet,
    evaluation: Evaluation,
    metrics: dict[str, float],
    target_precision: float,
    promotion: str,
) -> str:
    """The run's (and model version's) description: what it was trained on, how it did, what became of it."""
    rows = ", ".join(f"{split} {int(metrics[f'rows.{split}'])}" for split in SPLITS)
    figures = ", ".join(
        f"{label} {metrics[key]:.3f}"
        for label, key in (
            ("ROC-AUC", "test.roc_auc"),
            ("PR-AUC", "test.pr_auc"),
            ("recall@p95", "test.recall_at_p95"),
            ("flag precision", "test.flag_precision"),
            ("flag recall", "test.flag_recall"),
        )
    )
    below = evaluation.below_target
    brands = len(evaluation.model.thresholds()["brands"])
    thresholds = (
        f"{len(below)} threshold(s) (of {brands} brand(s) and the global one) reach no precision "
        f"{target_precision:.2f} on validation and never flag: "
        + ", ".join(f"{'global' if b == '*' else b} (best {p:.2f})" for b, p in below.items())
        if below
        else f"every threshold reaches precision {target_precision:.2f} on validation"
    )
    return (
        f"Trained `{evaluation.kind}` on `{manifest}` ({len(data.manifest)} rows; usable: {rows}; "
        f"dataset digest {data.dataset_digest[:16]}).\n\n"
        f"- model choice: {evaluation.model_choice}\n"
        f"- test: {figures}\n"
        f"- thresholds: {thresholds}\n"
        f"- promotion: {promotion}\n"
    )


def describe_version(
    client, model_name: str, version: str, description: str, decision: str, note: str, data: LabelledSet
) -> None:
    """Description and tags of the new model version, and the registered model's description."""
    client.update_model_version(model_name, version, description=description)
    for key, value in {
        "promotion_decision": decision,
        "promotion": note,
        "dataset_digest": data.dataset_digest,
        "validation_digest": data.validation_digest,
    }.items():
        client.set_model_version_tag(model_name, version, key, value)
    client.update_registered_model(
        model_name,
        description=(
            "brandsentry scoring bundles (cue features, cascaded classifier, per-brand thresholds), one "
            f"version per training run; `@{CHAMPION}` is the version `brandsentry score` uses by default. "
            "Each version's description says what it was trained on, its test metrics and whether it "
            "was promoted."
        ),
    )


def summary_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The headline figures a bundle carries in bundle.json (all of them are in the MLflow run)."""
    keys = ("roc_auc", "pr_auc", "recall_at_p90", "recall_at_p95", "recall_at_p99", "flag_precision",
            "flag_recall", "escalation_rate", "full.roc_auc")  # fmt: skip
    return {
        f"{split}.{key}": float(metrics[f"{split}.{key}"])
        for split in ("val", "test")
        for key in keys
        if f"{split}.{key}" in metrics
    }


def _requirement() -> str:
    from brandsentry import __version__

    return f"brandsentry=={__version__}"


def run_hydra_train(overrides: list[str], multirun: bool = False) -> list[TrainingResult]:
    """`brandsentry train [-m] key=value ...` as a Hydra app (sweeps, output dirs, .hydra/): a `hydra.main`
    task, which reads its command line from sys.argv, so sys.argv holds the overrides for the call.

    Errors reach the caller as they are (a bad override as a `ConfigError` naming it), never through Hydra's
    printer: a job's `BrandsentryError` is raised after Hydra returns, since Hydra prints "Error executing
    job with overrides" before re-raising one; the other jobs of a sweep still run.
    """
    import sys

    import hydra
    from hydra.core.hydra_config import HydraConfig

    results: list[TrainingResult] = []
    failures: list[BrandsentryError] = []

    @hydra.main(config_path=str(config_dir()), config_name="train", version_base=None)
    def task(cfg: DictConfig) -> None:
        try:
            results.append(train(cfg, run_dir=Path(HydraConfig.get().runtime.output_dir), progress=True))
        except BrandsentryError as exc:
            failures.append(exc)

    argv, previous = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["brandsentry train", *(["--multirun"] if multirun else []), *overrides]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises its errors instead of printing them
    try:
        with hydra_errors_named("train", overrides):
            task()
    finally:
        sys.argv = argv
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
    if failures:
        raise failures[0]
    return results
