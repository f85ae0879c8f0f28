"""Training: labelled listings → cue features → cascaded classifier → thresholds → MLflow run + bundle.

`brandsentry train listings=MANIFEST` is a Hydra app over configs/train.yaml (`-m` sweeps run one job per
combination). Each job:

1. reads the manifest, sets aside error-path rows (`data.exclude_kinds`) and splits by the `split` column,
   or by product when there is none (a product never straddles two splits);
2. featurises every listing against the workspace's current index with the expensive cues computed for all
   (both models need them), cached under workspace/runs/features by dataset digest + everything that
   shapes a feature, so a sweep over classifiers computes cues once;
3. fits the cheap and the full model on train (calibrated on held-out train products), picks per-brand
   thresholds on validation for the target precision using the cascaded score the scorer will produce,
   and reports on test;
4. logs config, digests, metrics, thresholds and plots to MLflow (experiment `logger.experiment`), writes
   the scoring bundle and registers it as a pyfunc model version; with `logger.auto_promote` the version
   becomes `champion` when there is none, or when it beats the champion's stored `logger.promote_metric`
   on a validation set with the same digest (no re-scoring: the metric and the digest are stored per run).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import warnings
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from brandsentry.bundle import BundleMetadata, write_bundle
from brandsentry.classify import (
    CascadeClassifier,
    ClassifierSettings,
    TrainingDataError,
    classification_metrics,
    decision_metrics,
    encode_labels,
)
from brandsentry.config import Workspace, config_dir, require
from brandsentry.errors import ConfigError
from brandsentry.features import FeatureTable, ScoringContext, format_cue_failures, read_listings
from brandsentry.files import atomic_write
from brandsentry.model_choice import choose_model
from brandsentry.registry import (
    BUNDLE_ARTIFACT,
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

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class LabelledSet:
    """Featurised labelled listings, one row per usable listing, and what was set aside and why."""

    rows: pd.DataFrame  # listing_id, brand (canonical), split, y, kind, group
    features: pd.DataFrame  # every feature column, row-aligned with `rows`
    timings_ms: pd.DataFrame  # ms per cue group, row-aligned with `rows`
    excluded: dict[str, int]  # reason -> listings
    feedback_rows: int  # reviewed listings appended to the training split
    dataset_digest: str
    validation_digest: str
    cue_failures: dict[str, dict[str, int]]  # cue group -> exception type -> listings (featurised here)


@dataclass(frozen=True)
class TrainingResult:
    """What one training job produced."""

    run_id: str
    run_dir: Path
    bundle_dir: Path
    model_version: str | None  # "NAME/N" when registered
    promoted: bool
    promotion_note: str
    metrics: dict[str, float]


# ---- data ---------------------------------------------------------------------------------------------
def rows_digest(frame: pd.DataFrame, base: Path) -> str:
    """sha256 of manifest rows, independent of row order and of where the manifest folder lives."""
    rows = frame.copy()
    rows["image_path"] = [_relative(path, base) for path in rows["image_path"]]
    rows = rows[sorted(rows.columns)].sort_values("listing_id", kind="stable")
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()


def _relative(path: str, base: Path) -> str:
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return str(path)


def assign_splits(frame: pd.DataFrame, data_cfg: DictConfig, seed: int) -> np.ndarray:
    """The manifest's split column when present, else a split by group (product) with the configured fractions."""
    column = str(data_cfg.split_column)
    if column in frame.columns and (frame[column].astype(str).str.strip() != "").all():
        splits = frame[column].astype(str).str.strip().str.lower().to_numpy(dtype=object)
        unknown = sorted(set(splits) - set(SPLITS))
        if unknown:
            raise TrainingDataError(
                f"unknown value(s) {unknown} in split column {column!r}; expected {SPLITS}"
            )
        return splits
    groups = _groups(frame, data_cfg)
    unique = np.array(sorted(set(groups)))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_test = max(1, round(len(unique) * float(data_cfg.test_fraction)))
    n_val = max(1, round(len(unique) * float(data_cfg.validation_fraction)))
    if len(unique) < n_test + n_val + 1:
        raise TrainingDataError(
            f"{len(unique)} product group(s) cannot make train, validation and test splits"
        )
    split_of = {g: "test" for g in unique[order[:n_test]]}
    split_of.update({g: "validation" for g in unique[order[n_test : n_test + n_val]]})
    return np.array([split_of.get(g, "train") for g in groups], dtype=object)


