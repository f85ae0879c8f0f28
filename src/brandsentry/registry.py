"""The MLflow adapter: training runs' records, the model registry, and scoring bundles as pyfunc models.

Everything brandsentry says to MLflow lives here, downstream of the bundle, so that the bundle format, the
scorer's local path and the classifier never import MLflow (which costs seconds per process):

- where the store is (`tracking_uri`, `mlflow_store`; a run's UI address: `run_url`) and what a training run logs beside its metrics
  (`flat_params`, `thresholds_table`, `log_test_plots`);
- the bundle as a models-from-code pyfunc (`write_pyfunc_code`, `pyfunc_signature`, `BundlePythonModel`);
- the registry: `promote`, `auto_promotion`, and `open_bundle`/`load_bundle`, which resolve
  `models:/NAME@ALIAS`, `models:/NAME/N` and `runs:/RUN_ID/PATH` to a downloaded bundle directory.
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from brandsentry.bundle import BundleError, ScoringBundle, bundle_root
from brandsentry.classify import CascadeClassifier
from brandsentry.config import Workspace
from brandsentry.errors import BrandsentryError
from brandsentry.files import publish_once

CHAMPION = "champion"
BUNDLE_ARTIFACT = "bundle"  # the pyfunc artifact holding the bundle directory
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


class PromotionError(BrandsentryError):
    """A model version that cannot be promoted (unknown name or version)."""


# ---- the store -----------------------------------------------------------------------------------------------
def tracking_uri(cfg: DictConfig) -> str:
    return str(cfg.logger.tracking_uri or Workspace.from_config(cfg).mlflow_uri)


@contextmanager
def mlflow_store(uri: str | None) -> Iterator[None]:
    """Point fluent MLflow (runs, log_model, artifact resolution) at `uri` for a while, then restore it.

    `models:/` and `runs:/` downloads resolve through the global tracking and registry URIs, whatever
    `tracking_uri` is passed to them; None leaves both as they are.
    """
    if uri is None:
        yield
        return
    import mlflow

    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


UI_PORT = 5000  # `make ui`'s default PORT


def run_url(experiment_id: str, run_id: str, port: int = UI_PORT) -> str:
    """Where a run opens in the MLflow UI that `make ui` serves (127.0.0.1:PORT)."""
    return f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{run_id}"


# ---- what a training run logs ------------------------------------------------------------------------------
def experiment_id(client, name: str, workspace: Workspace) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=workspace.mlflow_artifacts.as_uri())


def metric_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as `a.b.c -> value` params (lists as their string form)."""
    flat: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix.rstrip(".")] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def log_test_plots(
    y: np.ndarray,
    scores: np.ndarray,
    decisions: np.ndarray,
    model: CascadeClassifier,
    importance: pd.Series,
    target_precision: float,
) -> None:
    """The test split's PR curve, reliability, score histogram, confusion and feature importance figures."""
    import matplotlib.pyplot as plt
    import mlflow

    from brandsentry import plots

    figures = {
        "plots/pr_curve.png": plots.pr_curve(y, scores, target_precision),
        "plots/calibration.png": plots.reliability(y, scores),
        "plots/score_histogram.png": plots.score_histogram(scores, y, model.full.global_threshold),
        "plots/feature_importance.png": plots.feature_importance(
            list(importance.index), importance.to_numpy()
        ),
        "plots/confusion.png": plots.confusion(y, decisions == "flag"),
    }
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
        plt.close(figure)


def thresholds_table(model: CascadeClassifier) -> pd.DataFrame:
    rule = model.thresholds()
    rows = [{"brand": "*", "threshold": rule["global"], "source": "global"}]
    rows += [{"brand": b, "threshold": t, "source": "brand"} for b, t in rule["brands"].items()]
    return pd.DataFrame(rows)


# ---- the bundle as a pyfunc ------------------------------------------------------------------------------
@functools.cache
def _pyfunc_class() -> type:
    """`BundlePythonModel`, defined on first use: importing MLflow costs seconds that scoring (and each of
    its lanes) need not pay when the bundle is a local path."""
    import mlflow.pyfunc

    class BundlePythonModel(mlflow.pyfunc.PythonModel):
        """The bundle as an MLflow pyfunc: `predict(listings DataFrame)` returns `score_frame`'s result."""

        def load_context(self, context) -> None:
            self.bundle = ScoringBundle.load(context.artifacts[BUNDLE_ARTIFACT])

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            return self.bundle.score_frame(pd.DataFrame(model_input))

    BundlePythonModel.__module__, BundlePythonModel.__qualname__ = __name__, "BundlePythonModel"
    return BundlePythonModel


