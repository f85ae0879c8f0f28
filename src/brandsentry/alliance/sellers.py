"""Sellers across days: who keeps listing counterfeits, and which seller ids share photos (one operation).

Repeat-infringer score of a seller, over its scored listings i in the window (errors left out):

    score = (sum_i w_i v_i + a p0) / (sum_i w_i + a)

v_i is 1 for a listing reviewers confirmed counterfeit, 0 for one they judged authentic, else 1 when the
model flagged it and 0 when not; w_i is `confirm_weight` for a reviewed listing and 1 otherwise, because a
human verdict is stronger evidence than a flag; `a` = `prior_strength` pseudo-listings at the window's
flag rate p0 shrink sellers with few listings towards the average, so one flagged listing does not outrank
twenty out of twenty. It is a smoothed, verdict-weighted flag rate: in [0, 1], comparable across sellers.

Sellers are linked when listings of different seller ids have near-identical photos (cosine of their
scoring embeddings >= `link_cosine`), unless one of them is an authorised seller of the claimed brand
(the brand's official photo is theirs to use); linked sellers form clusters (union-find), scored with the
same formula over their pooled listings.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from brandsentry.alliance import AllianceSettings
from brandsentry.alliance.window import AllianceError, parse_since, window_listings
from brandsentry.catalog import Catalog
from brandsentry.config import Workspace
from brandsentry.files import atomic_folder
from brandsentry.run_folder import embedding_files, part_files

SELLERS_FILE = "sellers.parquet"
CLUSTERS_FILE = "clusters.parquet"
PAGE_FILE = "sellers.html"
_BLOCK = 2048  # listings compared with all later ones at a time when linking


@dataclass(frozen=True)
class SellerTables:
    """Every seller and every cluster of a window, ranked by repeat-infringer score."""

    sellers: pd.DataFrame
    clusters: pd.DataFrame
    links: pd.DataFrame  # listing_a, seller_a, listing_b, seller_b, cosine


def listing_evidence(listings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(v, w) of the score formula per listing: verdicts override the flag and weigh `confirm_weight`."""
    label = listings["label"].fillna("")
    flagged = (listings["decision"] == "flag").to_numpy(float)
    value = np.where(label == "counterfeit", 1.0, np.where(label == "authentic", 0.0, flagged))
    return value, (label != "").to_numpy()


def repeat_scores(
    listings: pd.DataFrame, groups: pd.Series, settings: AllianceSettings, prior: float
) -> pd.DataFrame:
    """Counts and repeat-infringer score per group (a seller id or a cluster id) of `listings`."""
    value, reviewed = listing_evidence(listings)
    weight = np.where(reviewed, settings.confirm_weight, 1.0)
    frame = pd.DataFrame(
        {
            "group": groups.to_numpy(),
            "wv": weight * value,
            "w": weight,
            "flagged": (listings["decision"] == "flag").to_numpy(int),
            "confirmed": (listings["label"] == "counterfeit").to_numpy(int),
            "disputed": ((listings["label"] == "authentic") & (listings["decision"] == "flag")).to_numpy(int),
            "score": listings["score"].to_numpy(float),
        }
    )
    table = frame.groupby("group").agg(
        scanned=("w", "size"),
        flagged=("flagged", "sum"),
        confirmed=("confirmed", "sum"),
        disputed=("disputed", "sum"),
        mean_score=("score", "mean"),
        wv=("wv", "sum"),
        w=("w", "sum"),
    )
    a = settings.prior_strength
    table["repeat_score"] = (table["wv"] + a * prior) / (table["w"] + a)
    return table.drop(columns=["wv", "w"])


def _evidence(listings: pd.DataFrame, groups: pd.Series, n: int) -> pd.DataFrame:
    """The `n` highest-scoring listings of each group: their ids and scores."""
    ordered = listings.assign(group=groups.to_numpy()).sort_values(
        ["group", "score", "listing_id"], ascending=[True, False, True]
    )
    top = ordered.groupby("group").head(n).groupby("group")
    return pd.DataFrame(
        {
            "evidence_listing_ids": top["listing_id"].agg(list),
            "evidence_scores": top["score"].agg(lambda s: [float(x) for x in s]),
        }
    )


def _find(parent: dict[str, str], item: str) -> str:
    while parent[item] != item:
        parent[item] = parent[parent[item]]
        item = parent[item]
    return item