def _groups(frame: pd.DataFrame, data_cfg: DictConfig) -> np.ndarray:
    column = str(data_cfg.group_column)
    if column not in frame.columns:
        return frame["listing_id"].astype(str).to_numpy(dtype=object)
    values = frame[column].astype(str).str.strip()
    # a listing without a product is its own group
    return np.where(values == "", "listing:" + frame["listing_id"].astype(str), values).astype(object)


def feature_cache_key(context: ScoringContext, cfg: DictConfig, dataset_digest: str) -> str:
    """Everything that shapes a feature row: data, embedder, index version, references, assets, cue settings."""
    parts = {
        "dataset": dataset_digest,
        "embedder": context.embedder.identity.to_dict(),
        "index": [context.index.version, context.index.factory, len(context.index)],
        "references": hashlib.sha256(context.references.to_csv().encode()).hexdigest(),
        "wordmarks": sorted((b, sorted(w)) for b, w in context.wordmarks.items()),
        "sellers": sorted((b, sorted(s)) for b, s in context.sellers.items()),
        # the cascade bounds decide which cues the scorer runs, not what a cue computes
        "cues": {k: v for k, v in OmegaConf.to_container(cfg.cues, resolve=True).items() if k != "cascade"},
        "config": OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["images", "index"]), resolve=True),
        "features": context.feature_names,
        "table": [f.name for f in fields(FeatureTable)],  # a cached table of another shape is not reused
    }
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def cached_features(
    context: ScoringContext, listings: pd.DataFrame, cache_dir: Path, key: str, progress: bool
) -> FeatureTable:
    """`context.featurize_all(listings, expensive=True)`, read from / written to `cache_dir/key.pkl`."""
    path = cache_dir / f"{key}.pkl"
    if path.is_file():
        with open(path, "rb") as handle:
            table = pickle.load(handle)
        if list(table.listing_ids) == listings["listing_id"].astype(str).tolist():
            log.info("features of %d listings read from cache %s", len(listings), path)
            return table
    table = context.featurize_all(listings, expensive=True, progress=progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: pickle.dump(table, handle, protocol=pickle.HIGHEST_PROTOCOL))
    return table


