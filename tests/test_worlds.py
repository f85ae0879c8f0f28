"""train -> score on many freshly generated worlds that no other test uses: other seeds and sizes, manifests
without each optional column, a single brand, a brand without logo references, no split column.

Each world goes through the CLI as a new user would (refs import, brands import, sellers import, index
build, train), then the day is scored with the trained bundle and read back as a Parquet dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from brandsentry.bundle import ScoringBundle
from brandsentry.cli import main
from brandsentry.config import load_config
from brandsentry.scoring import score_run
from brandsentry.train import run_hydra_train
from conftest import TINY_TRAIN_OVERRIDES

OPTIONAL = ("claimed_product", "title", "price", "seller_id")

# (id, synth overrides, manifest columns to drop, logo references of the first brand removed)
WORLDS = [
    ("seed31", ["seed=31", "synth.listings=90"], (), False),
    ("seed32_no_optional_columns", ["seed=32", "synth.listings=100"], OPTIONAL, False),
    ("seed33_no_seller_id", ["seed=33", "synth.listings=80", "synth.brands=2"], ("seller_id",), False),
    ("seed34_single_brand", ["seed=34", "synth.brands=1", "synth.products_per_brand=6"], (), False),
    ("seed35_brand_without_logos", ["seed=35", "synth.listings=90"], ("title", "price"), True),
    ("seed36_no_split_column", ["seed=36", "synth.brands=4", "synth.listings=120"], ("split",), False),
]


def build_world(root: Path, synth: list[str], drop: tuple[str, ...], no_logos: bool) -> tuple[Path, tuple]:
    world, workspace = root / "world", root / "workspace"
    assert main(["synth", "world", "synth=tiny", *synth, f"out={world}"]) == 0
    references = pd.read_csv(world / "references.csv", dtype=str, keep_default_na=False)
    if no_logos:
        first = references["brand"].iloc[0]
        references = references[~((references["brand"] == first) & (references["view"] == "logo"))]
        references.to_csv(world / "references.csv", index=False)
    listings = pd.read_csv(world / "listings_day1.csv", dtype=str, keep_default_na=False)
    listings.drop(columns=list(drop)).to_csv(world / "listings.csv", index=False)
    overrides = (f"workspace={workspace}", "embedder=tiny_random")
    for step in (
        ["refs", "import", str(world / "references.csv"), *overrides],
        ["brands", "import", str(world / "brands.json"), *overrides],
        ["sellers", "import", str(world / "authorized_sellers.csv"), *overrides],
        ["index", "build", *overrides],
    ):
        assert main(step) == 0, step
    return world / "listings.csv", overrides


@pytest.mark.slow
@pytest.mark.parametrize(("synth", "drop", "no_logos"), [w[1:] for w in WORLDS], ids=[w[0] for w in WORLDS])
def test_train_then_score_on_a_fresh_world(tmp_path, synth, drop, no_logos):
    manifest, overrides = build_world(tmp_path, synth, drop, no_logos)
    (result,) = run_hydra_train([f"listings={manifest}", *overrides, *TINY_TRAIN_OVERRIDES])
    metadata = json.loads((result.bundle_dir / "bundle.json").read_text())
    bundle = ScoringBundle.load(result.bundle_dir)
    # the bundle records what the model reads; dropped cues are named with a reason and not read
    assert metadata["model_feature_names"] == bundle.model.feature_names
    assert set(metadata["model_feature_names"]) <= set(metadata["feature_names"])
    assert not set(metadata["dropped_features"]) & set(metadata["model_feature_names"])
    assert all(reason for reason in metadata["dropped_features"].values())
    if "seller_id" in drop:  # no seller ids: nothing the seller cue could learn from
        reason = metadata["dropped_features"]["seller_authorised"]
        fitted = bundle.model.full.settings.kind != "similarity"  # the baseline reads two cues only
        assert reason.startswith("NaN on all" if fitted else "not an input of the similarity baseline")
    assert 0.0 <= result.metrics["test.roc_auc"] <= 1.0

    out = tmp_path / "scored"
    cfg = load_config(
        [
            *overrides,
            f"score.listings={manifest}",
            f"score.out={out}",
            f"score.model={result.bundle_dir}",
            "score.progress=off",
            "score.error_budget=1.0",
        ]
    )
    summary = score_run(cfg)
    results = pd.read_parquet(out)
    day = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert summary.status == "complete" and len(results) == len(day) == ds.dataset(out).count_rows()
    assert sorted(results["listing_id"]) == sorted(day["listing_id"])
    errors = results[results["decision"] == "error"]
    assert (errors["error"].str.len() > 0).all()  # every bad image has its reason
    assert results.loc[results["decision"] != "error", "score"].between(0, 1).all()
    assert summary.cue_failures == {}  # no cue raised on any of these worlds