def seller_clusters(links: pd.DataFrame) -> dict[str, str]:
    """seller id -> cluster id for every linked seller (union-find); a cluster is named `C-<smallest id>`."""
    parent: dict[str, str] = {}
    for a, b in zip(links["seller_a"], links["seller_b"], strict=True):
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        root_a, root_b = _find(parent, a), _find(parent, b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    members: dict[str, list[str]] = {}
    for seller in parent:
        members.setdefault(_find(parent, seller), []).append(seller)
    return {seller: f"C-{min(group)}" for group in members.values() for seller in group}


def shared_photo_links(
    listings: pd.DataFrame, vectors: np.ndarray, authorised: dict[str, frozenset[str]], threshold: float
) -> pd.DataFrame:
    """Pairs of listings of different sellers whose embeddings have cosine >= threshold.

    `vectors` is row-aligned with `listings` (NaN rows: no embedding). A listing by an authorised seller of
    its claimed brand links nobody: reusing the brand's own photo is what such a seller is allowed to do.
    """
    columns = ["listing_a", "seller_a", "listing_b", "seller_b", "cosine"]
    sellers = listings["seller_id"].fillna("").astype(str).to_numpy()
    allowed = np.array(
        [
            bool(seller) and seller not in authorised.get(str(brand).strip(), frozenset())
            for seller, brand in zip(sellers, listings["claimed_brand"], strict=True)
        ],
        dtype=bool,
    )
    usable = np.flatnonzero(allowed & ~np.isnan(vectors).any(axis=1)) if len(vectors) else np.array([], int)
    if len(usable) < 2:
        return pd.DataFrame(columns=columns)
    unit = vectors[usable] / np.linalg.norm(vectors[usable], axis=1, keepdims=True)
    rows, cols, cosines = [], [], []
    for start in range(0, len(unit), _BLOCK):  # blocks of rows: memory stays _BLOCK x n, not n x n
        block = unit[start : start + _BLOCK] @ unit[start:].T
        a, b = np.nonzero(np.triu(block >= threshold, k=1))
        rows.append(a + start)
        cols.append(b + start)
        cosines.append(block[a, b])
    i, j, cosine = np.concatenate(rows), np.concatenate(cols), np.concatenate(cosines)
    keep = sellers[usable[i]] != sellers[usable[j]]
    i, j, cosine = i[keep], j[keep], cosine[keep]
    ids = listings["listing_id"].astype(str).to_numpy()
    return pd.DataFrame(
        {
            "listing_a": ids[usable[i]],
            "seller_a": sellers[usable[i]],
            "listing_b": ids[usable[j]],
            "seller_b": sellers[usable[j]],
            "cosine": cosine.astype(float),
        },
        columns=columns,
    )


def seller_tables(
    listings: pd.DataFrame,
    vectors: np.ndarray,
    authorised: dict[str, frozenset[str]],
    settings: AllianceSettings,
) -> SellerTables:
    """Sellers and clusters of the window's listings (with a seller id), ranked by repeat-infringer score."""
    has_seller = listings["seller_id"].fillna("").astype(str).str.strip() != ""
    listings, vectors = listings[has_seller.to_numpy()].reset_index(drop=True), vectors[has_seller.to_numpy()]
    prior = float((listings["decision"] == "flag").mean()) if len(listings) else 0.0
    sellers_of = listings["seller_id"].astype(str)
    table = repeat_scores(listings, sellers_of, settings, prior)
    table = table.join(_evidence(listings, sellers_of, settings.evidence_listings))
    authorised_for = {}
    for brand, ids in authorised.items():
        for seller in ids:
            authorised_for.setdefault(seller, []).append(brand)
    table["authorised_for"] = [", ".join(sorted(authorised_for.get(s, []))) for s in table.index]
    links = shared_photo_links(listings, vectors, authorised, settings.link_cosine)
    cluster_of = seller_clusters(links)
    table["cluster_id"] = [cluster_of.get(s) for s in table.index]
    table = _ranked(table.rename_axis("seller_id").reset_index(), "seller_id")

    linked = sellers_of.isin(list(cluster_of)).to_numpy()
    clusters = pd.DataFrame()
    if linked.any():
        pooled = listings[linked].reset_index(drop=True)
        cluster_ids = pooled["seller_id"].astype(str).map(cluster_of)
        clusters = repeat_scores(pooled, cluster_ids, settings, prior)
        clusters = clusters.join(_evidence(pooled, cluster_ids, settings.evidence_listings))
        by_cluster = links.assign(cluster_id=links["seller_a"].map(cluster_of))
        clusters["sellers"] = pooled.groupby(cluster_ids)["seller_id"].agg(lambda s: sorted(set(s)))
        clusters["n_sellers"] = clusters["sellers"].map(len)
        clusters["links"] = by_cluster.groupby("cluster_id").apply(
            lambda g: [
                f"{a} ({sa}) ~ {b} ({sb}): {c:.3f}"
                for a, sa, b, sb, c in g[
                    ["listing_a", "seller_a", "listing_b", "seller_b", "cosine"]
                ].itertuples(index=False)
            ],
            include_groups=False,
        )
        clusters = _ranked(clusters.rename_axis("cluster_id").reset_index(), "cluster_id")
    return SellerTables(sellers=table, clusters=clusters, links=links)


def _ranked(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """Highest score first; ties: more flags, then the id (a stable order for the same inputs)."""
    table = table.sort_values(
        ["repeat_score", "flagged", key], ascending=[False, False, True], ignore_index=True
    )
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def window_vectors(listings: pd.DataFrame) -> np.ndarray:
    """The scoring embedding of each listing (its run's `_embeddings/part-*.npy`, row-aligned with the parts);
    NaN rows where a run kept none."""
    found: dict[tuple[str, str], np.ndarray] = {}
    for run_dir in sorted(set(listings["run_dir"])):
        parts, arrays = part_files(Path(run_dir)), embedding_files(Path(run_dir))
        if len(parts) != len(arrays):
            continue  # a run without (all) its embeddings: its listings link nobody
        for part, array in zip(parts, arrays, strict=True):
            ids = pd.read_parquet(part, columns=["listing_id"])["listing_id"].astype(str).tolist()
            matrix = np.load(array)
            if len(matrix) == len(ids):
                found.update(((run_dir, i), row) for i, row in zip(ids, matrix, strict=True))
    # runs of different embedders are not comparable: keep the size most of the window's listings have
    sizes = pd.Series([len(row) for row in found.values()], dtype=int)
    dim = int(sizes.mode().min()) if len(sizes) else 1
    vectors = np.full((len(listings), dim), np.nan, dtype=np.float32)
    for n, key in enumerate(zip(listings["run_dir"], listings["listing_id"].astype(str), strict=True)):
        if key in found and len(found[key]) == dim:
            vectors[n] = found[key]
    return vectors


def build_seller_tables(
    workspace: Workspace, settings: AllianceSettings, since: str | None = None
) -> SellerTables:
    """Seller tables of the listings scored since `since` (YYYY-MM-DD; None: everything in the ledger)."""
    listings = window_listings(workspace, since=parse_since(since))
    if listings["seller_id"].fillna("").astype(str).str.strip().eq("").all():
        raise AllianceError(
            "no listing scored in the window has a seller_id: score manifests with a seller_id column"
        )
    with Catalog.open(workspace) as catalog:
        authorised = catalog.authorized_sellers()
    return seller_tables(listings, window_vectors(listings), authorised, settings)


def latest_sellers_page(settings: AllianceSettings) -> Path | None:
    """The newest report's HTML page (folders are named by their UTC time, so the last in order), if any."""
    pages = sorted((Path(settings.out) / "sellers").glob(f"*/{PAGE_FILE}"))
    return pages[-1] if pages else None


def write_sellers_report(workspace: Workspace, settings: AllianceSettings, since: str | None = None) -> Path:
    """`reports/sellers/<UTC time>/`: the top sellers and clusters as Parquet and one HTML page."""
    tables = build_seller_tables(workspace, settings, since)
    root = Path(settings.out) / "sellers"
    root.mkdir(parents=True, exist_ok=True)
    final = root / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    sellers, clusters = tables.sellers.head(settings.top), tables.clusters.head(settings.top)
    with atomic_folder(final, mode=0o755) as staging:
        sellers.to_parquet(staging / SELLERS_FILE, index=False)
        clusters.to_parquet(staging / CLUSTERS_FILE, index=False)
        (staging / PAGE_FILE).write_text(_page(sellers, clusters, since), encoding="utf-8")
    return final


_SELLER_COLUMNS = [
    "rank",
    "seller_id",
    "repeat_score",
    "scanned",
    "flagged",
    "confirmed",
    "disputed",
    "cluster_id",
]
_CLUSTER_COLUMNS = ["rank", "cluster_id", "repeat_score", "n_sellers", "scanned", "flagged", "confirmed"]


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if value is None:
        return ""
    return html.escape(str(value))


def _evidence_cell(row) -> str:
    return ", ".join(
        f"{html.escape(str(i))} ({s:.2f})"
        for i, s in zip(row["evidence_listing_ids"], row["evidence_scores"], strict=True)
    )


def _table(frame: pd.DataFrame, columns: list[str], extra: dict) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [*columns, *extra])
    rows = []
    for _, row in frame.iterrows():
        cells = [_cell(row[c]) for c in columns] + [render(row) for render in extra.values()]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _page(sellers: pd.DataFrame, clusters: pd.DataFrame, since: str | None) -> str:
    window = f"since {since}" if since else "all scored listings"
    cluster_part = "<p>No sellers share photos in this window.</p>"
    if len(clusters):
        cluster_part = _table(
            clusters,
            _CLUSTER_COLUMNS,
            {
                "sellers": lambda r: html.escape(", ".join(r["sellers"])),
                "shared photos": lambda r: "<br>".join(html.escape(x) for x in r["links"]),
                "evidence (listing, score)": _evidence_cell,
            },
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sellers report</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;font-size:13px}</style></head><body>"
        f"<h1>Sellers report ({html.escape(window)})</h1>"
        "<p>repeat_score = (sum w·v + a·p0) / (sum w + a): a flag rate where reviewer verdicts replace the "
        "flag and weigh more, smoothed towards the window's flag rate p0 (docs/alliance.md).</p>"
        f"<h2>Top {len(sellers)} sellers</h2>"
        + _table(sellers, _SELLER_COLUMNS, {"evidence (listing, score)": _evidence_cell})
        + f"<h2>Seller clusters ({len(clusters)})</h2>"
        + cluster_part
        + "</body></html>"
    )
