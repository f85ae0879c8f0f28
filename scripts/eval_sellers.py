"""Precision of the sellers report's top-k sellers against a synthetic world's ground truth.

    python scripts/eval_sellers.py WORLD_DIR WORKSPACE [--top 20] [--since YYYY-MM-DD] [key=value ...]

Ground truth, two readings: a seller is a counterfeiter when the world made it one (its `behaviour`, rebuilt
from world.json's parameters exactly as the generator builds it, with the sellers who joined on later days),
and a seller "sold counterfeits" when most of its window listings carry `label = counterfeit` in the
listings_day*.csv manifests (error images, `not_a_product` and `undecodable`, left out: they say nothing of
the seller). The ranking is the one `brandsentry sellers report` writes.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import fields
from pathlib import Path

import pandas as pd

from brandsentry.alliance import AllianceSettings
from brandsentry.alliance.sellers import build_seller_tables
from brandsentry.config import Workspace, load_config
from brandsentry.synth.brands import WorldParams, build_world, new_sellers

ERROR_KINDS = ("not_a_product", "undecodable")


def seller_behaviours(world_dir: Path, days: list[int]) -> dict[str, str]:
    """seller id -> authorized | reseller | mixed | counterfeiter, as the generator made them."""
    record = json.loads((world_dir / "world.json").read_text())
    names = {f.name for f in fields(WorldParams)}
    values = {k: v for k, v in record["world"].items() if k in names}
    params = WorldParams(**{**values, "split": tuple(values["split"])})
    sellers = list(build_world(params).sellers)
    for day in range(2, max(days) + 1):
        sellers += new_sellers(params, day, record["day"]["new_sellers_per_day"])
    return {s.id: s.behaviour for s in sellers}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("world", type=Path)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--since", help="as `sellers report --since`")
    args, overrides = parser.parse_known_args()
    manifests = sorted(args.world.glob("listings_day*.csv"))
    days = [int(re.search(r"day(\d+)", p.name).group(1)) for p in manifests]
    behaviour = seller_behaviours(args.world, days)
    truth = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in manifests])

    cfg = load_config([f"workspace={args.workspace}", *overrides])
    tables = build_seller_tables(Workspace.from_config(cfg), AllianceSettings.from_config(cfg), args.since)
    products = truth[~truth["counterfeit_kind"].isin(ERROR_KINDS)]
    sold_fakes = products.groupby("seller_id")["label"].agg(lambda s: (s == "counterfeit").mean() > 0.5)

    top = tables.sellers.head(args.top)
    is_counterfeiter = top["seller_id"].map(behaviour).eq("counterfeiter")
    mostly_fakes = top["seller_id"].map(sold_fakes).fillna(False).astype(bool)
    ranked = tables.sellers["seller_id"]
    counterfeiters = ranked.map(behaviour).eq("counterfeiter")
    print(
        top.assign(behaviour=top["seller_id"].map(behaviour))[
            [
                "rank",
                "seller_id",
                "repeat_score",
                "scanned",
                "flagged",
                "confirmed",
                "cluster_id",
                "behaviour",
            ]
        ].to_string(index=False)
    )
    print()
    print(
        f"sellers ranked: {len(ranked)}, of them counterfeiters (world behaviour): {int(counterfeiters.sum())}"
    )
    print(f"precision@{args.top} (behaviour = counterfeiter): {is_counterfeiter.mean():.3f}")
    print(f"precision@{args.top} (most listings counterfeit): {mostly_fakes.mean():.3f}")
    base = counterfeiters.mean()
    print(f"a random ranking: {base:.3f} expected (share of counterfeiters among ranked sellers)")
    clusters = tables.clusters
    if len(clusters):
        pure = clusters["sellers"].map(lambda s: all(behaviour.get(x) == "counterfeiter" for x in s))
        print(f"clusters: {len(clusters)}, all members counterfeiters: {int(pure.sum())}")


if __name__ == "__main__":
    main()
