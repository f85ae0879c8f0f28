"""`brandsentry review log|record|summary`, `brandsentry feedback import|simulate|agreement`, `brandsentry rescan`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    review = commands.add_parser("review", help="log scoring runs to MLflow with drift and evidence pages")
    actions = review.add_subparsers(dest="action", required=True)
    log = actions.add_parser(
        "log",
        help="log a finished scoring run (experiment `scoring`): metrics, plots, drift, evidence page",
        description="Records the run in the catalog's ledger, then logs it to MLflow. Config: review.*.",
    )
    log.add_argument("run_dir", type=Path)
    log.add_argument(
        "--kind", choices=("daily", "rescan"), default="daily", help="only daily runs form the drift baseline"
    )
    log.add_argument(
        "--force", action="store_true", help="replace the MLflow run of an already logged run dir"
    )
    log.add_argument(
        "--no-attribution", action="store_true", help="do not load the model for cue attributions"
    )
    log.set_defaults(handler=run_log)
    record = actions.add_parser(
        "record",
        help="add a finished scoring run to the catalog's ledger only (what rescan and feedback read)",
    )
    record.add_argument("run_dir", type=Path)
    record.set_defaults(handler=run_record)
    summary = actions.add_parser(
        "summary",
        help="precision and recall per counterfeit kind of labelled scoring runs, and their throughput",
    )
    summary.add_argument("run_dirs", type=Path, nargs="+")
    summary.set_defaults(handler=run_summary)
    models = actions.add_parser(
        "models", help="registered model versions with their test metrics and reviewed rows used in training"
    )
    models.add_argument("--name", default="brandsentry", help="registered model name (default brandsentry)")
    models.set_defaults(handler=run_models)

    feedback = commands.add_parser("feedback", help="reviewer verdicts: import them, or simulate a reviewer")
    feedback_actions = feedback.add_subparsers(dest="action", required=True)
    verdicts = feedback_actions.add_parser(
        "import",
        help="store VERDICTS.csv (listing_id, verdict, reviewer, note) with each listing's features",
        description="verdict: confirmed_counterfeit | false_positive | authentic | not_ours. Rows that cannot be stored "
        "are listed with their reason; the exit status is 1 when any was rejected.",
    )
    verdicts.add_argument("file", type=Path)
    verdicts.set_defaults(handler=run_import)
    simulate = feedback_actions.add_parser(
        "simulate",
        help="answer a run's flag/review queue from ground truth (a labelled listings CSV) into VERDICTS.csv",
    )
    simulate.add_argument("run_dir", type=Path)
    simulate.add_argument("truth", type=Path, help="listings manifest with listing_id and label")
    simulate.add_argument(
        "--top", type=_positive_int, default=100, help="highest-scored flag/review listings answered"
    )
    simulate.add_argument("--error-rate", type=_share, default=0.0, help="share of wrong answers, in [0, 1]")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--reviewer", default="simulated-reviewer")
    simulate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: RUN_DIR/_verdicts.csv (readers of the results folder skip it)",
    )
    simulate.set_defaults(handler=run_simulate)
    agreement = feedback_actions.add_parser(
        "agreement",
        help="how often brand answers (portal inbox) and reviewer verdicts agree on listings both judged",
    )
    agreement.set_defaults(handler=run_agreement)

    rescan = commands.add_parser(
        "rescan",
        help="re-score a brand's listings scored since DATE (after its references changed); report changes",
    )
    rescan.add_argument("--brand", required=True)
    rescan.add_argument("--since", required=True, help="ISO date or timestamp (UTC when no zone is given)")
    rescan.add_argument("--model", default=None, help="model URI or bundle folder (default: score.model)")
    rescan.add_argument(
        "--show", type=int, default=20, help="changed listings printed (all are in changes.csv)"
    )
    rescan.set_defaults(handler=run_rescan)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def run_record(args, overrides: list[str]) -> int:
    from brandsentry.config import Workspace, load_config
    from brandsentry.ledger import record_scoring_run

    workspace = Workspace.from_config(load_config(overrides)).ensure()
    recorded = record_scoring_run(workspace, args.run_dir)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(recorded.decisions.items()))
    print(f"recorded {recorded.listings} listing(s) of {recorded.run_dir} ({counts})")
    return 0


def run_log(args, overrides: list[str]) -> int:
    from brandsentry.config import load_config
    from brandsentry.review import load_bundle_for, log_scoring_run

    cfg = load_config(overrides)
    bundle = None if args.no_attribution else load_bundle_for(cfg, args.run_dir)
    report_logged(log_scoring_run(cfg, args.run_dir, kind=args.kind, force=args.force, bundle=bundle))
    return 0


def report_logged(logged) -> None:
    """What `review log` (and `score`, which logs its run) print about a `ScoringRunLog`."""
    metrics = logged.metrics
    counts = ", ".join(
        f"{d} {int(metrics.get(f'decisions.{d}', 0))}" for d in ("flag", "review", "pass", "error")
    )
    print(f"MLflow run {logged.run_id} (experiment scoring, model {logged.model_version}): {counts}")
    if logged.drift is not None:
        if logged.drift.warnings:
            print(f"DRIFT WARNING vs {len(logged.drift.baseline_runs)} run(s): {logged.drift.describe()}")
        else:
            print(
                f"drift: {len(logged.drift.checks)} check(s) against {len(logged.drift.baseline_runs)} run(s), none over the bound"
            )
    print(
        f"evidence page: {logged.evidence.html} ({len(logged.evidence.items)} listing(s)); {logged.evidence.attribution}"
    )
    print(f"open it from the run in the MLflow UI: mlflow ui --backend-store-uri {logged.tracking_uri}")


def run_summary(args, overrides: list[str]) -> int:
    from brandsentry.review import format_table, truth_table
    from brandsentry.run_folder import read_results, read_summary

    for run_dir in args.run_dirs:
        results = read_results(run_dir)
        summary = read_summary(run_dir)
        versions = ",".join(sorted({str(v) for v in results.get("model_version", [])})) or "unknown"
        speed = summary.get("images_per_s")
        speed_text = f", {speed:.1f} images/s" if isinstance(speed, int | float) else ""
        print(f"\n{run_dir} (model {versions}, {len(results)} listings{speed_text})")
        print(format_table(truth_table(results)))
    return 0


def run_models(args, overrides: list[str]) -> int:
    from brandsentry.config import Workspace, load_config
    from brandsentry.review import ReviewSettings, format_table
    from brandsentry.review.runs import model_versions

    cfg = load_config(overrides)
    uri = ReviewSettings.from_config(cfg).tracking_uri or Workspace.from_config(cfg).mlflow_uri
    table = model_versions(uri, args.name)
    print(format_table(table) if len(table) else f"no registered versions of {args.name!r} in {uri}")
    return 0


def run_import(args, overrides: list[str]) -> int:
    from brandsentry.config import Workspace, load_config
    from brandsentry.feedback import feedback_training_rows, import_verdicts

    workspace = Workspace.from_config(load_config(overrides)).ensure()
    outcome = import_verdicts(workspace, args.file)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(outcome.by_verdict.items())) or "none"
    print(
        f"imported {outcome.imported} verdict(s) from {outcome.rows} row(s) ({kinds}); "
        f"{outcome.duplicates} duplicate(s), {len(outcome.rejected)} rejected"
    )
    for rejected in outcome.rejected:
        print(f"  line {rejected.line} {rejected.listing_id or '-'}: {rejected.reason}")
    rows = feedback_training_rows(workspace)
    labelled = int(rows["label"].notna().sum())  # a latest verdict "not_ours" has no label to learn
    print(f"reviewed listings available to training (data.include_feedback=true): {labelled}")
    return 1 if outcome.rejected else 0


def run_simulate(args, overrides: list[str]) -> int:
    import pandas as pd

    from brandsentry.feedback import VerdictFileError, simulate_verdicts
    from brandsentry.run_folder import VERDICTS_FILE, read_results

    if not args.truth.is_file():
        raise VerdictFileError(f"ground truth {args.truth} does not exist")
    truth = pd.read_csv(args.truth, dtype=str, keep_default_na=False)
    results = read_results(args.run_dir)
    verdicts = simulate_verdicts(results, truth, args.top, args.error_rate, args.seed, args.reviewer)
    out = args.out or Path(args.run_dir) / VERDICTS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp")
    verdicts.to_csv(staging, index=False)
    staging.replace(out)
    counts = ", ".join(f"{k} {v}" for k, v in verdicts["verdict"].value_counts().sort_index().items())
    print(f"{len(verdicts)} simulated verdict(s) ({counts or 'none'}) -> {out}")
    return 0


def run_agreement(args, overrides: list[str]) -> int:
    from brandsentry.config import Workspace, load_config
    from brandsentry.feedback import feedback_agreement

    found = feedback_agreement(Workspace.from_config(load_config(overrides)).ensure())
    if not found.both:
        print("no listing has both a reviewer verdict and a brand answer yet")
        return 0
    print(
        f"listings judged by both a reviewer and the brand: {found.both}; agreeing: {found.agree} ({found.rate:.0%})"
    )
    for (reviewer, brand), count in sorted(found.pairs.items()):
        print(f"  reviewer {reviewer:<11} brand {brand:<11} {count}")
    return 0


def run_rescan(args, overrides: list[str]) -> int:
    from brandsentry.config import load_config
    from brandsentry.review import format_table, rescan
    from brandsentry.run_folder import SUMMARY_FILE

    cfg = load_config(overrides)
    report = rescan(cfg, args.brand, args.since, model=args.model)
    print(
        f"rescanned {report.listings} listing(s) of {args.brand} last scored since {report.since} with model "
        f"{report.model_version} (index v{report.index_version}) -> {report.out_dir}"
    )
    if report.status != "complete":
        print(
            f"the rescan's scoring run ended {report.status}: see {report.out_dir / 'results' / SUMMARY_FILE}"
        )
    print(format_table(report.transitions))
    changed = report.changes
    print(f"{len(changed)} decision(s) changed (all in {report.changes_csv})")
    if len(changed):
        print(format_table(changed.head(args.show)))
    return 0
