"""Training data: the labelled manifest read, split (by product when it has no split column), featurised
against the workspace's index (cached by dataset digest), with reviewed listings appended where they
cannot leak; every row set aside is counted by reason."""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from brandsentry.classify import TrainingDataError, encode_labels
from brandsentry.config import Workspace, require
from brandsentry.features import FeatureTable, ScoringContext, format_cue_failures, read_listings
from brandsentry.files import atomic_write

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
    manifest: pd.DataFrame  # the manifest as read, every row: the training run's dataset input


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
    listings = manifest_rows = read_listings(manifest)
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
        rows,
        features,
        timings,
        excluded,
        len(extra),
        dataset_digest,
        validation_digest,
        cue_failures,
        manifest_rows,
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
