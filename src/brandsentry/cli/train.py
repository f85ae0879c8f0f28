"""`brandsentry train` (a Hydra app: `-m` sweeps) and `brandsentry promote VERSION`."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="fit the counterfeit classifier on labelled listings, log to MLflow, register the bundle",
        description="Train on listings=MANIFEST (CSV/Parquet with label, optional split and counterfeit_kind) "
        "against the workspace's current index. Any configs/train.yaml value can be overridden; "
        "-m sweeps comma-separated values, e.g. `-m classifier=hgb,logreg`.",
    )
    train.add_argument("-m", "--multirun", action="store_true", help="one job per combination of values")
    train.set_defaults(handler=run_train)
    promote = commands.add_parser("promote", help="point the `champion` alias at a registered model version")
    promote.add_argument("version", help="version number, or NAME/NUMBER")
    promote.add_argument("--alias", default="champion")
    promote.set_defaults(handler=run_promote)


def run_train(args, overrides: list[str]) -> int:
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


def run_promote(args, overrides: list[str]) -> int:
    from brandsentry.config import load_config
    from brandsentry.registry import promote, tracking_uri

    cfg = load_config(overrides, config_name="train")
    name = promote(tracking_uri(cfg), str(cfg.logger.model_name), args.version, alias=args.alias)
    print(f"{name} is now @{args.alias}")
    return 0
