"""Suite `tampered_logo`: the counterfeit classifier on real package photos with tampered logos (grocery230).

The benchmark (`evaluation.tamper`) is run through the product's own pipeline in a scratch workspace:
references import (product photos and logo crops) -> wordmarks (OCR of each reference logo) -> index
build -> `brandsentry train` (features with every cue, cascade fitted on the train packages, thresholds on
validation) -> test-split figures; then the same training with the ablation experiment (similarity cues
only). Optionally the embedder is first fine-tuned on the references (`finetune.enabled=true`).
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from brandsentry.config import Workspace, load_config
from brandsentry.errors import ConfigError
from brandsentry.evaluation.report import SuiteResult
from brandsentry.evaluation.tamper import Benchmark, BenchmarkSettings, build_benchmark
from brandsentry.settings import load_settings

# Config roots of configs/train.yaml that a command-line override of `brandsentry evaluate` may also set
# for the training runs; workspace, listings and paths belong to the scratch workspace.
TRAIN_ROOTS = {
    "images",
    "embedder",
    "index",
    "cues",
    "classifier",
    "data",
    "logger",
    "experiment",
    "seed",
    "features",
}
_OVERRIDE_ROOT = re.compile(r"^(?:\+{1,2}|~)?(?P<root>[A-Za-z_][\w\-]*)")
MARKER = "benchmark.fingerprint"
# What the suite reports from a training run's test metrics (`test.<key>`), under the same key.
HEADLINE = ("roc_auc", "pr_auc", "recall_at_p95", "recall_at_p90", "flag_precision", "flag_recall",
            "escalation_rate", "full.roc_auc", "cheap.roc_auc", "n", "positives")  # fmt: skip
VALIDATION = ("roc_auc", "recall_at_p95", "flag_precision", "flag_recall")


@dataclass(frozen=True)
class TamperedLogoSettings:
    """The `eval` config of suite `tampered_logo` (configs/eval/tampered_logo.yaml), validated."""

    suite: str
    data_dir: Path  # images/*.jpg and labels/*.txt (YOLO polygons of the logo region)
    benchmark_dir: str | None  # where the benchmark is written; None (or empty): inside the scratch workspace
    work_dir: str | None  # the scratch workspace (kept); None (or empty): a temporary directory
    ablation: str | None  # experiment config of the ablation run; None (or empty): no ablation
    train_overrides: tuple[str, ...]  # overrides of both training runs (the command line's come after them)
    log: bool  # log to MLflow experiment `evaluation`
    benchmark: BenchmarkSettings

    def __post_init__(self):
        if self.suite != "tampered_logo":
            raise ConfigError(f"eval.suite must be 'tampered_logo' for these settings, got {self.suite!r}")

    @classmethod
    def from_config(cls, eval_cfg) -> TamperedLogoSettings:
        return load_settings(cls, eval_cfg, "eval")


def quoted(value: str | Path) -> str:
    """A Hydra override value that survives any path (quotes and backslashes escaped)."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def training_overrides(overrides: Sequence[str], drop_experiment: bool = False) -> list[str]:
    """The command-line overrides that also shape `brandsentry train` (embedder, cues, classifier, ...)."""
    kept = []
    for override in overrides:
        found = _OVERRIDE_ROOT.match(override)
        root = found["root"] if found else ""
        if root in TRAIN_ROOTS and not (drop_experiment and root == "experiment"):
            kept.append(override)
    return kept


