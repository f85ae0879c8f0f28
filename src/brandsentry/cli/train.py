"""`brandsentry train` (a Hydra app: `-m` sweeps) and `brandsentry promote VERSION`."""

from __future__ import annotations

import argparse
from pathlib import Path

from brandsentry.cli._parser import add_command, required_values

TRAIN_DESCRIPTION = """\
Train on listings=MANIFEST against the workspace's current index (run `brandsentry index build` first),
log the run to MLflow (experiment `training`) and register the scoring bundle; the first version, or one
beating the champion on the same validation set, becomes @champion.

The manifest is CSV or Parquet with the scoring columns (listing_id, image_path, claimed_brand, optional
claimed_product, title, price, seller_id) plus label (authentic|counterfeit), optional split
(train|validation|test; else split by claimed_product) and counterfeit_kind (metrics per kind).

Any configs/train.yaml value can be overridden (classifier=hgb|logreg, experiment=fast_cues, data.*,
classifier.*); with -m, comma-separated values sweep, one job per combination."""


def register(commands: argparse._SubParsersAction) -> None:
    train = add_command(
        commands,
        "train",
        help="fit the counterfeit classifier on labelled listings, log to MLflow, register the bundle",
        description=TRAIN_DESCRIPTION,
        examples=(
            "train listings=data/demo/listings_day1.csv workspace=data/demo-workspace",
            "train listings=day1.csv experiment=fast_cues data.include_feedback=true",
            "train -m listings=day1.csv classifier=hgb,logreg",
        ),
        config_values=required_values("train", {"listings": "MANIFEST"}),
    )
    train.add_argument(
        "-m", "--multirun", action="store_true", help="sweep: one job per combination of values"
    )
    train.set_defaults(handler=run_train)
    promote = add_command(
        commands,
        "promote",
        help="point the `champion` alias (or --alias) at a registered model version",
        description="Point a registry alias of model logger.model_name (default brandsentry) at VERSION, "
        "e.g. after comparing a version that training did not promote (`brandsentry review models`).",
        examples=("promote 3 workspace=data/demo-workspace", "promote brandsentry/2 --alias canary"),
    )
    promote.add_argument("version", metavar="VERSION", help="version number, or NAME/NUMBER")
    promote.add_argument("--alias", default="champion", help="the alias to set (default: champion)")
    promote.set_defaults(handler=run_promote)


def run_train(args, overrides: list[str]) -> int:
    if not args.multirun:  # a sweep's values compose only job by job, inside Hydra
        _check_required(overrides)
    from brandsentry.registry import run_url
    from brandsentry.train import run_hydra_train

    results = run_hydra_train(overrides, multirun=args.multirun)
    for result in results:
        m = result.metrics
        print(
            f"run {result.run_id} -> {result.model_version or 'not registered'}: test ROC-AUC "
            f"{m['test.roc_auc']:.3f}, PR-AUC {m['test.pr_auc']:.3f}, recall@p95 {m['test.recall_at_p95']:.3f}, "
            f"flag precision {m['test.flag_precision']:.3f} recall {m['test.flag_recall']:.3f}; "
            f"cascade {m['cost.cascade_ms']:.0f} ms/listing"
        )
        print(
            f"  cascade escalates {m['val.escalation_rate']:.1%} of validation at ROC-AUC {m['val.roc_auc']:.3f} "
            f"(everything escalated: {m['val.full.roc_auc']:.3f}); test {m['test.escalation_rate']:.1%}"
        )
        candidates = {k.split(".")[2]: v for k, v in m.items() if k.startswith("val.candidate.")}
        print(
            "  validation ROC-AUC by model kind: " + ", ".join(f"{k} {v:.3f}" for k, v in candidates.items())
        )
        if result.below_target:
            print(
                f"  WARNING: {len(result.below_target)} flag threshold(s) reach no target precision on "
                "validation, so never flag: "
                + ", ".join(
                    f"{'global' if b == '*' else b} (best {p:.2f})" for b, p in result.below_target.items()
                )
            )
        print(f"  bundle {result.bundle_dir}; promotion: {result.promotion_note}")
        print(f"  MLflow run: {run_url(result.experiment_id, result.run_id)} (served by `make ui`)")
    return 0


def _check_required(overrides: list[str]) -> None:
    """Name a bad override, a missing listings= or a bad manifest before the seconds of importing the
    training stack."""
    from brandsentry.cli.score import REQUIRED_COLUMNS, check_manifest
    from brandsentry.config import load_config, require

    cfg = load_config(overrides, config_name="train")
    manifest = Path(str(require(cfg, "listings"))).expanduser()
    check_manifest(manifest, (*REQUIRED_COLUMNS, str(cfg.data.label_column)))


def run_promote(args, overrides: list[str]) -> int:
    from brandsentry.config import load_config
    from brandsentry.registry import promote, tracking_uri

    cfg = load_config(overrides, config_name="train")
    name = promote(tracking_uri(cfg), str(cfg.logger.model_name), args.version, alias=args.alias)
    print(f"{name} is now @{args.alias}")
    return 0
