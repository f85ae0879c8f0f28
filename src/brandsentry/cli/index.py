"""`brandsentry index build|update|info|search`: the workspace's FAISS index of reference embeddings."""

from __future__ import annotations

import argparse
from pathlib import Path

from brandsentry.cli._parser import add_command, add_group


def register(commands: argparse._SubParsersAction) -> None:
    actions = add_group(
        commands,
        "index",
        help="build, update, inspect and query the reference index",
        description="The workspace's FAISS index of reference embeddings (WORKSPACE/index): versioned, each "
        "version written aside and made current atomically. Which references it holds is the catalog's "
        "business (`brandsentry refs`); the index follows with build or update.",
        examples=("index build workspace=data/ws", "index info workspace=data/ws"),
    )
    build = add_command(
        actions,
        "build",
        help="embed every approved reference into a fresh index version",
        description="Embed every approved (or indexed) reference of the catalog with the configured "
        "embedder and write a new index version of the configured type (index=flat|hnsw|ivfpq|large, "
        "configs/index/); references become `indexed`. Exit status 1 when a reference could not be "
        "embedded (the report names it; the others are indexed).",
        examples=("index build workspace=data/ws", "index build index=hnsw embedder=lite1 workspace=data/ws"),
    )
    build.set_defaults(handler=run_update, rebuild=True)
    update = add_command(
        actions,
        "update",
        help="add newly approved references, remove withdrawn ones",
        description="Bring the current index in step with the catalog: embed references approved since "
        "the last build or update and drop withdrawn ones, saved as a new index version (no index yet: as "
        "build). The configured embedder must be the index's; another one needs `index build`. Exit status "
        "1 as for build.",
        examples=("index update workspace=data/ws",),
    )
    update.set_defaults(handler=run_update, rebuild=False)
    info = add_command(
        actions,
        "info",
        help="print the current index manifest",
        description="Print the saved index versions and the current one's manifest: FAISS factory string, "
        "dimension, live and stored vectors, tombstones, embedder identity, creation time and the catalog's "
        "high-water mark it has seen.",
        examples=("index info workspace=data/ws",),
    )
    info.set_defaults(handler=run_info)
    search = add_command(
        actions,
        "search",
        help="nearest references of query images",
        description="Embed IMAGE files and print their k nearest references (cosine similarity, brand, "
        "product, view).",
        examples=("index search photo.jpg other.png -k 3 --brand Acme workspace=data/ws",),
    )
    search.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="query image files")
    search.add_argument("-k", type=int, default=5, help="neighbours per image (default 5)")
    search.add_argument("--brand", help="restrict the search to one brand's references")
    search.set_defaults(handler=run_search)


def run_update(args, overrides: list[str]) -> int:
    from brandsentry.config import load_config
    from brandsentry.index_sync import update_from_catalog

    report = update_from_catalog(load_config(overrides), rebuild=args.rebuild, progress=True)
    print(report.format())
    return 1 if report.failed else 0


def run_info(args, overrides: list[str]) -> int:
    from brandsentry.config import Workspace, load_config
    from brandsentry.index import latest_manifest, saved_versions

    workspace = Workspace.from_config(load_config(overrides))
    manifest = latest_manifest(workspace.index_dir)
    print(f"versions: {', '.join(f'v{v:06d}' for v in saved_versions(workspace.index_dir))}")
    for key, value in manifest.__dict__.items():
        print(f"{key}: {value}")
    return 0


def run_search(args, overrides: list[str]) -> int:
    from brandsentry.catalog import Catalog
    from brandsentry.config import Workspace, load_config
    from brandsentry.images import DecodeLimits
    from brandsentry.index import IndexParams, ReferenceIndex
    from brandsentry.index_sync import embedder_for_index

    cfg = load_config(overrides)
    workspace = Workspace.from_config(cfg)
    embedder = embedder_for_index(cfg.embedder, workspace.index_dir)
    index = ReferenceIndex.load(
        workspace.index_dir, embedder.identity.to_dict(), IndexParams.from_config(cfg.index)
    )
    embeddings, failures = embedder.embed_files(args.images, limits=DecodeLimits.from_config(cfg.images))
    for _, error in failures:
        print(f"{error.path}: not searched: {error.reason} {error.detail}".rstrip())
    with Catalog.open(workspace) as catalog:
        allowed = catalog.ids_for_brand(args.brand, ("indexed",)) if args.brand else None
        result = index.search(embeddings.vectors, args.k, allowed_ids=allowed)
        refs = catalog.get_many(int(i) for i in result.ids.ravel() if i >= 0)
    for query, ids, scores in zip(embeddings.ids, result.ids, result.scores, strict=True):
        print(f"{args.images[int(query)]}:")
        for rank, (ref_id, score) in enumerate(zip(ids, scores, strict=True), 1):
            if ref_id < 0:
                break
            ref = refs[int(ref_id)]
            print(f"  {rank}. {score:.3f}  ref {ref_id}  {ref.brand} / {ref.product} ({ref.view})")
    return 1 if failures else 0
