"""`brandsentry evaluate SUITE DATA_DIR [key=value ...]`: figures on real photos, printed and logged to MLflow."""

from __future__ import annotations

import argparse
from pathlib import Path

from brandsentry.cli._parser import add_command

SUITES = ("retrieval", "logo_brand", "tampered_logo")

EPILOG = """\
suites:
  retrieval      product R@1, R@5, mAP on a folder-per-product set (GroZi-120 in-situ), any embedder config
  logo_brand     leave-one-out brand R@1 of the embedder and of the logo cue (logos63)
  tampered_logo  counterfeit detection on real package photos with tampered logos (grocery230): ROC-AUC and
                 recall at precision 0.95, overall and per tamper kind, all cues vs. similarity only

Figures go to MLflow experiment `evaluation` in the workspace's store (workspace=DIR; eval.log=false: print
only)."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "evaluate",
        help="evaluate on real photos (retrieval, logo_brand, tampered_logo)",
        description="Run an evaluation suite (configs/eval/SUITE.yaml) on its data directory; any "
        "configs/evaluate.yaml value can be overridden (eval.*, embedder.*, finetune.*).",
        examples=(
            "evaluate retrieval ../shared/data/grozi120 eval.max_queries=500 embedder.input_size=288",
            "evaluate tampered_logo ../shared/data/grocery230 finetune.enabled=true",
        ),
        epilog=EPILOG,
    )
    parser.add_argument("suite", choices=SUITES, metavar="SUITE", help=", ".join(SUITES))
    parser.add_argument("data_dir", type=Path, metavar="DATA_DIR", help="the suite's data set (read only)")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args, overrides: list[str]) -> int:
    from brandsentry.evaluation import evaluate

    data_dir = str(args.data_dir.resolve()).replace("\\", "\\\\").replace("'", "\\'")
    result, run_id = evaluate([f"eval={args.suite}", f"eval.data_dir='{data_dir}'", *overrides])
    print(result.format())
    if run_id:
        print(f"logged to MLflow experiment `evaluation`, run {run_id}")
    return 0
