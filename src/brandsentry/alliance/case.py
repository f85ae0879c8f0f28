"""A case package: one brand's evidence against a seller or a seller cluster, as one self-checking zip.

    case.zip
      manifest.json              the case (brand, seller or cluster, window) and the sha256 of every other file
      summary.html               the case for a human: each listing beside its matched reference, scores, verdicts
      listings.csv               one row per listing (ids, seller, score, decision, verdict, model, times)
      listings/<id>.json         everything known of one listing: result columns, cue values, evidence, verdict
      listings/<id>.<ext>        the listing's image as it was scored
      references/<id>.<ext>      the catalog references it matched (`top_ref_ids`) and those its cues compared with

The same inputs give the same bytes (entries sorted, fixed timestamps and permissions, no creation time in
the package), so a package can be re-made and compared, and `verify_case` can tell a changed file by name.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import zipfile
from pathlib import Path

import pandas as pd

from brandsentry.alliance import AllianceSettings
from brandsentry.alliance.sellers import build_seller_tables
from brandsentry.alliance.window import AllianceError, parse_since, window_listings
from brandsentry.catalog import Catalog
from brandsentry.config import Workspace
from brandsentry.errors import BrandsentryError
from brandsentry.feedback import CUE_COLUMNS
from brandsentry.files import atomic_write_bytes
from brandsentry.run_folder import read_results

MANIFEST = "manifest.json"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold: nothing of the export's own clock
_RESULT_FIELDS = (
    "listing_id", "seller_id", "claimed_brand", "claimed_product", "title", "price", "score", "decision",
    "threshold", "review_threshold", "model_version", "image_path",
)  # fmt: skip
_CSV_FIELDS = (
    "listing_id", "seller_id", "claimed_product", "score", "decision", "verdict", "reviewer", "verdict_at",
    "model_version", "scored_at",
)  # fmt: skip


class CaseVerifyError(BrandsentryError, ValueError):
    """A case package whose files do not match its manifest (changed, missing or added files)."""


def _plain(value):
    """A JSON-safe value of a result cell (NaN and missing become null, numpy scalars Python ones)."""
    if value is None:
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def case_listings(
    workspace: Workspace,
    settings: AllianceSettings,
    brand: str,
    seller: str | None = None,
    cluster: str | None = None,
    since: str | None = None,
) -> pd.DataFrame:
    """The window listings of the case: the brand's listings by the seller or cluster (all their decisions),
    else every listing of the brand that was flagged or confirmed counterfeit."""
    listings = window_listings(workspace, since=parse_since(since), brand=brand)
    window = f" since {since}" if since else ""
    if seller is not None:
        chosen = listings[listings["seller_id"] == seller]
        if chosen.empty:
            known = sorted(set(listings["seller_id"].dropna()))
            raise AllianceError(
                f"unknown seller {seller!r}: no listing of {brand} by it was scored{window} "
                f"({len(known)} seller(s) have some, e.g. {', '.join(known[:5])})"
            )
        return chosen
    if cluster is not None:
        clusters = build_seller_tables(workspace, settings, since).clusters
        members = clusters.loc[clusters["cluster_id"] == cluster, "sellers"] if len(clusters) else []
        if not len(members):
            known = ", ".join(clusters["cluster_id"]) if len(clusters) else "none"
            raise AllianceError(
                f"unknown cluster {cluster!r}{window} (clusters: {known}; see `sellers report`)"
            )
        chosen = listings[listings["seller_id"].isin(list(members.iloc[0]))]
        if chosen.empty:
            raise AllianceError(f"cluster {cluster} has no listing claiming {brand}{window}")
        return chosen
    chosen = listings[(listings["decision"] == "flag") | (listings["label"] == "counterfeit")]
    if chosen.empty:
        raise AllianceError(f"no listing of {brand} was flagged or confirmed counterfeit{window}")
    return chosen


def _records(chosen: pd.DataFrame) -> list[dict]:
    """Each case listing as the scoring run wrote it, with its cue values, evidence and verdict."""
    records = []
    for run_dir, group in chosen.groupby("run_dir", sort=True):
        results = read_results(run_dir)
        results = results[results["listing_id"].astype(str).isin(group["listing_id"])]
        ledger = group.set_index("listing_id")
        for row in results.to_dict(orient="records"):
            listing_id = str(row["listing_id"])
            window_row = ledger.loc[listing_id]
            record = {key: _plain(row.get(key)) for key in _RESULT_FIELDS}
            record["listing_id"] = listing_id
            record["scored_at"] = str(window_row["scored_at"])  # the ledger's ISO UTC text
            record["run_dir"] = str(run_dir)
            record["cues"] = {name: _plain(row[name]) for name in CUE_COLUMNS if name in row}
            record["top_ref_ids"] = [int(i) for i in _plain(row.get("top_ref_ids")) or []]
            record["top_similarities"] = [float(s) for s in _plain(row.get("top_similarities")) or []]
            record["evidence"] = json.loads(row["evidence"]) if row.get("evidence") else None
            record["verdict"] = None
            if isinstance(window_row["verdict"], str):
                record["verdict"] = {k: window_row[k] for k in ("verdict", "label", "reviewer", "verdict_at")}
            records.append(record)
    return sorted(records, key=lambda r: r["listing_id"])


def _cue_reference_ids(evidence, path: str = "") -> dict[str, int]:
    """`cue path -> reference id` of the references the cues compared with (`copy_reference_id`: the
    photo a listing re-uses, `logo.reference_id`: the logo template), which need not be among top_ref_ids."""
    found = {}
    if isinstance(evidence, dict):
        for key, value in evidence.items():
            name = f"{path}.{key}" if path else key
            if key.endswith("reference_id") and isinstance(value, int):
                found[name] = value
            else:
                found.update(_cue_reference_ids(value, name))
    return found


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def build_case(
    workspace: Workspace,
    settings: AllianceSettings,
    brand: str,
    seller: str | None = None,
    cluster: str | None = None,
    since: str | None = None,
) -> dict[str, bytes]:
    """Path in the package -> bytes, manifest included."""
    records = _records(case_listings(workspace, settings, brand, seller, cluster, since))
    files: dict[str, bytes] = {}
    for record in records:
        record["cue_reference_ids"] = _cue_reference_ids(record["evidence"])
    ref_ids = sorted({i for r in records for i in [*r["top_ref_ids"], *r["cue_reference_ids"].values()]})
    with Catalog.open(workspace) as catalog:
        references = catalog.get_many(ref_ids)
    ref_files = {}
    for ref_id, ref in sorted(references.items()):
        data = _read(workspace.image_store / ref.stored_path)
        if data is not None:
            ref_files[ref_id] = f"references/{ref_id}{Path(ref.stored_path).suffix.lower()}"
            files[ref_files[ref_id]] = data
    for record in records:
        data = _read(Path(str(record["image_path"])))
        record["image_file"] = None
        if data is not None:
            record["image_file"] = (
                f"listings/{record['listing_id']}{Path(str(record['image_path'])).suffix.lower()}"
            )
            files[record["image_file"]] = data
        record["references"] = [
            {
                "id": ref_id,
                "similarity": similarity,
                "brand": references[ref_id].brand if ref_id in references else None,
                "product": references[ref_id].product if ref_id in references else None,
                "file": ref_files.get(ref_id),
            }
            for ref_id, similarity in zip(record["top_ref_ids"], record["top_similarities"], strict=False)
        ]
        record["cue_references"] = {
            cue: {"id": ref_id, "file": ref_files.get(ref_id)}
            for cue, ref_id in sorted(record.pop("cue_reference_ids").items())
        }
        files[f"listings/{record['listing_id']}.json"] = _json(record)
    files["listings.csv"] = _csv(records)
    case = {"brand": brand, "seller": seller, "cluster": cluster, "since": since, "listings": len(records)}
    files["summary.html"] = _summary(case, records).encode("utf-8")
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    files[MANIFEST] = _json({"case": case, "files": digests})
    return files


def _json(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _csv(records: list[dict]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(_CSV_FIELDS)
    for r in records:
        verdict = r["verdict"] or {}
        writer.writerow(
            [verdict.get(f, "") if f in ("verdict", "reviewer", "verdict_at") else r[f] for f in _CSV_FIELDS]
        )
    return text.getvalue().encode("utf-8")


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A zip of `files` that depends on nothing but them: sorted entries, fixed time and permissions."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever system exports it
            archive.writestr(info, files[name], compresslevel=6)
    return buffer.getvalue()


def export_case(workspace: Workspace, settings: AllianceSettings, out: Path, **case) -> dict[str, bytes]:
    """Write the case package to `out` atomically; returns its files."""
    if Path(out).suffix.lower() != ".zip":
        raise AllianceError(f"case package {out} must be a .zip file")
    files = build_case(workspace, settings, **case)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(out), zip_bytes(files), mode=0o644)
    return files


def verify_case(path: Path) -> int:
    """Re-hash every file of a case package against its manifest; the number of files checked.

    Raises `CaseVerifyError` naming the first file that differs, is missing, or is not in the manifest.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CaseVerifyError(f"{path} is not a readable zip: {exc}") from None
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            raise CaseVerifyError(f"{path} has no {MANIFEST}: not a case package")
        try:
            digests = json.loads(archive.read(MANIFEST))["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CaseVerifyError(f"{path}: {MANIFEST} is unreadable: {exc}") from None
        for name in sorted(digests):
            if name not in names:
                raise CaseVerifyError(f"{path}: {name} is in the manifest but missing from the package")
            if hashlib.sha256(archive.read(name)).hexdigest() != digests[name]:
                raise CaseVerifyError(f"{path}: {name} does not match its sha256 in the manifest")
        extra = sorted(names - set(digests) - {MANIFEST})
        if extra:
            raise CaseVerifyError(f"{path}: {extra[0]} is not in the manifest")
    return len(digests)


def _summary(case: dict, records: list[dict]) -> str:
    """The human-readable page: who, what, and per listing the image beside its nearest reference."""
    against = (
        f"seller {case['seller']}"
        if case["seller"]
        else f"cluster {case['cluster']}"
        if case["cluster"]
        else "flagged listings"
    )
    rows = []
    for r in records:
        verdict = r["verdict"]
        verdict_text = (
            f"{verdict['verdict']} by {verdict['reviewer']} at {verdict['verdict_at']}" if verdict else "none"
        )
        listing_img = (
            f"<img src='{html.escape(r['image_file'])}' width='220'>"
            if r["image_file"]
            else "image unavailable"
        )
        nearest = next((ref for ref in r["references"] if ref["file"]), None)
        ref_img = (
            f"<img src='{html.escape(nearest['file'])}' width='220'><br>reference #{nearest['id']} "
            f"({html.escape(str(nearest['brand']))} / {html.escape(str(nearest['product']))}), "
            f"similarity {nearest['similarity']:.3f}"
            if nearest
            else "no reference image in the catalog"
        )
        copied = r["cue_references"].get("cues.copy_reference_id")
        if copied:
            ref_img += f"<br>re-uses the photo of reference #{copied['id']}"
        cues = ", ".join(f"{k} {v:.3g}" for k, v in sorted(r["cues"].items()) if isinstance(v, int | float))
        score = "n/a" if r["score"] is None else f"{r['score']:.3f}"
        rows.append(
            f"<tr><td>{listing_img}</td><td>{ref_img}</td><td><b>{html.escape(r['listing_id'])}</b><br>"
            f"seller {html.escape(str(r['seller_id']))}<br>{html.escape(str(r['title']))}<br>"
            f"score {score}, decision <b>{html.escape(str(r['decision']))}</b><br>"
            f"model {html.escape(str(r['model_version']))}, scored {html.escape(r['scored_at'])}<br>"
            f"verdict: {html.escape(verdict_text)}<br><small>{html.escape(cues)}</small></td></tr>"
        )
    window = f" since {case['since']}" if case["since"] else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Case: {html.escape(case['brand'])} against {html.escape(against)}</title>"
        "<style>body{font-family:sans-serif}td{vertical-align:top;padding:6px;border-bottom:1px solid #ccc}"
        "</style></head><body>"
        f"<h1>{html.escape(case['brand'])}: case against {html.escape(against)}</h1>"
        f"<p>{len(records)} listing(s) scored{html.escape(window)}. Every file of this package is listed with its "
        "sha256 in manifest.json; <code>brandsentry case verify</code> re-checks them.</p>"
        f"<table>{''.join(rows)}</table></body></html>"
    )
