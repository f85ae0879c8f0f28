"""Drift of a scoring day against the trailing days: PSI over fixed bins of the score and top-1 similarity.

Each run's fingerprint is a set of fixed-bin histograms (overall and per claimed brand), small enough to
log as an artifact; the baseline is the pooled histograms of the trailing daily runs. PSI of two samples
of one distribution is not zero but about (bins - 1)(1/n + 1/m), so the bound applies to the excess over
that noise level: a brand with few listings does not raise a warning from sampling noise alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from brandsentry.review.settings import DriftSettings


def histogram_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in fixed bins; values outside the range fall into the end bins, NaN is left out."""
    values = np.asarray(values, dtype=np.float64)
    values = np.clip(values[np.isfinite(values)], edges[0], edges[-1])
    return np.histogram(values, bins=edges)[0].astype(np.int64)


def run_histograms(results: pd.DataFrame, drift: DriftSettings) -> dict:
    """The run's drift fingerprint: fixed-bin counts of each metric, overall ('*') and per claimed brand."""
    ok = results[results["decision"].astype(str) != "error"]
    brands = ok["claimed_brand"].astype(str).str.strip()
    scopes: dict[str, dict[str, list[int]]] = {}
    for scope, rows in [("*", ok), *((b, ok[brands == b]) for b in sorted(brands.unique()))]:
        scopes[scope] = {
            metric: histogram_counts(rows[metric].to_numpy(np.float64), drift.edges(metric)).tolist()
            for metric in drift.metrics
            if metric in rows.columns
        }
    return {
        "bins": drift.bins,
        "ranges": {name: [low, high] for name, (low, high) in drift.ranges.items()},
        "scopes": scopes,
    }


def psi(baseline: np.ndarray, current: np.ndarray, epsilon: float = 1e-4) -> float:
    """Population stability index of `current` against `baseline` (bin counts; empty bins floored)."""
    baseline = np.asarray(baseline, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if baseline.shape != current.shape or baseline.sum() <= 0 or current.sum() <= 0:
        raise ValueError(
            f"PSI needs two non-empty histograms of one shape, got {baseline.shape}/{current.shape}"
        )
    p = np.clip(baseline / baseline.sum(), epsilon, None)
    q = np.clip(current / current.sum(), epsilon, None)
    return float(np.sum((q - p) * np.log(q / p)))


def psi_noise(bins: int, rows: int, baseline_rows: int) -> float:
    """Expected PSI of two samples of one distribution: (bins - 1) (1/n + 1/m), from its chi-square limit."""
    return (bins - 1) * (1.0 / rows + 1.0 / baseline_rows)


@dataclass(frozen=True)
class DriftCheck:
    scope: str  # '*' for all brands, else the claimed brand
    metric: str
    psi: float
    noise: float
    rows: int
    baseline_rows: int
    warning: bool


@dataclass(frozen=True)
class DriftReport:
    baseline_runs: tuple[str, ...]  # MLflow run ids pooled into the baseline
    bound: float
    checks: tuple[DriftCheck, ...]

    @property
    def warnings(self) -> tuple[DriftCheck, ...]:
        return tuple(check for check in self.checks if check.warning)

    def describe(self) -> str:
        """'Brand:metric psi=… (noise …)' for each warning, worst first."""
        worst = sorted(self.warnings, key=lambda c: c.psi - c.noise, reverse=True)
        return "; ".join(
            f"{'all brands' if c.scope == '*' else c.scope}:{c.metric} psi={c.psi:.3f} (noise {c.noise:.3f})"
            for c in worst
        )

    def to_dict(self) -> dict:
        return {
            "baseline_runs": list(self.baseline_runs),
            "bound": self.bound,
            "checks": [vars(check) for check in self.checks],
        }


def compare_histograms(
    current: dict, history: Sequence[dict], drift: DriftSettings, run_ids=()
) -> DriftReport:
    """PSI of each (scope, metric) of `current` against the pooled `history` histograms.

    A scope is compared when it has `min_rows` today and in the baseline. It warns when its PSI exceeds
    the expected PSI of two same-distribution samples of those sizes by more than `bound`, so that a
    small brand's sampling noise alone does not raise a warning.
    """
    compatible = [
        h for h in history if h.get("bins") == current["bins"] and h.get("ranges") == current["ranges"]
    ]
    checks = []
    for scope, metrics in current["scopes"].items():
        for metric, counts in metrics.items():
            counts = np.asarray(counts, dtype=np.int64)
            pooled = np.zeros_like(counts)
            for past in compatible:
                pooled += np.asarray(past["scopes"].get(scope, {}).get(metric, np.zeros_like(counts)))
            rows, baseline_rows = int(counts.sum()), int(pooled.sum())
            if rows < drift.min_rows or baseline_rows < drift.min_rows:
                continue
            value = psi(pooled, counts)
            noise = psi_noise(drift.bins, rows, baseline_rows)
            checks.append(
                DriftCheck(scope, metric, value, noise, rows, baseline_rows, value - noise > drift.bound)
            )
    return DriftReport(tuple(run_ids), drift.bound, tuple(checks))
