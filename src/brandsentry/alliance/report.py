"""The monthly transparency report: what the screening did for each brand, in numbers a brand can check.

Per brand and overall, over the listings scored in the month (latest scoring of each, errors left out):
scanned, flagged, confirmed (verdict counterfeit), disputed (verdict authentic on a flagged listing), flag
precision (confirmed flagged / reviewed flagged: measured only where reviewers looked) and the median hours
from scoring to verdict. Written as HTML (with the plot embedded) and JSON under `alliance.out`, and
logged as a run of the MLflow experiment `reports`, beside the `scoring` runs of the same store.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from brandsentry.alliance import AllianceSettings
from brandsentry.alliance.window import AllianceError, window_listings
from brandsentry.config import Workspace
from brandsentry.files import atomic_folder

EXPERIMENT = "reports"
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
METRICS = ("scanned", "flagged", "confirmed", "disputed", "flag_precision", "median_hours_to_verdict")


@dataclass(frozen=True)
class TransparencyReport:
    """Where a report was written and what it says."""

    folder: Path
    numbers: dict  # {"overall": {metric: value}, "brands": {brand: {metric: value}}}
    run_id: str


def period_window(period: str) -> tuple[str, str]:
    """(since, until) ISO UTC timestamps of a `YYYY-MM` month."""
    match = _PERIOD.match(period or "")
    if not match:
        raise AllianceError(f"--period {period!r} is not a month (expected YYYY-MM, e.g. 2026-11)")
    year, month = int(match[1]), int(match[2])
    after = (year + 1, 1) if month == 12 else (year, month + 1)
    return (
        f"{year:04d}-{month:02d}-01T00:00:00.000000+00:00",
        f"{after[0]:04d}-{after[1]:02d}-01T00:00:00.000000+00:00",
    )


def numbers(listings: pd.DataFrame) -> dict:
    """The report's metrics of some listings (None where a metric is undefined, e.g. no verdict yet)."""
    flagged = listings["decision"] == "flag"
    counterfeit, authentic = listings["label"] == "counterfeit", listings["label"] == "authentic"
    reviewed_flags = int((flagged & (counterfeit | authentic)).sum())
    reviewed = listings[counterfeit | authentic]
    hours = (
        pd.to_datetime(reviewed["verdict_at"], utc=True, format="ISO8601")
        - pd.to_datetime(reviewed["scored_at"], utc=True, format="ISO8601")
    ).dt.total_seconds() / 3600
    return {
        "scanned": len(listings),
        "flagged": int(flagged.sum()),
        "confirmed": int(counterfeit.sum()),
        "disputed": int((flagged & authentic).sum()),
        "flag_precision": int((flagged & counterfeit).sum()) / reviewed_flags if reviewed_flags else None,
        "median_hours_to_verdict": float(hours.median()) if len(hours) else None,
    }


def report_numbers(workspace: Workspace, period: str, brand: str | None = None) -> dict:
    """{"period", "brand", "overall": metrics, "brands": {brand: metrics}} of the listings scored in the month."""
    since, until = period_window(period)
    listings = window_listings(workspace, since=since, until=until, brand=brand)
    brands = listings["claimed_brand"].str.strip()
    return {
        "period": period,
        "brand": brand,
        "overall": numbers(listings),
        "brands": {name: numbers(group) for name, group in listings.groupby(brands, sort=True)},
    }


