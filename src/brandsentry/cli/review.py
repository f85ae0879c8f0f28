"""`brandsentry review log|record|summary|models|export`, `brandsentry feedback import|simulate|agreement`,
`brandsentry rescan`."""

from __future__ import annotations

import argparse
from pathlib import Path

from brandsentry.cli._parser import add_command, add_group


def register(commands: argparse._SubParsersAction) -> None:
    actions = add_group(
        commands,
        "review",
        help="log scoring runs to MLflow with drift and evidence pages",
        description="Scoring runs for reviewers (docs/review.md): logged to MLflow with drift checks and "
        "an evidence page, recorded in the catalog's ledger, summarised against ground truth.",
        examples=("review log data/ws/runs/score/day2 workspace=data/ws", "review models workspace=data/ws"),
    )
    log = add_command(
        actions,
        "log",
        help="log a finished scoring run (experiment `scoring`): metrics, plots, drift, evidence page",
        description="Record the scoring run in RUN_DIR in the catalog's ledger, then log it to MLflow. "
        "Config: review.* (configs/review/default.yaml). `brandsentry score` does this itself unless "
        "score.log_run=false.",
        examples=(
            "review log data/ws/runs/score/day2 workspace=data/ws",
            "review log runs/day2 --force --no-attribution",
        ),
    )
    log.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a `brandsentry score` results folder")
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
    record = add_command(
        actions,
        "record",
        help="add a finished scoring run to the catalog's ledger only (what rescan and feedback read)",
        description="Add the scoring run in RUN_DIR to the catalog's ledger without logging it to MLflow.",
        examples=("review record data/ws/runs/score/day1 workspace=data/ws",),
    )
    record.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a `brandsentry score` results folder")
    record.set_defaults(handler=run_record)
    summary = add_command(
        actions,
        "summary",
        help="precision and recall per counterfeit kind of labelled scoring runs, and their throughput",
        description="Per RUN_DIR: flag/review/pass counts, precision and recall per counterfeit kind "
        "(the manifest's label and counterfeit_kind columns, carried into the results) and images/s.",
        examples=("review summary data/ws/runs/score/day1 data/ws/runs/score/day2",),
    )
    summary.add_argument(
        "run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="`brandsentry score` results folders"
    )
    summary.set_defaults(handler=run_summary)
    models = add_command(
        actions,
        "models",
        help="registered model versions with their test metrics and reviewed rows used in training",
        description="The registered versions of a model: aliases, test metrics and how many reviewed "
        "listings their training used.",
        examples=("review models workspace=data/ws",),
    )
    models.add_argument("--name", default="brandsentry", help="registered model name (default brandsentry)")
    models.set_defaults(handler=run_models)
    export = add_command(
        actions,
        "export",
        help="every listing of a scoring run as Label Studio tasks or a FiftyOne dataset folder",
        description="Writes OUT/ with every listing of RUN_DIR (all decisions, errors too): score, decision, "
        "flag and review thresholds, claimed brand and product, nearest references and the image path. "
        "labelstudio: tasks.json + labeling_config.xml (verdict choices counterfeit/authentic/unsure), images "
        "as local-file URLs under --root. fiftyone: samples.json + metadata.json, loaded by "
        "fiftyone.Dataset.from_dir(OUT, dataset_type=fiftyone.types.FiftyOneDataset). See docs/review.md.",
        examples=(
            "review export data/ws/runs/score/day2 exports/day2-ls --format labelstudio",
            "review export data/ws/runs/score/day2 exports/day2-fo --format fiftyone",
        ),
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished scoring run folder")
    export.add_argument(
        "out", type=Path, metavar="OUT", help="folder to write (new, empty, or an earlier export)"
    )
    export.add_argument("--format", required=True, dest="fmt", help="labelstudio or fiftyone")
    export.add_argument(
        "--root",
        type=Path,
        default=None,
        help="labelstudio: LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT the image URLs are relative to "
        "(default: the deepest folder holding every image)",
    )
    export.set_defaults(handler=run_export)

    feedback_actions = add_group(
        commands,
        "feedback",
        help="reviewer verdicts: import them, or simulate a reviewer",
        description="Reviewer verdicts on scored listings, stored in the catalog; training reads them "
        "with data.include_feedback=true.",
        examples=("feedback import verdicts.csv workspace=data/ws",),
    )
    verdicts = add_command(
        feedback_actions,
        "import",
        help="store VERDICTS.csv (listing_id, verdict, reviewer, note) with each listing's features",
        description="Store VERDICTS.csv, columns listing_id, verdict (confirmed_counterfeit | "
        "false_positive | authentic | not_ours), reviewer, note, for listings the catalog's ledger holds. Rows "
        "that cannot be stored are listed with their reason; the exit status is 1 when any was rejected.",
        examples=("feedback import data/ws/runs/score/day2/_verdicts.csv workspace=data/ws",),
    )
    verdicts.add_argument("file", type=Path, metavar="VERDICTS.csv")
    verdicts.set_defaults(handler=run_import)
    simulate = add_command(
        feedback_actions,
        "simulate",
        help="answer a run's flag/review queue from ground truth (a labelled listings CSV) into VERDICTS.csv",
        description="Answer the --top highest-scored flag/review listings of RUN_DIR from TRUTH's label "
        "column, wrong at --error-rate, into a VERDICTS.csv for `feedback import`.",
        examples=("feedback simulate data/ws/runs/score/day2 data/demo/listings_day2.csv --top 150",),
    )
    simulate.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a `brandsentry score` results folder"
    )
    simulate.add_argument("truth", type=Path, metavar="TRUTH", help="listings CSV with listing_id and label")
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
    agreement = add_command(
        feedback_actions,
        "agreement",
        help="how often brand answers (portal inbox) and reviewer verdicts agree on listings both judged",
        description="On the listings that both a brand (its portal inbox) and a reviewer judged: how many "
        "there are, how many agree, and the count of each (reviewer, brand) pair of verdicts.",
        examples=("feedback agreement workspace=data/ws",),
    )
    agreement.set_defaults(handler=run_agreement)

    rescan = add_command(
        commands,
        "rescan",
        help="re-score a brand's listings scored since DATE (after its references changed); report changes",
        description="Re-score the listings of --brand whose latest scoring (in the catalog's ledger) is at "
        "or after --since, with the workspace's current index, into review.rescan.out/<brand>-<time>/; "
        "log it as a `rescan` run and print the decisions that changed (all in changes.csv). Run it after "
        "the brand's references changed and `brandsentry index update`.",
        examples=(
            "rescan --brand Acme --since 2026-11-01 workspace=data/ws",
            "rescan --brand Acme --since 2026-11-01T08:00+01:00 --model models:/brandsentry/3 --show 50",
        ),
    )
    rescan.add_argument("--brand", required=True, help="the brand whose listings are re-scored")
    rescan.add_argument(
        "--since", required=True, metavar="DATE", help="ISO date or timestamp (UTC when no zone is given)"
    )
    rescan.add_argument(
        "--model", default=None, metavar="URI|PATH", help="model URI or bundle folder (default: score.model)"
    )
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
    from brandsentry.registry import run_url

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
    print(f"evidence page: {logged.evidence.html} ({logged.evidence.queue}); {logged.evidence.attribution}")
    print(
        f"MLflow run: {run_url(logged.experiment_id, logged.run_id)} (served by `make ui`, or: "
        f"mlflow ui --backend-store-uri {logged.tracking_uri})"
    )


