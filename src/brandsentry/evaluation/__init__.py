"""`brandsentry evaluate`: how brandsentry does on real photos (suites over data sets nobody here drew).

Suites: `retrieval` (GroZi-120), `logo_brand` (logos63), `tampered_logo` (grocery230 with tampered logos).
Each takes its data directory from the config (`eval.data_dir`), is deterministic for `seed`, returns a
`SuiteResult` and is logged to MLflow experiment `evaluation` in the workspace's store.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from brandsentry.config import Workspace, load_config
from brandsentry.errors import ConfigError
from brandsentry.evaluation.report import EXPERIMENT, SuiteResult, log_result

SUITES = ("retrieval", "logo_brand", "tampered_logo")

__all__ = ["EXPERIMENT", "SUITES", "SuiteResult", "evaluate", "log_result", "run_suite", "suite_settings"]


def suite_settings(cfg: DictConfig):
    """The settings of suite `cfg.eval.suite`, read from `cfg.eval` (each suite has its own settings class)."""
    suite = str(cfg.eval.suite)
    if suite == "retrieval":
        from brandsentry.evaluation.retrieval import RetrievalSettings

        return RetrievalSettings.from_config(cfg.eval)
    if suite == "logo_brand":
        from brandsentry.evaluation.logo_brand import LogoBrandSettings

        return LogoBrandSettings.from_config(cfg.eval)
    if suite == "tampered_logo":
        from brandsentry.evaluation.tampered_logo import TamperedLogoSettings

        return TamperedLogoSettings.from_config(cfg.eval)
    raise ConfigError(f"unknown evaluation suite {suite!r}; one of {list(SUITES)}")


def run_suite(cfg: DictConfig, overrides: Sequence[str] = (), progress: bool = True) -> SuiteResult:
    """Run the suite `cfg.eval.suite`; `overrides` (the command line's) shape the training runs it makes."""
    suite = str(cfg.eval.suite)
    if suite == "retrieval":
        from brandsentry.evaluation.retrieval import run_retrieval

        return run_retrieval(cfg, progress)
    if suite == "logo_brand":
        from brandsentry.evaluation.logo_brand import run_logo_brand

        return run_logo_brand(cfg, progress)
    if suite == "tampered_logo":
        from brandsentry.evaluation.tampered_logo import run_tampered_logo

        return run_tampered_logo(cfg, overrides, progress)
    raise ConfigError(f"unknown evaluation suite {suite!r}; one of {list(SUITES)}")


def evaluate(overrides: Sequence[str], progress: bool = True) -> tuple[SuiteResult, str | None]:
    """Compose configs/evaluate.yaml with `overrides`, run the suite, log it (unless `eval.log=false`).

    Returns the result and the MLflow run id (None when not logged).
    """
    cfg = load_config(list(overrides), config_name="evaluate")
    settings = suite_settings(cfg)  # a misspelt or missing eval.* key fails here, before any work
    result = run_suite(cfg, overrides, progress)
    if not settings.log:
        return result, None
    workspace = Workspace.from_config(cfg).ensure()
    return result, log_result(workspace.mlflow_uri, workspace.mlflow_artifacts, result)
