"""Write a references manifest from a folder-per-product image collection (e.g. GroZi-120).

    python scripts/folder_manifest.py ../shared/data/grozi120 grozi_refs.csv --brand grozi --every 7

Every N-th image of a product folder (sorted by filename) becomes a reference row (image_path, brand,
product, view); with `--queries Q.csv` the other images are written as a listings manifest (listing_id,
image_path, claimed_brand, claimed_product) to score or search. Paths are absolute, so the manifests can
live anywhere. The data itself is never copied.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from brandsentry.evaluation.datasets import DatasetLayoutError, folder_split, labelled_images


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("references", type=Path, help="references CSV to write")
    parser.add_argument("--brand", default=None, help="brand of every product (default: the folder name)")
    parser.add_argument("--every", type=int, default=7)
    parser.add_argument("--queries", type=Path, help="also write the other images as a listings CSV")
    args = parser.parse_args()
    try:
        images = labelled_images(args.data_dir)
    except DatasetLayoutError as exc:
        raise SystemExit(str(exc)) from None
    paths, labels, is_reference = images.paths, images.labels, folder_split(images, args.every)
    refs = queries = 0
    with args.references.open("w", newline="") as ref_handle:
        ref_writer = csv.writer(ref_handle)
        ref_writer.writerow(["image_path", "brand", "product", "view"])
        query_handle = args.queries.open("w", newline="") if args.queries else None
        query_writer = csv.writer(query_handle) if query_handle else None
        if query_writer:
            query_writer.writerow(["listing_id", "image_path", "claimed_brand", "claimed_product"])
        for path, label, reference in zip(paths, labels, is_reference, strict=True):
            brand = args.brand or label
            if reference:
                ref_writer.writerow([str(Path(path).resolve()), brand, label, "product"])
                refs += 1
            elif query_writer:
                query_writer.writerow(
                    [f"q-{label}-{Path(path).stem}", str(Path(path).resolve()), brand, label]
                )
                queries += 1
        if query_handle:
            query_handle.close()
    print(
        f"{refs} references -> {args.references}"
        + (f"; {queries} queries -> {args.queries}" if args.queries else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