def _figure_png(report: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    brands = list(report["brands"])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(brands) + 1.6))
    y = np.arange(len(brands))
    for offset, (metric, colour) in enumerate(
        (("flagged", "tab:orange"), ("confirmed", "tab:red"), ("disputed", "tab:blue"))
    ):
        values = [report["brands"][b][metric] for b in brands]
        ax.barh(y + (offset - 1) * 0.27, values, height=0.27, color=colour, label=metric)
    ax.set_yticks(y, brands)
    ax.invert_yaxis()
    ax.set(xlabel="listings", title=f"Flagged, confirmed and disputed listings, {report['period']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _page(report: dict, png: bytes) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in ("brand", *METRICS))
    rows = [("all brands", report["overall"]), *report["brands"].items()]
    body = "".join(
        "<tr>"
        + f"<td>{html.escape(name)}</td>"
        + "".join(f"<td>{_cell(m[k])}</td>" for k in METRICS)
        + "</tr>"
        for name, m in rows
    )
    scope = f" — {html.escape(report['brand'])}" if report["brand"] else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Transparency report {report['period']}</title><style>body{{font-family:sans-serif}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>"
        f"<h1>Transparency report {report['period']}{scope}</h1>"
        "<p>Listings scored in the month (latest scoring of each; undecodable images left out). Confirmed: a "
        "reviewer's verdict counterfeit. Disputed: verdict authentic on a flagged listing. Flag precision: "
        "confirmed flagged listings / flagged listings with a verdict. Time to verdict: scoring to import "
        "of the verdict.</p>"
        f"<table><tr>{head}</tr>{body}</table>"
        f"<p><img alt='flags by brand' src='data:image/png;base64,{base64.b64encode(png).decode()}'></p>"
        "</body></html>"
    )


def _report(workspace: Workspace, period: str, brand: str | None) -> tuple[dict, bytes]:
    """The month's numbers and their plot."""
    report = report_numbers(workspace, period, brand)
    if brand is not None:
        report["brand"] = next(iter(report["brands"]))  # as the listings spell it
    return report, _figure_png(report)


def brand_report_page(workspace: Workspace, period: str, brand: str) -> tuple[dict, str]:
    """One brand's month as numbers and a self-contained HTML page, written nowhere and logged nowhere:
    what the portal hands a brand representative, from the same ledger as `write_report`."""
    report, png = _report(workspace, period, brand)
    return report, _page(report, png)


def _log_to_mlflow(cfg, workspace: Workspace, report: dict, folder: Path) -> str:
    """One finished run of the `reports` experiment: the numbers as metrics, the files as artifacts."""
    from mlflow.entities import Metric

    from brandsentry.review.runs import metric_key, mlflow_client
    from brandsentry.review.settings import ReviewSettings

    settings = replace(ReviewSettings.from_config(cfg), experiment=EXPERIMENT)
    client, experiment_id = mlflow_client(workspace, settings)
    tags = {"period": report["period"], "brand": report["brand"] or "all"}
    run_name = f"report {report['period']}" + (f" {report['brand']}" if report["brand"] else "")
    run_id = client.create_run(experiment_id, tags=tags, run_name=run_name).info.run_id
    try:
        values = {f"overall.{k}": v for k, v in report["overall"].items()}
        for brand, metrics in report["brands"].items():
            values.update({metric_key("brand", brand, k): v for k, v in metrics.items()})
        stamp = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        found = [Metric(k, float(v), stamp, 0) for k, v in sorted(values.items()) if v is not None]
        client.log_batch(run_id, metrics=found)
        client.log_artifacts(run_id, str(folder))
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def write_report(
    cfg, workspace: Workspace, settings: AllianceSettings, period: str, brand: str | None = None
):
    """`reports/transparency/<period>[-<brand>]/` (report.html, report.json, flags.png), logged to MLflow."""
    report, png = _report(workspace, period, brand)
    root = Path(settings.out) / "transparency"
    root.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^\w.-]+", "_", report["brand"]) if report["brand"] else ""
    final = root / (f"{period}-{slug}" if slug else period)
    with atomic_folder(final, mode=0o755) as staging:
        (staging / "report.json").write_text(
            json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (staging / "flags.png").write_bytes(png)
        (staging / "report.html").write_text(_page(report, png), encoding="utf-8")
    run_id = _log_to_mlflow(cfg, workspace, report, final)
    return TransparencyReport(folder=final, numbers=report, run_id=run_id)
