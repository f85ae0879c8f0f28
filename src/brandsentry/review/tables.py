"""Ground truth against decisions (labelled days, the demo's summary) and plain-text tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from brandsentry.review.settings import ReviewError


def fmt_number(value: float, digits: int = 3) -> str:
    """A number for people: fixed digits, '—' for NaN or None."""
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def truth_table(
    results: pd.DataFrame, label_column: str = "label", kind_column: str = "counterfeit_kind"
) -> pd.DataFrame:
    """Precision and recall of `flag` against ground truth, per counterfeit kind, from labelled results.

    A kind's precision counts that kind's flagged counterfeits against every flagged authentic listing
    (the kinds share one pool of false positives); `recall+review` counts listings sent to review too.
    """
    for column in (label_column, kind_column):
        if column not in results.columns:
            raise ReviewError(
                f"results carry no {column!r} column: score a labelled manifest to compare with truth"
            )
    labels = results[label_column].astype(str).str.strip()
    kinds = results[kind_column].fillna("").astype(str).str.strip()
    decisions = results["decision"].astype(str)
    false_flags = int(((labels == "authentic") & (decisions == "flag")).sum())
    rows = []
    groups = [
        (kind, (labels == "counterfeit") & (kinds == kind))
        for kind in sorted(set(kinds[labels == "counterfeit"]))
    ]
    groups.append(("all counterfeits", labels == "counterfeit"))
    for name, mask in groups:
        flagged = int((mask & (decisions == "flag")).sum())
        reviewed = int((mask & (decisions == "review")).sum())
        n = int(mask.sum())
        rows.append(
            {
                "kind": name or "(none)",
                "n": n,
                "flag": flagged,
                "review": reviewed,
                "error": int((mask & (decisions == "error")).sum()),
                "precision": flagged / (flagged + false_flags) if flagged + false_flags else math.nan,
                "recall": flagged / n if n else math.nan,
                "recall+review": (flagged + reviewed) / n if n else math.nan,
            }
        )
    authentic = labels == "authentic"
    rows.append(
        {
            "kind": "authentic",
            "n": int(authentic.sum()),
            "flag": false_flags,
            "review": int((authentic & (decisions == "review")).sum()),
            "error": int((authentic & (decisions == "error")).sum()),
            "precision": math.nan,
            "recall": math.nan,
            "recall+review": math.nan,
        }
    )
    return pd.DataFrame(rows)


def format_table(frame: pd.DataFrame) -> str:
    """A fixed-width text table (NaN shown as '—')."""
    text = frame.copy()
    for column in text.columns:
        if text[column].dtype.kind == "f":
            text[column] = [fmt_number(v, 3) for v in text[column]]
    text = text.astype(str)
    widths = {c: max(len(c), *(len(v) for v in text[c])) for c in text.columns}
    line = "  ".join(c.ljust(widths[c]) if i == 0 else c.rjust(widths[c]) for i, c in enumerate(text.columns))
    out = [line, "-" * len(line)]
    for _, row in text.iterrows():
        out.append(
            "  ".join(
                row[c].ljust(widths[c]) if i == 0 else row[c].rjust(widths[c])
                for i, c in enumerate(text.columns)
            )
        )
    return "\n".join(out)