def feedback_rows(
    cfg: DictConfig, workspace: Workspace, context: ScoringContext, labelled: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Reviewed listings to append to the training split, and the reviewed listings held back, by reason.

    Reviewed rows join training only (never validation or test, so that metrics and the validation digest
    stay comparable between runs), and only where they cannot leak: a reviewed listing of a product that
    the labelled manifest holds out for validation or test would let the model see that product, and a
    reviewed listing that the manifest already labels would count twice. `labelled`: the manifest's usable
    rows (`LabelledSet.rows` columns). Empty unless `data.include_feedback`; rows carry the columns of
    `LabelledSet.rows` plus the cue values stored with the verdict (NaN where the scoring run did not
    compute a cue, e.g. expensive cues the cascade skipped).
    """
    if not bool(cfg.data.include_feedback):
        return pd.DataFrame(), {}
    from brandsentry.feedback import feedback_origins, feedback_training_rows

    stored = feedback_training_rows(workspace, feedback_origins(cfg.data.get("feedback_sources")))
    if stored.empty:
        return stored, {}
    not_ours = stored["label"].isna().to_numpy()
    stored = stored[~not_ours].reset_index(drop=True)
    held_out = set(labelled.loc[labelled["split"] != "train", "group"])
    products = stored[["listing_id"]].assign(
        **{str(cfg.data.group_column): stored["claimed_product"].fillna("")}
    )
    groups = _groups(products, cfg.data)
    in_manifest = stored["listing_id"].astype(str).isin(set(labelled["listing_id"])).to_numpy()
    leaks = np.array([group in held_out for group in groups]) & ~in_manifest
    excluded = {
        key: int(n)
        for key, n in (
            ("feedback.not_ours", not_ours.sum()),
            ("feedback.listing_in_manifest", in_manifest.sum()),
            ("feedback.product_in_validation_or_test", leaks.sum()),
        )
        if n
    }
    keep = ~(in_manifest | leaks)
    stored = stored[keep].reset_index(drop=True)
    if stored.empty:
        return stored, excluded
    rows = pd.DataFrame(
        {
            "listing_id": "feedback:" + stored["listing_id"].astype(str),
            "brand": [context.canonical_brand(b) or str(b) for b in stored["claimed_brand"]],
            "split": "train",
            "y": encode_labels(stored["label"]),
            "kind": "",
            "group": groups[keep],
        }
    )
    return pd.concat([rows, stored.reindex(columns=context.feature_names)], axis=1), excluded


def labelled_set(cfg: DictConfig, context: ScoringContext, progress: bool = False) -> LabelledSet:
    """Read, split and featurise the labelled manifest; rows that cannot be used are counted, not dropped silently."""
    data_cfg = cfg.data
    manifest = Path(str(require(cfg, "listings")))
    listings = read_listings(manifest)
    label_column = str(data_cfg.label_column)
    if label_column not in listings.columns:
        raise TrainingDataError(f"listings manifest {manifest} has no label column {label_column!r}")
    base = manifest.resolve().parent
    dataset_digest = rows_digest(listings, base)
    splits = assign_splits(listings, data_cfg, int(cfg.seed))
    kind_column = str(data_cfg.kind_column)
    kinds = (
        listings[kind_column].fillna("").astype(str).str.strip().to_numpy(dtype=object)
        if kind_column in listings.columns
        else np.full(len(listings), "", dtype=object)
    )
    excluded_kinds = {str(k) for k in data_cfg.exclude_kinds}
    excluded: dict[str, int] = {}
    keep = np.array([kind not in excluded_kinds for kind in kinds])
    for kind in kinds[~keep]:
        excluded[f"kind.{kind}"] = excluded.get(f"kind.{kind}", 0) + 1
    listings, splits, kinds = listings[keep].reset_index(drop=True), splits[keep], kinds[keep]
    y = encode_labels(listings[label_column])
    for split in SPLITS:  # before hours of cue computation, not after
        require_both_classes(split, y[splits == split])
    require_calibration_rows(y[splits == "train"], int(cfg.classifier.calibration_folds))
    validation_digest = rows_digest(listings[splits == "validation"], base)

    workspace = Workspace.from_config(cfg)
    key = feature_cache_key(context, cfg, dataset_digest)
    table = cached_features(context, listings, workspace.runs_dir / "features", key, progress)
    ok = table.ok
    cue_failures = table.cue_failure_counts()
    log.info(
        "cue failures while featurising %d listings: %s", len(listings), format_cue_failures(cue_failures)
    )
    for reason in table.errors[~ok]:
        excluded[f"error.{reason}"] = excluded.get(f"error.{reason}", 0) + 1
    rows = pd.DataFrame(
        {
            "listing_id": listings["listing_id"].astype(str),
            "brand": [context.canonical_brand(b) or str(b) for b in listings["claimed_brand"]],
            "split": splits,
            "y": y,
            "kind": kinds,
            "group": _groups(listings, data_cfg),
        }
    )[ok].reset_index(drop=True)
    features = table.features[ok].reset_index(drop=True)
    timings = table.timings_ms[ok].reset_index(drop=True)
    extra, held_back = feedback_rows(cfg, workspace, context, rows)
    excluded.update(held_back)
    if not extra.empty:
        rows = pd.concat([rows, extra[rows.columns]], ignore_index=True)
        features = pd.concat([features, extra[context.feature_names]], ignore_index=True)
        timings = timings.reindex(range(len(rows)))  # no cue was computed for them here
    return LabelledSet(
        rows, features, timings, excluded, len(extra), dataset_digest, validation_digest, cue_failures
    )


def require_both_classes(split: str, y: np.ndarray) -> None:
    present = sorted({"counterfeit" if v else "authentic" for v in y})
    if len(present) != 2:
        raise TrainingDataError(
            f"the {split} split needs authentic and counterfeit listings; its {len(y)} "
            f"usable listing(s) are {', '.join(present) or 'none'}"
        )


def require_calibration_rows(y_train: np.ndarray, folds: int) -> None:
    """Each class needs a listing in every calibration fold of the train split (at least 2 in all)."""
    minimum = max(2, folds)
    counts = {"authentic": int((y_train == 0).sum()), "counterfeit": int((y_train == 1).sum())}
    short = {label: n for label, n in counts.items() if n < minimum}
    if short:
        raise TrainingDataError(
            f"the train split has {counts['authentic']} authentic and {counts['counterfeit']} counterfeit "
            f"listing(s); calibrating over classifier.calibration_folds={folds} folds needs at least "
            f"{minimum} of each (label more listings, or lower classifier.calibration_folds)"
        )


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
    importance = permutation_importance(model, parts["validation"], y[validation])
    return Evaluation(model, metrics, scored["test"][0], decisions["test"], importance, choice.reason)


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
    """One training job for a composed train config (see the module docstring)."""
    import mlflow
    from mlflow import MlflowClient

    require(cfg, "listings")
    settings = ClassifierSettings.from_config(cfg.classifier)
    workspace = Workspace.from_config(cfg)
    run_dir = Path(run_dir or str(cfg.paths.run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    context = ScoringContext.from_config(cfg)
    started = time.perf_counter()
    data = labelled_set(cfg, context, progress=progress)
    featurised_s = time.perf_counter() - started
    evaluation = fit_and_evaluate(data, context, settings)
    metrics = {**evaluation.metrics, "time.features_s": featurised_s}
    metrics["time.total_s"] = time.perf_counter() - started

    uri = tracking_uri(cfg)
    workspace.ensure()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = experiment_id(client, str(cfg.logger.experiment), workspace)
    model_name = str(cfg.logger.model_name)
    with mlflow_store(uri), mlflow.start_run(experiment_id=experiment) as run:
        run_id = run.info.run_id
        mlflow.set_tags(
            {
                "dataset_digest": data.dataset_digest,
                "validation_digest": data.validation_digest,
                "listings": str(cfg.listings),
                "run_dir": str(run_dir),
                "embedder": context.embedder.identity.key(),
                "index_version": str(context.index.version),
                "cascade_band": evaluation.model.band.reason,
                "model_choice": evaluation.model_choice,
            }
        )
        mlflow.log_params(flat_params(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])))
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        mlflow.log_metrics(
            {metric_key(k): float(v) for k, v in metrics.items()}
        )  # NaN: undefined, e.g. no flag
        mlflow.log_dict(evaluation.model.thresholds(), "thresholds.json")
        mlflow.log_table(thresholds_table(evaluation.model), "thresholds_table.json")
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
            mlflow.set_tag("promotion", note)
    return TrainingResult(
        run_id=run_id,
        run_dir=run_dir,
        bundle_dir=bundle_dir,
        model_version=f"{model_name}/{version}" if version is not None else None,
        promoted=promoted,
        promotion_note=note,
        metrics=metrics,
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
    task, which reads its command line from sys.argv, so sys.argv holds the overrides for the call."""
    import sys

    import hydra
    from hydra.core.hydra_config import HydraConfig

    results: list[TrainingResult] = []

    @hydra.main(config_path=str(config_dir()), config_name="train", version_base=None)
    def task(cfg: DictConfig) -> None:
        results.append(train(cfg, run_dir=Path(HydraConfig.get().runtime.output_dir), progress=True))

    argv, previous = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["brandsentry train", *(["--multirun"] if multirun else []), *overrides]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # our own errors reach the CLI dispatcher, not Hydra's printer
    try:
        task()
    finally:
        sys.argv = argv
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
    return results
