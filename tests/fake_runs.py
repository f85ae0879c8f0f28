"""Scoring-run folders shaped like `brandsentry score` output, for the review and feedback tests.

They follow the results schema (one row per listing: manifest columns, score, decision, threshold and
review_threshold, neighbours, every cue column, evidence JSON, scored_at), so these tests do not need a trained model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from brandsentry.feedback import CUE_COLUMNS

BRANDS = ("Acme", "Borealis", "Cyrano")


def make_results(
    n: int = 60,
    seed: int = 0,
    day: int = 1,
    brands: tuple[str, ...] = BRANDS,
    score_shift: float = 0.0,
    image_paths: list[str] | None = None,
    top_ref_ids: list[list[int]] | None = None,
    scored_at: str = "2026-11-01T06:00:00+00:00",
    model_version: str = "1",
) -> pd.DataFrame:
    """Labelled results: counterfeits score high (plus `score_shift`), two rows are decode errors."""
    rng = np.random.default_rng(seed)
    label = np.where(rng.random(n) < 0.4, "counterfeit", "authentic")
    kinds = np.where(label == "counterfeit", rng.choice(["misspelled_wordmark", "stolen_photo"], n), "")
    base = np.where(label == "counterfeit", rng.beta(5, 2, n), rng.beta(2, 5, n))
    score = np.clip(base + score_shift, 0.0, 1.0)
    decision = np.where(score >= 0.7, "flag", np.where(score >= 0.35, "review", "pass")).astype(object)
    frame = pd.DataFrame(
        {
            "listing_id": [f"d{day}-{i:05d}" for i in range(n)],
            "image_path": image_paths or [f"/nowhere/d{day}-{i:05d}.jpg" for i in range(n)],
            "claimed_brand": [brands[i % len(brands)] for i in range(n)],
            "claimed_product": [f"{brands[i % len(brands)].lower()}-p{i % 2}" for i in range(n)],
            "title": [f"listing {i}" for i in range(n)],
            "price": [f"{10 + i}.00" for i in range(n)],
            "seller_id": [f"s{i % 7:03d}" for i in range(n)],
            "label": label,
            "counterfeit_kind": kinds,
            "score": score,
            "decision": decision,
            "threshold": 0.7,
            "review_threshold": 0.35,
        }
    )
    sims = np.clip(0.9 - 0.3 * score + rng.normal(0, 0.03, n), 0, 1)
    frame["top_ref_ids"] = top_ref_ids or [[1, 2, 3] for _ in range(n)]
    frame["top_similarities"] = [[float(s), float(s) - 0.05, float(s) - 0.1] for s in sims]
    frame["top_ref_brand"] = [brands[(i + 1) % len(brands)] for i in range(n)]
    frame["top_ref_product"] = [f"{brands[(i + 1) % len(brands)].lower()}-p0" for i in range(n)]
    for j, name in enumerate(CUE_COLUMNS):
        frame[name] = rng.normal(j % 5, 1.0, n)
    frame["sim_top1"] = sims
    frame["logo_verified"] = (score < 0.5).astype(float)
    frame["escalated"] = True
    frame["error"] = None
    frame["error_detail"] = ""
    errors = [n - 2, n - 1]
    frame.loc[errors, "decision"] = "error"
    frame.loc[errors, "error"] = ["decode_failed", "unknown_brand"]
    frame.loc[errors, "score"] = np.nan
    frame.loc[errors, list(CUE_COLUMNS)] = np.nan
    frame["model_version"] = model_version
    frame["evidence"] = [json.dumps({"cues": {}, "reasons": {}}) for _ in range(n)]
    frame["scored_at"] = scored_at
    return frame


def write_run(out_dir: Path, results: pd.DataFrame, parts: int = 2, images_per_s: float = 12.5) -> Path:
    """Write `results` as a finished scoring run: part files, _summary.json, _SUCCESS."""
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = pa.Schema.from_pandas(results, preserve_index=False)  # one schema for every part, as the scorer
    for index, chunk in enumerate(np.array_split(np.arange(len(results)), parts)):
        table = pa.Table.from_pandas(results.iloc[chunk], schema=schema, preserve_index=False)
        pq.write_table(table, out_dir / f"part-{index:05d}.parquet")
    summary = {
        "listings": len(results),
        "images_per_s": images_per_s,
        "elapsed_s": len(results) / images_per_s,
    }
    (out_dir / "_summary.json").write_text(json.dumps(summary))
    (out_dir / "_SUCCESS").write_text("")
    return out_dir