def __getattr__(name: str):
    if name == "BundlePythonModel":  # the models-from-code file imports it by this name
        return _pyfunc_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pyfunc_signature():
    """The pyfunc's input columns: the ones cues read (image_path and claimed_brand required), as strings."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    required = {"image_path", "claimed_brand"}
    columns = ("listing_id", "image_path", "claimed_brand", "claimed_product", "seller_id")
    return ModelSignature(
        inputs=Schema([ColSpec("string", name, required=name in required) for name in columns])
    )


def write_pyfunc_code(directory: Path) -> Path:
    """The models-from-code file MLflow logs for the pyfunc (no pickled Python object in the artifact)."""
    path = Path(directory) / "brandsentry_pyfunc.py"
    path.write_text(
        '"""MLflow pyfunc entry point of a brandsentry scoring bundle (models from code)."""\n\n'
        "import mlflow.models\n\n"
        "from brandsentry.registry import BundlePythonModel\n\n"
        "mlflow.models.set_model(BundlePythonModel())\n",
        encoding="utf-8",
    )
    return path


# ---- the registry --------------------------------------------------------------------------------------------
def promote(uri: str, model_name: str, version: str | int, alias: str = CHAMPION) -> str:
    """Point `alias` at `version` of `model_name` ("3" or "NAME/3"); returns "NAME/3"."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    text = str(version)
    if "/" in text:
        model_name, text = text.rsplit("/", 1)
    if not text.isdigit():
        raise PromotionError(f"model version {version!r} is not a number (or NAME/NUMBER)")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.get_model_version(model_name, text)
    except MlflowException:
        raise PromotionError(
            f"cannot promote {model_name}/{text}: {_not_registered(client, model_name, f'version {text}')}"
        ) from None
    try:
        client.set_registered_model_alias(model_name, alias, text)
    except MlflowException as exc:
        raise PromotionError(f"cannot set @{alias} on {model_name}/{text}: {exc.message}") from None
    return f"{model_name}/{text}"


def _not_registered(client, model_name: str, wanted: str) -> str:
    """Why `wanted` ("version 3", "alias @nope") of `model_name` does not resolve, with what does exist."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(model_name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        if not names:
            return "no model is registered yet; run `brandsentry train listings=MANIFEST` first"
        return f"no registered model {model_name!r}; registered models: {', '.join(names)}"
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{model_name}'"))
    aliases = ", ".join(f"@{a} -> {v}" for a, v in sorted(model.aliases.items())) or "none"
    listed = ", ".join(map(str, versions)) or "none (run `brandsentry train listings=MANIFEST`)"
    return f"{model_name} has no {wanted}; its versions: {listed}; its aliases: {aliases}"


def auto_promotion(
    client, model_name: str, metric: str, value: float, validation_digest: str
) -> tuple[bool, str]:
    """Whether a new version should become champion, and why (stored champion metric, same validation digest)."""
    from mlflow.exceptions import MlflowException

    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return True, "no champion yet"
    run = client.get_run(champion.run_id)
    their_digest = run.data.tags.get("validation_digest")
    if their_digest != validation_digest:
        return False, (
            f"champion {model_name}/{champion.version} was validated on another set "
            f"(digest {str(their_digest)[:12]}...): promote by hand after comparing"
        )
    theirs = run.data.metrics.get(metric_key(metric))
    if theirs is None:
        return True, f"champion {model_name}/{champion.version} has no {metric}"
    if value > theirs:
        return True, f"{metric} {value:.4f} beats champion {model_name}/{champion.version} ({theirs:.4f})"
    return (
        False,
        f"{metric} {value:.4f} does not beat champion {model_name}/{champion.version} ({theirs:.4f})",
    )


def open_bundle(
    uri: str | Path, tracking_uri: str | None = None, cache_dir: Path | None = None
) -> ScoringBundle:
    """A bundle directory, or `models:/NAME@ALIAS`, `models:/NAME/N`, `runs:/RUN_ID/PATH` via MLflow.

    Registry and run URIs are downloaded under `cache_dir` (a fresh temp dir when None); a registered
    version is immutable, so one already downloaded there is reused.
    """
    text = str(uri)
    if text.startswith("models:/"):
        return ScoringBundle(*_download_registered(text, tracking_uri, cache_dir))
    if text.startswith("runs:/"):
        return ScoringBundle(_download(text, tracking_uri, cache_dir, _slug(text)), version=text)
    return ScoringBundle.load(text)


def load_bundle(uri: str | Path, workspace: Workspace, tracking_uri: str | None = None) -> ScoringBundle:
    """`open_bundle` against a workspace's MLflow store, caching downloads under workspace/bundles."""
    return open_bundle(
        uri, tracking_uri=tracking_uri or workspace.mlflow_uri, cache_dir=workspace.root / "bundles"
    )


def _download_registered(uri: str, tracking_uri: str | None, cache_dir: Path | None) -> tuple[Path, str]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    match = _MODEL_URI.match(uri)
    if match is None:
        raise BundleError(f"model URI {uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = match["name"]
    wanted = f"alias @{match['alias']}" if match["alias"] else f"version {match['version']}"
    try:
        if match["alias"]:
            found = client.get_model_version_by_alias(name, match["alias"])
        else:
            found = client.get_model_version(name, match["version"])
    except MlflowException:
        raise BundleError(f"{uri}: {_not_registered(client, name, wanted)}") from None
    version = f"{name}/{found.version}"
    return _download(f"models:/{version}", tracking_uri, cache_dir, _slug(version)), version


def _download(uri: str, tracking_uri: str | None, cache_dir: Path | None, key: str) -> Path:
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    if cache_dir is not None:
        target = Path(cache_dir) / key
        if target.is_dir():
            return bundle_root(target)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache_dir))
    try:
        with mlflow_store(tracking_uri):
            download_artifacts(artifact_uri=uri, dst_path=str(temp), tracking_uri=tracking_uri)
        root = bundle_root(temp)
    except MlflowException as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise BundleError(f"{uri}: {exc.message}") from None
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    if cache_dir is None:
        return root
    publish_once(temp, target)  # another process may have cached the same version meanwhile: then theirs
    return bundle_root(target)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")
