"""The synthetic marketplace: determinism, manifest consistency, every kind present, speed, the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brandsentry.cli import main
from brandsentry.config import load_config
from brandsentry.errors import ConfigError
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
from brandsentry.settings import default_settings
from brandsentry.synth import (
    COUNTERFEIT_KINDS,
    ERROR_KINDS,
    LISTING_COLUMNS,
    REFERENCE_COLUMNS,
    SynthWorldError,
    contact_sheet,
    generate_day,
    generate_world,
)
from brandsentry.synth.brands import (
    DESIGN_KINDS,
    WorldParams,
    alter_emblem,
    build_world,
    counterfeit_design,
    misspell,
    rng_for,
)
from brandsentry.synth.render import render_emblem, render_front

TINY_SECONDS = 30  # "seconds": ~5 s on the 2-core dev box even while other jobs share it


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config(["synth=tiny"]).synth


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory, tiny_cfg):
    out = tmp_path_factory.mktemp("tiny")
    started = time.perf_counter()
    summary = generate_world(out, tiny_cfg, workers=1)
    return summary, time.perf_counter() - started


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        return list(reader.fieldnames or []), list(reader)


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_tiny_preset_runs_in_seconds(tiny_world):
    summary, seconds = tiny_world
    assert seconds < TINY_SECONDS, f"tiny world took {seconds:.1f} s"
    assert (summary.brands, summary.products) == (3, 6)
    assert summary.listings == 60
    assert summary.references == 6 * (4 + 1 + 1)


def test_same_seed_same_bytes_whatever_the_worker_count(tiny_world, tiny_cfg, tmp_path):
    summary, _ = tiny_world
    again = generate_world(tmp_path / "again", tiny_cfg, workers=2)
    assert digests(again.out_dir) == digests(summary.out_dir)


def test_another_seed_gives_another_world(tiny_world, tmp_path):
    summary, _ = tiny_world
    cfg = load_config(["synth=tiny", "seed=7", "synth.listings=20", "synth.min_per_kind=1"]).synth
    other = generate_world(tmp_path / "other", cfg, workers=1)
    mine = json.loads((summary.out_dir / "brands.json").read_text())
    theirs = json.loads((other.out_dir / "brands.json").read_text())
    assert [b["name"] for b in mine["brands"]] != [b["name"] for b in theirs["brands"]]


def test_listing_manifest_is_consistent(tiny_world):
    summary, _ = tiny_world
    out = summary.out_dir
    columns, rows = read_csv(out / "listings_day1.csv")
    assert tuple(columns) == LISTING_COLUMNS
    brands = {b["name"]: b for b in json.loads((out / "brands.json").read_text())["brands"]}
    splits = {p["id"]: p["split"] for b in brands.values() for p in b["products"]}
    assert len({r["listing_id"] for r in rows}) == len(rows)
    for row in rows:
        assert row["listing_id"].startswith("d1-")
        assert not Path(row["image_path"]).is_absolute()
        assert (out / row["image_path"]).is_file(), row["image_path"]
        assert row["claimed_brand"] in brands
        assert row["claimed_product"] in splits
        assert row["split"] == splits[row["claimed_product"]]
        assert row["title"].startswith(row["claimed_brand"])
        assert float(row["price"]) > 0 and row["seller_id"]
        kind = row["counterfeit_kind"]
        assert kind in ("", *COUNTERFEIT_KINDS, *ERROR_KINDS)
        assert row["label"] == ("authentic" if kind == "" else "counterfeit")


def test_every_kind_appears_at_least_twice_in_tiny(tiny_world):
    summary, _ = tiny_world
    _, rows = read_csv(summary.out_dir / "listings_day1.csv")
    counts = {
        kind: sum(r["counterfeit_kind"] == kind for r in rows) for kind in (*COUNTERFEIT_KINDS, *ERROR_KINDS)
    }
    assert all(count >= 2 for count in counts.values()), counts
    assert sum(r["label"] == "authentic" for r in rows) >= 20
    assert {r["split"] for r in rows} == {"train", "validation", "test"}


def test_references_and_sellers_are_consistent(tiny_world):
    summary, _ = tiny_world
    out = summary.out_dir
    columns, refs = read_csv(out / "references.csv")
    assert tuple(columns) == REFERENCE_COLUMNS
    assert {r["view"] for r in refs} == {"product", "logo", "packaging"}
    brands = json.loads((out / "brands.json").read_text())["brands"]
    products = {p["id"]: b["name"] for b in brands for p in b["products"]}
    for ref in refs:
        assert (out / ref["image_path"]).is_file()
        assert products[ref["product"]] == ref["brand"]
    _, authorised = read_csv(out / "authorized_sellers.csv")
    by_brand = {b["name"]: set(b["authorized_sellers"]) for b in brands}
    assert {(r["brand"], r["seller_id"]) for r in authorised} == {
        (b, s) for b, ss in by_brand.items() for s in ss
    }
    for brand in brands:
        assert (out / brand["logo_image"]).is_file() and (out / brand["emblem_image"]).is_file()
        assert (
            brand["wordmark"]
            and brand["font"].endswith(".ttf")
            and brand["palette"]["primary"].startswith("#")
        )


def test_official_photos_are_authentic_only_from_authorised_sellers(tiny_world):
    summary, _ = tiny_world
    out = summary.out_dir
    _, refs = read_csv(out / "references.csv")
    _, rows = read_csv(out / "listings_day1.csv")
    _, authorised = read_csv(out / "authorized_sellers.csv")
    allowed = {(r["brand"], r["seller_id"]) for r in authorised}
    official = {hashlib.sha256((out / r["image_path"]).read_bytes()).digest() for r in refs}
    stolen = [r for r in rows if r["counterfeit_kind"] == "stolen_photo"]
    assert stolen and all((r["claimed_brand"], r["seller_id"]) not in allowed for r in stolen)
    exact_copies = [
        r for r in rows if hashlib.sha256((out / r["image_path"]).read_bytes()).digest() in official
    ]
    for row in exact_copies:
        if row["label"] == "authentic":
            assert (row["claimed_brand"], row["seller_id"]) in allowed
        else:
            assert row["counterfeit_kind"] == "stolen_photo"


def test_images_decode_except_the_undecodable_ones(tiny_world):
    summary, _ = tiny_world
    out = summary.out_dir
    low, high = 400, 720
    _, refs = read_csv(out / "references.csv")
    for ref in refs:
        assert low <= max(Image.open(out / ref["image_path"]).size) <= high
    _, rows = read_csv(out / "listings_day1.csv")
    sides = []
    limits = default_settings(DecodeLimits, "images")
    for row in rows:
        path = out / row["image_path"]
        if row["counterfeit_kind"] == "undecodable":
            with pytest.raises(ImageDecodeError):
                decode_image(path, limits)
            continue
        rgb = decode_image(path, limits)
        assert rgb.ndim == 3 and rgb.shape[2] == 3
        sides.append(max(Image.open(path).size))
    assert max(sides) <= high
    assert np.mean(np.array(sides) >= low) > 0.9  # only cropped copies of official photos may be smaller


def test_later_day_has_new_listings_sellers_and_drift(tiny_world, tiny_cfg, tmp_path):
    summary, _ = tiny_world
    out = tmp_path / "world"
    shutil.copytree(summary.out_dir, out)
    manifest = generate_day(out, tiny_cfg, 2, workers=1)
    assert manifest == out / "listings_day2.csv"
    _, day1 = read_csv(out / "listings_day1.csv")
    columns, day2 = read_csv(manifest)
    assert tuple(columns) == LISTING_COLUMNS
    assert all(r["listing_id"].startswith("d2-") for r in day2)
    assert not {r["listing_id"] for r in day1} & {r["listing_id"] for r in day2}
    assert all((out / r["image_path"]).is_file() for r in day2)
    assert any(r["seller_id"].startswith("s002") for r in day2), "no seller joined on day 2"
    mix = [
        {k: sum(r["counterfeit_kind"] == k for r in day) for k in COUNTERFEIT_KINDS} for day in (day1, day2)
    ]
    assert mix[0] != mix[1]
    assert all(count >= 2 for count in mix[1].values())
    first = digests(out / "listings" / "day2")
    generate_day(out, tiny_cfg, 2, workers=2)
    assert digests(out / "listings" / "day2") == first


def test_day_needs_the_same_world(tiny_world, tmp_path):
    summary, _ = tiny_world
    with pytest.raises(SynthWorldError, match="world.json"):
        generate_day(tmp_path / "empty", load_config(["synth=tiny"]).synth, 2)
    other = load_config(["synth=tiny", "synth.brands=4"]).synth
    with pytest.raises(SynthWorldError, match="brands"):
        generate_day(summary.out_dir, other, 2)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+synth.counterfeit_mix.fake_kind=1", "fake_kind"),
        ("synth.listings=10", "too few"),
        ("synth.brands=0", "synth.brands"),
        ("synth.split.train=0.9", "split"),
        ("+synth.listing=70", r"synth\.listing \(did you mean synth\.listings\?\)"),
        ("+synth.resolution.mid=500", r"synth\.resolution\.mid"),
        ("~synth.counterfeit_mix.wrong_font", r"no weight for \['wrong_font'\]"),
        ("~synth.drift", r"synth\.drift not set"),
        ("synth.brands=2.5", r"synth\.brands must be int"),
    ],
)
def test_bad_parameters_are_refused(tmp_path, override, message):
    cfg = load_config(["synth=tiny", override]).synth
    with pytest.raises(ConfigError, match=message):
        generate_world(tmp_path, cfg)


# ---------------------------------------------------------------------------------------------- counterfeits


@pytest.fixture(scope="module")
def model():
    return build_world(
        WorldParams(
            seed=3,
            brands=6,
            products_per_brand=2,
            authorized_per_brand=2,
            seller_pool=10,
            split=(0.6, 0.2, 0.2),
        )
    )


def test_misspelling_is_one_edit_away():
    rng = rng_for(0)
    for word in ("VELQUORA", "Hexmoor", "Brisanth", "OBRAVIK"):
        for _ in range(20):
            wrong = misspell(word, rng)
            assert wrong != word and wrong[0] == word[0]
            assert abs(len(wrong) - len(word)) <= 1


def test_each_kind_changes_only_its_element(model):
    changed = {
        "misspelled_wordmark": {"wordmark"},
        "wrong_font": {"font"},
        "wrong_logo_colour": {"wordmark_colour", "emblem"},
        "altered_emblem": {"emblem"},
        "packaging_colour_shift": {"palette"},
        "low_print_quality": {"print_defect", "print_strength"},
    }
    for index, product in enumerate(model.products):
        for kind in DESIGN_KINDS:
            fake = counterfeit_design(product, kind, rng_for(1, index, DESIGN_KINDS.index(kind)), model)
            differs = {
                f.name for f in fields(fake) if getattr(fake, f.name) != getattr(product.design, f.name)
            }
            if kind == "lookalike_product":
                assert {"wordmark", "emblem", "barcode"} <= differs and "packaging" not in differs
            else:
                assert differs == changed[kind], (kind, differs)


def test_logo_counterfeits_differ_inside_the_logo_only(model):
    design = model.products[0].design
    genuine, box = render_front(design, 420, 600)
    for kind in ("misspelled_wordmark", "wrong_font", "wrong_logo_colour", "altered_emblem"):
        fake_design = counterfeit_design(model.products[0], kind, rng_for(5, DESIGN_KINDS.index(kind)), model)
        fake, fake_box = render_front(fake_design, 420, 600)
        diff = np.abs(genuine.astype(int) - fake.astype(int)).sum(axis=2) > 0
        x0, y0 = min(box[0], fake_box[0]), min(box[1], fake_box[1])
        x1, y1 = max(box[2], fake_box[2]), max(box[3], fake_box[3])
        inside = diff[y0:y1, x0:x1].mean()
        diff[y0:y1, x0:x1] = False
        assert inside > 0.005, kind
        assert not diff.any(), f"{kind} changed pixels outside the logo"


def test_mirrored_or_distorted_emblem_is_a_visible_difference(model):
    for brand in model.brands:
        genuine = np.asarray(render_emblem(brand.emblem, 96), dtype=float)
        mirrored = np.asarray(render_emblem(replace(brand.emblem, mirrored=True), 96), dtype=float)
        assert np.abs(genuine - mirrored).mean() > 4, brand.emblem.describe()
        for seed in range(4):
            altered = render_emblem(alter_emblem(brand.emblem, rng_for(seed)), 96)
            if altered.size == (96, 96):
                assert np.abs(genuine - np.asarray(altered, dtype=float)).mean() > 2, brand.emblem.describe()


# ---------------------------------------------------------------------------------------------- CLI, sheet


def test_cli_adds_a_day_and_draws_a_contact_sheet(tiny_world, tmp_path, capsys):
    summary, _ = tiny_world
    out = tmp_path / "world"
    shutil.copytree(summary.out_dir, out)
    assert main(["synth", "world", "synth=tiny", f"out={out}", "day=3"]) == 0
    assert (out / "listings_day3.csv").is_file()
    assert not (out / "listings_day2.csv").exists()
    sheet = tmp_path / "sheet.png"
    assert main(["synth", "sheet", "synth=tiny", f"out={out}", "day=3", "--output", str(sheet)]) == 0
    assert "contact sheet" in capsys.readouterr().out
    image = Image.open(sheet)
    assert image.width > 600 and image.height > 600
    assert sheet.stat().st_size < 600 * 1024


def test_contact_sheet_needs_the_day(tiny_world):
    summary, _ = tiny_world
    with pytest.raises(SynthWorldError, match="day 9"):
        contact_sheet(summary.out_dir, 9)
