"""What a suite hands back (`SuiteResult`) and how it is printed and logged to MLflow (experiment `evaluation`)."""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

EXPERIMENT = "evaluation"
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /:]")


@dataclass(frozen=True)
class SuiteResult:
    """One suite run: headline `figures` (logged as metrics), `params` (what was run), `details` (tables)."""

    suite: str
    figures: dict[str, float]
    params: dict[str, str]
    details: dict = field(default_factory=dict)

    def format(self) -> str:
        lines = [f"{self.suite}: " + ", ".join(f"{k}={v}" for k, v in self.params.items())]
        width = max((len(name) for name in self.figures), default=0)
        for name, value in self.figures.items():
            lines.append(f"  {name.ljust(width)}  {_number(value)}")
        return "\n".join(lines)


def _number(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if float(value).is_integer() and abs(value) >= 2:  # a count
        return str(int(value))
    return f"{value:.4f}"


def metric_name(name: str) -> str:
    """An MLflow-safe metric key (`R@1` -> `R_1`)."""
    return _METRIC_NAME.sub("_", name)


def log_result(tracking_uri: str, artifact_root: Path, result: SuiteResult) -> str:
    """Log `result` as one run of experiment `evaluation`; returns the run id.

    The experiment's artifacts live under `artifact_root` (the workspace's), so the store stays local.
    NaN figures are logged as params ("nan"): MLflow metrics must be numbers.
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(EXPERIMENT, artifact_location=Path(artifact_root).resolve().as_uri())
    )
    run = client.create_run(experiment_id, run_name=result.suite, tags={"suite": result.suite})
    run_id = run.info.run_id
    try:
        for key, value in result.params.items():
            client.log_param(run_id, key, str(value)[:6000])
        for key, value in result.figures.items():
            if isinstance(value, float) and math.isnan(value):
                client.log_param(run_id, metric_name(key), "nan")
            else:
                client.log_metric(run_id, metric_name(key), float(value))
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / f"{result.suite}.json"
            path.write_text(
                json.dumps(
                    {"suite": result.suite, "params": result.params, "figures": result.figures,
                     "details": result.details},
                    indent=2, sort_keys=True, default=str,
                )
            )  # fmt: skip
            client.log_artifact(run_id, str(path))
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id