def report_figures(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Headline and per-kind test figures of a training run, keys prefixed with `prefix`.

    The validation split's headline (`val.*`) and the cue costs (`cost.*`, ms per listing) come along:
    choices between variants are made on validation, never on the test figures.
    """
    figures = {f"{prefix}{key}": metrics[f"test.{key}"] for key in HEADLINE if f"test.{key}" in metrics}
    for key in sorted(metrics):
        if key.startswith("test.kind."):
            figures[prefix + key.removeprefix("test.")] = metrics[key]
    for key in VALIDATION:
        if f"val.{key}" in metrics:
            figures[f"{prefix}val.{key}"] = metrics[f"val.{key}"]
    figures.update({prefix + key: value for key, value in sorted(metrics.items()) if key.startswith("cost.")})
    return figures


def _import_references(cfg: DictConfig, workspace: Workspace, benchmark: Benchmark) -> dict[str, float]:
    from brandsentry.catalog import Catalog
    from brandsentry.ingest import ImageStore, IngestSettings, import_references

    with Catalog.open(workspace) as catalog:
        report = import_references(
            catalog,
            ImageStore(workspace.image_store),
            benchmark.references,
            submitted_by="evaluate:tampered_logo",
            **IngestSettings.from_config(cfg).as_kwargs(),
        )
        with benchmark.wordmarks.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                catalog.set_wordmarks(row["brand"], [row["wordmark"]])
    return {
        "import_accepted": float(len(report.accepted)),
        "import_duplicate": float(len(report.duplicates)),
        "import_rejected": float(len(report.rejected)),
    }


def update_index(train_cfg: DictConfig, workspace: Workspace, progress: bool) -> tuple[int, list]:
    """(live references, references that could not be indexed) after bringing the index in step.

    An index that already matches the catalog, the embedder and the factory is left alone: a rebuild
    would only bump its version, and the version is part of the training features cache key.
    """
    from brandsentry.catalog import Catalog
    from brandsentry.embed import Embedder
    from brandsentry.index import latest_manifest, saved_versions
    from brandsentry.index_sync import update_from_catalog

    embedder = Embedder.from_config(train_cfg.embedder)
    if saved_versions(workspace.index_dir):
        manifest = latest_manifest(workspace.index_dir)
        identity = json.loads(json.dumps(embedder.identity.to_dict(), sort_keys=True))
        with Catalog.open(workspace) as catalog:
            pending = catalog.to_index() or catalog.to_remove()
        if not pending and manifest.embedder == identity and manifest.factory == str(train_cfg.index.factory):
            return manifest.count, []
    report = update_from_catalog(train_cfg, embedder, rebuild=True, progress=progress)
    return report.count, list(report.failed)


def _finetune(cfg: DictConfig, benchmark: Benchmark, out: Path, progress: bool) -> dict[str, str]:
    from brandsentry.finetune import finetune_embedder

    with benchmark.references.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    paths = [benchmark.root / row["image_path"] for row in rows]  # absolute paths stay absolute
    report = finetune_embedder(cfg, paths, [row["brand"] for row in rows], out, progress)
    return report.params()


def _claim(root: Path, settings: BenchmarkSettings) -> None:
    """Make `root` the scratch directory of this benchmark; one holding another benchmark's workspace is refused."""
    marker = root / MARKER
    if marker.is_file() and marker.read_text().strip() != settings.fingerprint():
        raise ConfigError(
            f"eval.work_dir {root} holds the workspace of another benchmark; give an empty or new directory"
        )
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(settings.fingerprint() + "\n")


def run_tampered_logo(cfg: DictConfig, overrides: Sequence[str] = (), progress: bool = True) -> SuiteResult:
    """Generate the benchmark, run the pipeline for all cues and the ablation, report test-split figures."""
    from brandsentry.finetune import FinetuneSettings
    from brandsentry.train import train

    suite = TamperedLogoSettings.from_config(cfg.eval)
    finetune = FinetuneSettings.from_config(cfg.finetune)
    data_dir = suite.data_dir.expanduser().resolve()
    settings = suite.benchmark
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="brandsentry-tampered-") as scratch:
        root = Path(suite.work_dir).expanduser().resolve() if suite.work_dir else Path(scratch)
        _claim(root, settings)
        bench_dir = Path(suite.benchmark_dir).expanduser() if suite.benchmark_dir else root / "benchmark"
        benchmark = build_benchmark(data_dir, bench_dir, settings, progress)
        generated_s = time.perf_counter() - started

        pinned = [
            f"workspace={quoted(root / 'workspace')}",
            f"listings={quoted(benchmark.listings.resolve())}",
        ]
        params: dict[str, str] = {}
        if finetune.enabled:
            weights = root / "finetuned.pth"
            params.update(_finetune(cfg, benchmark, weights, progress))
            pinned.append(f"embedder.weights={quoted(weights)}")
        suite_overrides = list(suite.train_overrides)
        train_cfg = load_config(
            [*suite_overrides, *training_overrides(overrides), *pinned], config_name="train"
        )
        workspace = Workspace.from_config(train_cfg).ensure()
        counts = _import_references(cfg, workspace, benchmark)
        indexed, not_indexed = update_index(train_cfg, workspace, progress)
        trained = train(train_cfg, progress=progress)
        figures = report_figures(trained.metrics)
        ablation = suite.ablation
        if ablation:
            ablation_cfg = load_config(
                [
                    *suite_overrides,
                    *training_overrides(overrides, drop_experiment=True),
                    *pinned,
                    f"experiment={ablation}",
                ],
                config_name="train",
            )
            figures.update(report_figures(train(ablation_cfg, progress=progress).metrics, f"{ablation}."))
    summary = benchmark.summary
    figures.update(
        packages=float(summary["packages"]),
        listings=float(summary["listings"]),
        indexed_references=float(indexed),
        **counts,
        generate_s=generated_s,
        wall_s=time.perf_counter() - started,
    )
    params.update(
        data_dir=str(data_dir),
        seed=str(cfg.seed),
        benchmark_fingerprint=settings.fingerprint(),
        kinds="+".join(settings.kinds),
        max_packages=str(settings.max_packages),
        ablation=str(ablation),
        embedder=train_cfg.embedder.arch,
        embedder_weights=str(train_cfg.embedder.weights),
        classifier=str(train_cfg.classifier.kind),
        train_overrides=" ".join(suite_overrides),
        work_dir=str(root) if suite.work_dir else "(temporary)",
        training_run=trained.run_id,
    )
    details = {
        "benchmark": summary,
        "training_metrics": trained.metrics,
        "index_not_indexed": not_indexed,
    }
    return SuiteResult("tampered_logo", figures, params, details)