def run_summary(args, overrides: list[str]) -> int:
    from brandsentry.config import load_config
    from brandsentry.review import format_table, truth_table
    from brandsentry.run_folder import read_results, read_summary

    load_config(overrides)  # read nowhere here, but a misspelt key is an error, never silently ignored

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
    _print_agreement(Workspace.from_config(cfg).ensure(), pairs=False)
    return 0


def _print_agreement(workspace, pairs: bool = True) -> None:
    """How brand answers and reviewer verdicts agree, on the listings both judged (training reads both)."""
    from brandsentry.feedback import feedback_agreement

    found = feedback_agreement(workspace)
    if not found.both:
        print("no listing has both a reviewer verdict and a brand answer yet")
        return
    print(
        f"listings judged by both a reviewer and the brand: {found.both}; agreeing: {found.agree} ({found.rate:.0%})"
    )
    for (reviewer, brand), count in sorted(found.pairs.items()) if pairs else ():
        print(f"  reviewer {reviewer:<11} brand {brand:<11} {count}")


def run_export(args, overrides: list[str]) -> int:
    from brandsentry.config import load_config
    from brandsentry.review.export import export_run

    load_config(overrides)  # read nowhere here, but a misspelt key is an error, never silently ignored

    done = export_run(args.run_dir, args.out, args.fmt, args.root)
    print(f"{done.listings} listing(s) of {args.run_dir} -> {', '.join(str(f) for f in done.files)}")
    if done.format == "labelstudio":
        print(
            "Label Studio: start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={done.image_root}, add Local Files storage for that folder, "
            f"paste labeling_config.xml as the labeling interface and import tasks.json"
        )
    else:
        print(
            f"FiftyOne: fiftyone.Dataset.from_dir('{done.out}', dataset_type=fiftyone.types.FiftyOneDataset)"
        )
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

    from brandsentry.config import load_config
    from brandsentry.feedback import VerdictFileError, simulate_verdicts
    from brandsentry.run_folder import VERDICTS_FILE, read_results

    load_config(overrides)  # read nowhere here, but a misspelt key is an error, never silently ignored

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

    _print_agreement(Workspace.from_config(load_config(overrides)).ensure())
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
