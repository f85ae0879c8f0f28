"""Every listing of a scoring run for an annotation tool: Label Studio tasks, or a FiftyOne dataset folder.

The evidence page holds a day's queue; an export holds the whole run (every decision, errors included), so
a team that reviews in Label Studio or browses in FiftyOne sees what the model saw: score, decision, both
thresholds, the claimed brand and product, the nearest references and the listing's image. Neither tool is
a dependency: both formats are plain JSON files their importers read.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import pandas as pd

from brandsentry.files import atomic_folder
from brandsentry.review.evidence import as_list
from brandsentry.review.settings import ReviewError
from brandsentry.review.tables import fmt_number
from brandsentry.run_folder import read_results

VERDICT_CHOICES = ("counterfeit", "authentic", "unsure")  # as on the evidence page
# The files that make a folder one of our exports (an existing folder without them is never replaced).
EXPORT_FILES = {"labelstudio": "tasks.json", "fiftyone": "samples.json"}
EXPORT_FORMATS = tuple(EXPORT_FILES)
FIELDS = (
    "listing_id", "claimed_brand", "claimed_product", "title", "seller_id", "score", "decision", "threshold",
    "review_threshold", "top_ref_ids", "top_similarities", "top_ref_brand", "top_ref_product", "error",
    "model_version",
)  # fmt: skip


@dataclass(frozen=True)
class Export:
    out: Path
    format: str
    listings: int
    files: tuple[Path, ...]
    image_root: Path | None  # Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT for the image URLs


def _clean(value):
    """A results cell as JSON: NaN/NA as null, numpy scalars and arrays as Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def listing_records(results: pd.DataFrame) -> list[dict]:
    """One record per listing: the export fields (null where the run has no such column) and `image`,
    the listing's image as an absolute path (relative manifest paths are relative to where scoring ran)."""
    records = []
    for row in results.to_dict("records"):
        record = {name: _clean(row.get(name)) for name in FIELDS}
        for name in ("top_ref_ids", "top_similarities"):
            record[name] = [_clean(v) for v in as_list(row.get(name))]
        path = row.get("image_path")
        record["image"] = str(Path(path).resolve()) if isinstance(path, str) and path.strip() else None
        records.append(record)
    return records


def labeling_config() -> str:
    """Label Studio's labeling config: the image, what the model said, and the page's verdict choices.

    Header and Text show one task field each (`headline`, `summary`: see `_task`)."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in VERDICT_CHOICES)
    return f"""<View>
  <Header value="$headline"/>
  <Text name="model" value="$summary"/>
  <Image name="image" value="$image" zoom="true"/>
  <Choices name="verdict" toName="image" choice="single" showInLine="true" required="true">
{choices}
  </Choices>
  <TextArea name="note" toName="image" placeholder="note" maxSubmissions="1"/>
</View>
"""


def _local_file_url(path: str | None, root: Path) -> str:
    """Label Studio's URL for a file served from LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=`root`."""
    if path is None:
        return ""
    relative = os.path.relpath(path, root)
    if relative.startswith(".."):
        raise ReviewError(f"image {path} is outside the document root {root}: pass a root that holds it")
    return "/data/local-files/?d=" + quote(Path(relative).as_posix())


def _image_folder(records: list[dict]) -> Path:
    """The deepest folder holding every listing image (the default Label Studio document root)."""
    images = sorted({r["image"] for r in records if r["image"]})
    if not images:
        return Path("/")
    common = Path(os.path.commonpath(images))
    return common.parent if len(images) == 1 else common


def _task(record: dict, root: Path) -> dict:
    """A Label Studio task: the record, its image as a local-file URL, and one-line texts for the config."""
    return {
        "data": {
            **record,
            "image": _local_file_url(record["image"], root),
            "image_path": record["image"],
            "headline": "{listing_id}: claims {claimed_brand} / {claimed_product}".format(**record),
            "summary": "score {} ({}; flag threshold {}, review from {}); nearest reference {} / {}".format(
                fmt_number(record["score"]),
                record["decision"],
                fmt_number(record["threshold"]),
                fmt_number(record["review_threshold"]),
                record["top_ref_brand"],
                record["top_ref_product"],
            ),
        }
    }


def export_run(run_dir: str | Path, out: str | Path, fmt: str, root: str | Path | None = None) -> Export:
    """Write every listing of the scoring run `run_dir` to the folder `out` as `fmt` (see EXPORT_FORMATS).

    labelstudio: `tasks.json` (one task per listing, images as local-file URLs under `root`, by default the
    deepest folder holding every image) and `labeling_config.xml`. fiftyone: `samples.json` and
    `metadata.json` in the FiftyOneDataset layout (absolute image paths, no copies), which
    `fiftyone.Dataset.from_dir(out, dataset_type=fiftyone.types.FiftyOneDataset)` loads.
    """
    if fmt not in EXPORT_FORMATS:
        raise ReviewError(f"unknown export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    run_dir, out = Path(run_dir), Path(out)
    records = listing_records(read_results(run_dir))
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not (out / EXPORT_FILES[fmt]).is_file():
        raise ReviewError(f"{out} exists and is not a {fmt} export: choose a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    image_root = None
    with atomic_folder(out, mode=0o755) as staging:
        if fmt == "labelstudio":
            image_root = Path(root).resolve() if root is not None else _image_folder(records)
            tasks = [_task(r, image_root) for r in records]
            (staging / "tasks.json").write_text(json.dumps(tasks, indent=1), encoding="utf-8")
            (staging / "labeling_config.xml").write_text(labeling_config(), encoding="utf-8")
            names = ("tasks.json", "labeling_config.xml")
        else:
            samples = [{"filepath": r.pop("image") or "", "tags": [str(r["decision"])], **r} for r in records]
            metadata = {
                "name": run_dir.name,
                "media_type": "image",
                "info": {"run_dir": str(run_dir.resolve())},
            }
            (staging / "samples.json").write_text(
                json.dumps({"samples": samples}, indent=1), encoding="utf-8"
            )
            (staging / "metadata.json").write_text(json.dumps(metadata, indent=1), encoding="utf-8")
            names = ("samples.json", "metadata.json")
    return Export(out, fmt, len(records), tuple(out / n for n in names), image_root)
