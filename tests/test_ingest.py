"""Reference intake: validation, exact and near dedupe, atomic storage, concurrency, manifests."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from brandsentry.catalog import Catalog
from brandsentry.config import load_config
from brandsentry.errors import ConfigError
from brandsentry.images import DecodeLimits
from brandsentry.ingest import (
    ImageStore,
    IngestConfig,
    IngestOutcome,
    IngestReport,
    IngestSettings,
    ManifestError,
    import_references,
    ingest_reference,
)
from brandsentry.settings import default_settings

LIMITS = DecodeLimits(max_pixels=4_000_000, max_bytes=2_000_000, max_side=1024)
INGEST = default_settings(IngestConfig, "ingest")
OPTIONS = dict(
    submitted_by="tester", limits=LIMITS, phash_threshold=6, approve=True, views=INGEST.views,
    min_side=INGEST.min_side,
)  # fmt: skip


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random scene with a few shapes: distinct per seed, stable under resizing and re-encoding."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(0, size[0] - 60), rng.integers(0, size[1] - 60)
        width, height = rng.integers(20, 60, 2)
        draw.ellipse((x, y, x + width, y + height), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog.sqlite") as opened:
        yield opened


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


def ingest(catalog, store, source, brand="Acme", product="Widget", view="product", **options):
    return ingest_reference(
        catalog, store, source, brand=brand, product=product, view=view, **{**OPTIONS, **options}
    )


def test_image_store_is_content_addressed_and_atomic(store):
    data = encode(photo(1))
    sha256, path = store.put(data, ".jpg")
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert path == store.root / sha256[:2] / sha256[2:4] / f"{sha256}.jpg"
    assert path.read_bytes() == data
    assert store.put(data, ".jpg") == (sha256, path)
    assert store.path_of(path.relative_to(store.root).as_posix()) == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind
    with pytest.raises(ValueError, match=r"suffix must look like '.jpg', got '/../x'"):
        store.put(data, "/../x")


def test_accepted_reference_records_provenance_and_stores_the_bytes(catalog, store, tmp_path):
    data = encode(photo(1, (400, 300)), quality=90)
    outcome = ingest(catalog, store, data, source_name="../../etc/Shoe Photo.JPG", approve=False)
    assert outcome.status == "accepted" and outcome.warnings == () and outcome.reason is None
    assert outcome.source == "../../etc/Shoe Photo.JPG"
    ref = catalog.get(outcome.reference_id)
    assert (ref.brand, ref.product, ref.view, ref.status) == ("Acme", "Widget", "product", "pending")
    assert (ref.width, ref.height, ref.submitted_by) == (400, 300, "tester")
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.source_name == "Shoe Photo.JPG"  # the bare name, for display only
    assert ref.stored_path == f"{ref.sha256[:2]}/{ref.sha256[2:4]}/{ref.sha256}.jpg"
    assert store.path_of(ref.stored_path).read_bytes() == data
    assert len(ref.phash) == 16
    assert not (tmp_path / "etc").exists()


def test_file_source_and_names_are_stripped(catalog, store, tmp_path):
    path = tmp_path / "shot.png"
    photo(2).save(path)
    outcome = ingest(catalog, store, path, brand="  Acme ", product=" Widget", view=" LOGO ")
    ref = catalog.get(outcome.reference_id)
    assert (ref.brand, ref.product, ref.view, ref.status) == ("Acme", "Widget", "logo", "approved")
    assert ref.stored_path.endswith(".png") and ref.source_name == "shot.png"
    assert outcome.source == str(path)


def truncated_jpeg() -> bytes:
    data = encode(photo(3, (600, 400)), quality=95)
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    """A PNG whose header is fine but whose compressed pixel data is damaged."""
    data = bytearray(encode(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG"))
    start = data.find(b"IDAT") + 6
    data[start : start + 6] = b"\xff" * 6
    return bytes(data)


def bomb_png() -> bytes:
    return encode(Image.new("L", (3000, 3000)), "PNG")  # 9 Mpx > LIMITS.max_pixels


@pytest.mark.parametrize(
    ("kwargs", "source", "reason"),
    [
        ({"brand": " "}, "good", "missing_brand"),
        ({"product": ""}, "good", "missing_product"),
        ({"view": "side"}, "good", "unknown_view"),
        ({"view": "logo", "views": ("product",)}, "good", "unknown_view"),
        ({}, "missing", "missing_file"),
        ({}, "directory", "not_a_file"),
        ({}, b"", "empty_file"),
        ({}, b"this is not an image", "unsupported_format"),
        ({}, truncated_jpeg(), "truncated"),
        ({}, corrupt_png(), "corrupt"),
        ({}, bomb_png(), "decompression_bomb"),
        ({"limits": default_settings(DecodeLimits, "images", max_bytes=100)}, "good", "too_many_bytes"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_every_rejection_reason_surfaces(catalog, store, tmp_path, kwargs, source, reason):
    if source == "good":
        source = encode(photo(4))
    elif source == "missing":
        source = tmp_path / "nowhere.jpg"
    elif source == "directory":
        source = tmp_path
    outcome = ingest(catalog, store, source, **kwargs)
    assert (outcome.status, outcome.reason) == ("rejected", reason), outcome
    assert outcome.reference_id is None
    assert catalog.list_references() == []
    assert not store.root.exists() or not any(p.is_file() for p in store.root.rglob("*"))


def test_exact_duplicate_names_the_reference_held_across_brands(catalog, store):
    data = encode(photo(5))
    first = ingest(catalog, store, data)
    again = ingest(catalog, store, data, brand="Other", source_name="copy.jpg")
    assert again == IngestOutcome(
        source="copy.jpg",
        status="duplicate",
        duplicate_of=first.reference_id,
        reason="exact_duplicate",
        detail=f"same bytes as reference {first.reference_id} (Acme)",
    )
    assert len(catalog.list_references()) == 1


def test_resized_reencoded_copy_is_a_near_duplicate_and_a_different_photo_is_not(catalog, store):
    original = photo(6, (480, 360))
    first = ingest(catalog, store, encode(original, "PNG"))
    copy = encode(original.resize((300, 225), Image.Resampling.LANCZOS), quality=70)
    near = ingest(catalog, store, copy)
    assert (near.status, near.reason, near.duplicate_of) == (
        "duplicate",
        "near_duplicate",
        first.reference_id,
    )
    assert "bits from reference" in near.detail
    different = ingest(catalog, store, encode(photo(7, (480, 360)), "PNG"))
    assert different.status == "accepted"
    # near dedupe is per brand: the same picture under another brand is that brand's own reference
    assert ingest(catalog, store, copy, brand="Other").status == "accepted"
    # threshold 0 only catches identical hashes
    assert ingest(catalog, store, encode(original, quality=80), phash_threshold=-1).status == "accepted"


def test_withdrawn_reference_does_not_block_resubmission(catalog, store):
    data = encode(photo(8))
    first = ingest(catalog, store, data)
    catalog.set_status([first.reference_id], "withdrawn", reason="mistake")
    again = ingest(catalog, store, data)
    assert again.status == "accepted" and again.reference_id != first.reference_id


def test_warnings_for_low_resolution_animated_and_exif_rotated(catalog, store):
    small = ingest(catalog, store, encode(photo(9, (160, 120))))
    assert small.status == "accepted"
    assert small.warnings == ("low_resolution: 160x120 is below 224 px on the shorter side",)

    frames = [photo(10), photo(11)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    animated = ingest(catalog, store, gif.getvalue())
    assert animated.warnings == ("multi_frame: the first of 2 frames is used",)
    assert catalog.get(animated.reference_id).stored_path.endswith(".gif")

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: a 400x300 sensor image is 300x400 upright
    rotated = ingest(catalog, store, encode(photo(12, (400, 300)), exif=exif))
    ref = catalog.get(rotated.reference_id)
    assert (ref.width, ref.height) == (300, 400)


def test_twenty_concurrent_uploads_of_the_same_bytes_accept_exactly_one(catalog, store):
    data = encode(photo(13))
    barrier = threading.Barrier(20)

    def upload(number: int) -> IngestOutcome:
        barrier.wait()
        return ingest(catalog, store, data, source_name=f"upload{number}.jpg", approve=False)

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(upload, range(20)))
    accepted = [outcome for outcome in outcomes if outcome.status == "accepted"]
    assert len(accepted) == 1
    duplicates = [outcome for outcome in outcomes if outcome.status == "duplicate"]
    assert len(duplicates) == 19
    assert {outcome.duplicate_of for outcome in duplicates} == {accepted[0].reference_id}
    assert [ref.id for ref in catalog.list_references()] == [accepted[0].reference_id]


def _upload_in_process(args) -> tuple[str, int | None, int | None]:
    catalog_path, store_root, data = args
    with Catalog(catalog_path) as catalog:
        outcome = ingest(catalog, ImageStore(store_root), data)
    return outcome.status, outcome.reference_id, outcome.duplicate_of


def test_concurrent_uploads_from_several_processes_accept_exactly_one(tmp_path):
    catalog_path, store_root = tmp_path / "catalog.sqlite", tmp_path / "images"
    Catalog(catalog_path).close()
    data = encode(photo(14))
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_upload_in_process, [(catalog_path, store_root, data)] * 8))
    statuses = sorted(status for status, _, _ in results)
    assert statuses == ["accepted"] + ["duplicate"] * 7
    (accepted_id,) = [ref_id for status, ref_id, _ in results if status == "accepted"]
    assert {dup for status, _, dup in results if status == "duplicate"} == {accepted_id}


def write_manifest(folder, rows, columns=("image_path", "brand", "product", "view")) -> None:
    frame = pd.DataFrame(rows, columns=list(columns))
    frame.to_csv(folder / "refs.csv", index=False)


def test_manifest_rows_each_get_an_outcome(catalog, store, tmp_path):
    (tmp_path / "img").mkdir()
    photo(20).save(tmp_path / "img" / "a.jpg")
    photo(21).save(tmp_path / "img" / "b.png")
    absolute = tmp_path / "elsewhere.jpg"
    photo(22).save(absolute)
    (tmp_path / "img" / "broken.jpg").write_bytes(b"garbage")
    write_manifest(
        tmp_path,
        [
            ("img/a.jpg", "Acme", "Widget", "product"),
            ("img/b.png", "Acme", "Widget", ""),
            (str(absolute), "Zeta", "Gadget", "packaging"),
            ("img/a.jpg", "Acme", "Widget", "logo"),
            ("img/broken.jpg", "Acme", "Widget", "product"),
            ("", "Acme", "Widget", "product"),
            ("img/none.jpg", "Acme", "Widget", "product"),
            ("img/b.png", "Acme", "", "product"),
        ],
    )
    report = import_references(catalog, store, tmp_path / "refs.csv", **OPTIONS)
    summary = [(outcome.source, outcome.status, outcome.reason) for outcome in report.outcomes]
    assert summary == [
        ("img/a.jpg (row 2)", "accepted", None),
        ("img/b.png (row 3)", "accepted", None),
        (f"{absolute} (row 4)", "accepted", None),
        ("img/a.jpg (row 5)", "duplicate", "exact_duplicate"),
        ("img/broken.jpg (row 6)", "rejected", "unsupported_format"),
        ("(row 7)", "rejected", "missing_image_path"),
        ("img/none.jpg (row 8)", "rejected", "missing_file"),
        ("img/b.png (row 9)", "rejected", "missing_product"),
    ]
    assert report.outcomes[1].warnings == ("view not given; taken as 'product'",)
    assert catalog.get(report.outcomes[1].reference_id).view == "product"
    assert report.outcomes[3].duplicate_of == report.outcomes[0].reference_id
    assert (len(report.accepted), len(report.duplicates), len(report.rejected)) == (3, 1, 4)
    assert catalog.brands() == ["Acme", "Zeta"]

    text = report.format()
    assert text.splitlines()[0] == "8 submitted: 3 accepted, 1 duplicate, 4 rejected"
    assert f"img/a.jpg (row 5) -> already held as reference {report.outcomes[0].reference_id}" in text
    assert "rejected   img/none.jpg (row 8): missing_file" in text
    assert "warning    img/b.png (row 3): view not given; taken as 'product'" in text
    assert len(text.splitlines()) == 1 + 8 + 1  # header, one line per row, one warning


def test_parquet_manifest(catalog, store, tmp_path):
    photo(23).save(tmp_path / "a.jpg")
    frame = pd.DataFrame(
        [{"image_path": "a.jpg", "brand": "Acme", "product": "Widget", "view": None, "extra": 1}]
    )
    frame.to_parquet(tmp_path / "refs.parquet")
    report = import_references(catalog, store, tmp_path / "refs.parquet", **OPTIONS)
    assert [outcome.status for outcome in report.outcomes] == ["accepted"]


def test_manifest_missing_columns_fails_before_any_work(catalog, store, tmp_path):
    photo(24).save(tmp_path / "a.jpg")
    write_manifest(tmp_path, [("a.jpg", "Acme")], columns=("image_path", "brand"))
    with pytest.raises(ManifestError, match="lacks column\\(s\\) product, view"):
        import_references(catalog, store, tmp_path / "refs.csv", **OPTIONS)
    assert catalog.list_references() == []
    with pytest.raises(ManifestError, match="does not exist"):
        import_references(catalog, store, tmp_path / "absent.csv", **OPTIONS)


def test_report_without_outcomes_and_an_internal_failure_is_still_an_outcome(catalog, store, tmp_path):
    assert IngestReport(()).format() == "0 submitted: 0 accepted, 0 duplicate, 0 rejected"
    photo(25).save(tmp_path / "a.jpg")
    write_manifest(tmp_path, [("a.jpg", "Acme", "Widget", "product")])
    catalog.close()  # every row now fails for a reason that is not the photo's
    report = import_references(catalog, store, tmp_path / "refs.csv", **OPTIONS)
    (outcome,) = report.outcomes
    assert (outcome.status, outcome.reason) == ("rejected", "internal_error")
    assert "CatalogError" in outcome.detail and "closed" in outcome.detail


def test_settings_from_config(tmp_path):
    cfg = load_config([f"workspace={tmp_path}", "ingest.phash_threshold=4", "images.max_side=512"])
    settings = IngestSettings.from_config(cfg)
    assert settings.phash_threshold == 4 and settings.approve is True
    assert settings.limits.max_side == 512
    assert settings.views == ("product", "logo", "packaging") and settings.min_side == 224
    assert IngestSettings.from_config(cfg, approve=False).approve is False
    assert set(settings.as_kwargs()) == {"limits", "phash_threshold", "approve", "views", "min_side"}
    with pytest.raises(ConfigError, match=r"unknown view\(s\) \['side'\]"):
        IngestSettings.from_config(load_config(["ingest.views=[product,side]"]))
    with pytest.raises(ConfigError, match=r"ingest.min_sides \(did you mean ingest.min_side\?\)"):
        IngestSettings.from_config(load_config(["+ingest.min_sides=100"]))
