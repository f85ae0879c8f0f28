"""Similarity cues: how close the listing's nearest references of the claimed brand are, against the rest."""

from __future__ import annotations

import math

import numpy as np

from brandsentry.cues.config import SimilarityParams
from brandsentry.cues.records import CueResult, Neighbours, same_name

FEATURES = (
    "sim_top1",
    "sim_brand_top1",
    "sim_brand_mean_topk",
    "sim_product_top1",
    "sim_product_mean_topk",
    "sim_other_top1",
    "sim_margin",
    "sim_brand_rank",
    "sim_brand_fraction",
)


def similarity_cues(
    neighbours: Neighbours, claimed_brand: str, claimed_product: str | None, params: SimilarityParams
) -> CueResult:
    """Top-1 / mean top-k similarity to the claimed brand (and product), the best other brand, the margin
    between them, the 1-based rank of the first claimed-brand hit and the claimed brand's share of the top k.
    """
    if len(neighbours) == 0:
        return CueResult.missing(FEATURES, "no neighbours")
    sims = np.asarray(neighbours.similarities, dtype=np.float64)
    order = neighbours.ranked()
    brand_hits = neighbours.of_brand(claimed_brand)
    other_hits = [int(p) for p in order if not same_name(neighbours.brands[p], claimed_brand)]
    values: dict[str, float] = {"sim_top1": float(sims[order[0]])}
    reasons: dict[str, str] = {}

    def put(name: str, value: float | None, reason: str) -> None:
        values[name] = math.nan if value is None else float(value)
        if value is None:
            reasons[name] = reason

    no_brand = f"no neighbour of claimed brand {claimed_brand!r} among {len(neighbours)}"
    put("sim_brand_top1", sims[brand_hits[0]] if brand_hits else None, no_brand)
    put("sim_brand_mean_topk", sims[brand_hits[: params.top_k]].mean() if brand_hits else None, no_brand)
    if claimed_product is None:
        put("sim_product_top1", None, "no claimed product")
        put("sim_product_mean_topk", None, "no claimed product")
    else:
        product_hits = neighbours.of_brand(claimed_brand, claimed_product)
        no_product = f"no neighbour of claimed product {claimed_product!r}"
        put("sim_product_top1", sims[product_hits[0]] if product_hits else None, no_product)
        mean = sims[product_hits[: params.top_k]].mean() if product_hits else None
        put("sim_product_mean_topk", mean, no_product)
    put("sim_other_top1", sims[other_hits[0]] if other_hits else None, "no neighbour of another brand")
    if brand_hits and other_hits:
        put("sim_margin", sims[brand_hits[0]] - sims[other_hits[0]], "")
    else:
        put("sim_margin", None, no_brand if not brand_hits else "no neighbour of another brand")
    rank = {int(p): r for r, p in enumerate(order, start=1)}
    put("sim_brand_rank", rank[brand_hits[0]] if brand_hits else None, no_brand)
    window = [int(p) for p in order[: params.top_k]]
    in_window = sum(same_name(neighbours.brands[p], claimed_brand) for p in window)
    values["sim_brand_fraction"] = in_window / len(window)
    return CueResult(values, reasons)
