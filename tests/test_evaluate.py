"""`brandsentry evaluate`: data-set readers, the tampered-logo benchmark, the suites and their MLflow record.

Every data set is a tiny stand-in of the real layout, generated here: folder-per-label photos (GroZi-120,
logos63) and grocery230's images/ + labels/ with YOLO polygons.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from brandsentry.config import load_config
from brandsentry.evaluation.datasets import (
    DatasetLayoutError,
    folder_split,
    labelled_images,
    package_of,
    read_grocery230,
)
from brandsentry.evaluation.report import SuiteResult, log_result
from brandsentry.evaluation.retrieval import embed_views, run_retrieval, subsample
from brandsentry.evaluation.tamper import (
    TAMPER_KINDS,
    TAMPERS,
    BenchmarkSettings,
    TamperInputs,
    box_of,
    build_benchmark,
    one_letter_changed,
    tamper_change,
)
from brandsentry.settings import default_settings

TINY = ["embedder=tiny_random", "eval.log=false"]


def texture(size: tuple[int, int], seed: int) -> np.ndarray:
    """Blocky random colours: plenty of corners for SIFT, and nothing like another seed's."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST))


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)
    return path


@pytest.fixture
def product_folders(tmp_path):
    """GroZi-120 layout: <product>/<frame>.jpg, 3 products x 9 frames, all frames of a product identical."""
    root = tmp_path / "grozi"
    for product in range(3):
        pixels = texture((96, 128), seed=product)
        for frame in range(9):
            save(root / str(product) / f"{frame}.jpg", pixels)
    return root


def test_folder_split_takes_every_nth_frame_of_each_label(product_folders):
    images = labelled_images(product_folders)
    is_reference = folder_split(images, 7)
    assert len(images) == 27
    names = [
        (label, path.stem)
        for label, path, ref in zip(images.labels, images.paths, is_reference, strict=True)
        if ref
    ]
    assert names == [(str(p), f) for p in range(3) for f in ("0", "7")]


def test_labelled_images_refuses_a_directory_without_label_folders(tmp_path):
    with pytest.raises(DatasetLayoutError, match="no images"):
        labelled_images(tmp_path)


def test_subsample_is_seeded_ordered_and_bounded():
    indices = np.arange(100, 200)
    first, again, other = subsample(indices, 10, 0), subsample(indices, 10, 0), subsample(indices, 10, 1)
    assert len(first) == 10 and np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.all(np.diff(first) > 0) and set(first) <= set(indices)
    assert subsample(indices, None, 0) is indices


def test_retrieval_finds_identical_frames_and_is_deterministic(product_folders):
    cfg = load_config([*TINY, "eval=retrieval", f"eval.data_dir={product_folders}"], config_name="evaluate")
    result = run_retrieval(cfg, progress=False)
    assert result.figures["R@1"] == 1.0 and result.figures["mAP"] == pytest.approx(1.0)
    assert (result.figures["references"], result.figures["queries"], result.figures["failed"]) == (6, 21, 0)
    again = run_retrieval(cfg, progress=False)
    timing = {"embed_images_per_s", "wall_s"}
    assert {k: v for k, v in result.figures.items() if k not in timing} == {
        k: v for k, v in again.figures.items() if k not in timing
    }


def test_retrieval_reports_undecodable_files_instead_of_dropping_them(product_folders):
    (product_folders / "1" / "3.jpg").write_bytes(b"not a jpeg")
    cfg = load_config([*TINY, "eval=retrieval", f"eval.data_dir={product_folders}"], config_name="evaluate")
    result = run_retrieval(cfg, progress=False)
    assert result.figures["failed"] == 1 and result.figures["queries"] == 20
    assert any("3.jpg" in line for line in result.details["failed"])


def test_mirrored_views_average_an_image_with_its_mirror(tmp_path):
    from brandsentry.embed import Embedder

    pixels = texture((96, 96), seed=4)
    image = save(tmp_path / "image.png", pixels)
    mirror = save(tmp_path / "mirror.png", np.ascontiguousarray(pixels[:, ::-1]))
    half = texture((48, 96), seed=3)
    symmetric = save(tmp_path / "sym.png", np.concatenate([half, half[:, ::-1]], axis=1))
    embedder = Embedder.from_config(load_config(["embedder=tiny_random"]).embedder)
    flipped, _ = embed_views(embedder, [image], ("full_flip",))
    of_mirror, _ = embed_views(embedder, [mirror], ("full",))
    assert np.allclose(flipped.vectors, of_mirror.vectors, atol=1e-4)
    plain, _ = embed_views(embedder, [symmetric, image], ("full",))
    both, _ = embed_views(embedder, [symmetric, image], ("full", "full_flip"))
    assert np.allclose(plain.vectors[0], both.vectors[0], atol=1e-4)  # a symmetric image is its own mirror
    assert not np.allclose(plain.vectors[1], both.vectors[1], atol=1e-3)
    assert np.allclose(np.linalg.norm(both.vectors, axis=1), 1.0, atol=1e-5)


def test_eval_knobs_are_the_embedder_options(tmp_path):
    """`eval.gem_p=P` is `embedder.pool=gem embedder.gem_p=P`; no `eval.views` is the embedder's own view."""
    from brandsentry.embed import Embedder
    from brandsentry.evaluation.retrieval import RetrievalSettings, suite_embedder_config, suite_views

    files = [save(tmp_path / f"{seed}.png", texture((96, 80), seed)) for seed in range(2)]
    cfg = load_config([*TINY, "eval=retrieval", "eval.data_dir=x", "eval.gem_p=3"], config_name="evaluate")
    suite = RetrievalSettings.from_config(cfg.eval)
    assert suite.gem_p == 3.0 and suite.views is None
    shorthand = Embedder.from_config(suite_embedder_config(cfg.embedder, suite.gem_p))
    plain = OmegaConf.to_container(cfg.embedder)
    options = Embedder.from_config({**plain, "view": "full", "pool": "gem", "gem_p": 3.0})
    assert shorthand.identity.pool == "gem" and shorthand.identity.gem_p == 3.0
    assert suite_views(suite.views, shorthand) == ("center",) and suite_views(suite.views, options) == (
        "full",
    )
    via_knobs, _ = embed_views(shorthand, files, ("full",))
    via_options, _ = embed_views(options, files)  # the production path: embed_files
    assert np.allclose(via_knobs.vectors, via_options.vectors, atol=1e-5)
    average, _ = embed_views(Embedder.from_config(cfg.embedder), files, ("full",))
    assert not np.allclose(average.vectors, via_options.vectors, atol=1e-3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["eval=retrieval", "+eval.max_query=5"], r"eval\.max_query \(did you mean eval\.max_queries\?\)"),
        (["eval=logo_brand", "eval.views=[center, flop]"], r"unknown eval\.views \['flop'\]"),
        (["eval=tampered_logo", "+eval.benchmark.kind=[mirrored]"], r"did you mean eval\.benchmark\.kinds\?"),
        (
            ["eval=tampered_logo", "+eval.benchmark.photometric.jpeg=[5, 9]"],
            r"unknown config key\(s\) eval\.benchmark\.photometric\.jpeg;",
        ),
        (
            ["eval=tampered_logo", "eval.benchmark.kinds=[mirrored, smudged]"],
            r"unknown tamper kind\(s\) \['smudged'\]",
        ),
        (["eval=retrieval", "+finetune.epoch=1"], r"finetune\.epoch \(did you mean finetune\.epochs\?\)"),
        (["eval=retrieval", "finetune.batch_size=1"], r"finetune needs epochs >= 1 and batch_size >= 2"),
    ],
)
def test_eval_and_finetune_settings_refuse_unknown_keys_and_bad_values(overrides, message):
    from brandsentry.errors import ConfigError
    from brandsentry.evaluation import suite_settings
    from brandsentry.finetune import FinetuneSettings

    cfg = load_config([*TINY, "eval.data_dir=x", *overrides], config_name="evaluate")
    with pytest.raises(ConfigError, match=message):
        suite_settings(cfg)
        FinetuneSettings.from_config(cfg.finetune)


def test_eval_settings_need_the_data_dir():
    from brandsentry.errors import ConfigError
    from brandsentry.evaluation import evaluate

    with pytest.raises(ConfigError, match=r"eval\.data_dir not set"):
        evaluate([*TINY, "eval=logo_brand"], progress=False)


@pytest.fixture
def logo_folders(tmp_path):
    """logos63 layout: <brand>/<n>.png, 3 brands x 3 logos (one design per brand at three scales)."""
    root = tmp_path / "logos"
    for brand in range(3):
        design = Image.fromarray(texture((200, 160), seed=10 + brand))
        for n, scale in enumerate((1.0, 0.85, 0.7)):
            size = (int(200 * scale), int(160 * scale))
            save(
                root / f"brand{brand}" / f"{n}.png",
                np.asarray(design.resize(size, Image.Resampling.BILINEAR)),
            )
    return root


def test_logo_brand_leaves_each_logo_out_and_the_logo_cue_finds_its_brand(logo_folders):
    from brandsentry.evaluation.logo_brand import run_logo_brand

    cfg = load_config([*TINY, "eval=logo_brand", f"eval.data_dir={logo_folders}"], config_name="evaluate")
    result = run_logo_brand(cfg, progress=False)
    figures = result.figures
    assert (figures["queries"], figures["brands"], figures["templates"]) == (9, 3, 9)
    # each query still has two scaled copies of its design among the templates, and nothing else matches
    assert figures["logo_cue_R@1"] == 1.0 and figures["logo_cue_verified"] == 1.0
    assert 0.0 <= figures["embedder_R@1"] <= figures["embedder_R@5"] <= 1.0


# ---- grocery230 and the tampered-logo benchmark ------------------------------------------------------------


def draw_package(seed: int, text: str) -> np.ndarray:
    """A 160 x 160 'package': textured background with a flat logo box holding a wordmark."""
    pixels = texture((160, 160), seed)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    draw.rectangle((30, 40, 130, 80), fill=(250, 240, 30))
    draw.text((80, 60), text, fill=(200, 20, 20), anchor="mm", font_size=28)
    return np.asarray(image)


LOGO_BOX = (30, 40, 131, 81)


@pytest.fixture(scope="module")
def grocery(tmp_path_factory):
    """grocery230 layout: images/<package>_jpg.rf.<hash>.jpg (3 per package) + labels/<stem>.txt polygons."""
    root = tmp_path_factory.mktemp("grocery")
    x0, y0, x1, y1 = (v / 160 for v in LOGO_BOX)
    polygon = f"0 {x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1}\n"
    for package, text in enumerate(("ACME", "ZORB", "KIVO", "PLUM")):
        for shot in range(3):
            stem = f"pack-{package}_jpg.rf.{hashlib.md5(f'{package}{shot}'.encode()).hexdigest()}"
            pixels = draw_package(100 + package, text)
            save(root / "images" / f"{stem}.jpg", np.roll(pixels, 2 * shot, axis=0))
            (root / "labels").mkdir(parents=True, exist_ok=True)
            (root / "labels" / f"{stem}.txt").write_text(polygon)
    return root


def test_grocery230_reader_groups_photos_by_package_and_scales_polygons(grocery):
    photos = read_grocery230(grocery)
    assert len(photos) == 12 and len({p.package for p in photos}) == 4
    assert package_of("pack-0_jpg.rf.0123abcd.jpg") == "pack-0_jpg"
    assert np.allclose(photos[0].logos[0].min(axis=0), LOGO_BOX[:2])


def test_grocery230_reader_names_a_malformed_label_line(grocery, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(grocery, broken)
    label = sorted((broken / "labels").iterdir())[0]
    label.write_text("0 0.1 0.2 0.3\n")
    with pytest.raises(DatasetLayoutError, match=label.name):
        read_grocery230(broken)


def test_one_letter_changed_changes_exactly_one_letter_and_keeps_case():
    rng = np.random.default_rng(0)
    for word in ("PATANJALI", "closeup", "Dove"):
        changed = one_letter_changed(word, rng)
        differ = [i for i, (a, b) in enumerate(zip(word, changed, strict=True)) if a != b]
        assert len(differ) == 1 and changed[differ[0]].isupper() == word[differ[0]].isupper()


@pytest.mark.parametrize("kind", TAMPER_KINDS)
def test_every_tamper_changes_the_logo_and_nothing_far_from_it(kind):
    photo = draw_package(7, "ACME")
    polygon = np.array([[30, 40], [131, 40], [131, 81], [30, 81]], dtype=float)
    inputs = TamperInputs(wordmark="ACME", donor_logo=texture((60, 30), seed=99))
    tampered = TAMPERS[kind](photo, (polygon,), np.random.default_rng(0), inputs)
    assert tampered.shape == photo.shape and tampered.dtype == np.uint8
    assert tamper_change(photo, tampered, (polygon,)) >= 10.0
    far = np.ones(photo.shape[:2], bool)
    x0, y0, x1, y1 = box_of(polygon, photo.shape, margin=0.75)  # a shift moves the logo up to 0.7 box sizes
    far[y0:y1, x0:x1] = False
    assert np.array_equal(tampered[far], photo[far])


def test_tampers_that_need_a_wordmark_or_donor_do_not_apply_without_one():
    photo, polygon = draw_package(7, "ACME"), np.array([[30, 40], [131, 40], [131, 81], [30, 81]], float)
    rng = np.random.default_rng(0)
    assert TAMPERS["retyped_wordmark"](photo, (polygon,), rng, TamperInputs()) is None
    assert TAMPERS["replaced_logo"](photo, (polygon,), rng, TamperInputs()) is None


def test_hue_rotation_of_a_grey_logo_is_too_small_to_count():
    photo = np.full((100, 100, 3), 128, np.uint8)
    polygon = np.array([[20, 20], [80, 20], [80, 80], [20, 80]], dtype=float)
    tampered = TAMPERS["hue_rotated"](photo, (polygon,), np.random.default_rng(0), TamperInputs())
    assert tamper_change(photo, tampered, (polygon,)) < 10.0


# the split and class sizes the end-to-end run needs: calibration holds out one train package, which must
# bring 5 listings of each class (2 listing photos x 3)
SMALL = {
    "split": {"train": 0.5, "validation": 0.25, "test": 0.25},
    "authentic_per_photo": 3,
    "counterfeits_per_photo": 3,
}


def small_settings(**changes) -> BenchmarkSettings:
    """configs/eval/tampered_logo.yaml's benchmark (seed 0) with SMALL and `changes`."""
    changes = {**SMALL, "ocr_threads": 1, **changes}
    return default_settings(BenchmarkSettings, "eval.benchmark/tampered_logo", **changes)


@pytest.fixture(scope="module")
def benchmark(grocery, tmp_path_factory):
    return build_benchmark(grocery, tmp_path_factory.mktemp("bench"), small_settings())


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_benchmark_manifests_split_by_package_and_balance_classes(benchmark):
    references, listings = read_rows(benchmark.references), read_rows(benchmark.listings)
    assert {r["view"] for r in references} == {"product", "logo"}
    assert sum(r["view"] == "product" for r in references) == 4
    assert len(listings) == 4 * 2 * (3 + 3)  # packages x listing photos x (authentic + counterfeit)
    labels = [r["label"] for r in listings]
    assert labels.count("authentic") == labels.count("counterfeit") == 24
    assert all((r["label"] == "counterfeit") == bool(r["counterfeit_kind"]) for r in listings)
    split_of = {}
    for row in listings:
        assert split_of.setdefault(row["claimed_brand"], row["split"]) == row["split"]
    assert sorted(split_of.values()) == ["test", "train", "train", "validation"]
    reference_photos = {Path(r["image_path"]).name for r in references if r["view"] == "product"}
    listed = {r["source_photo"] for r in listings}
    assert not reference_photos & listed  # a reference photo never reappears as a listing
    for row in listings:
        assert (benchmark.root / row["image_path"]).is_file()
    assert sum(benchmark.summary["counterfeits_per_kind"].values()) == 24
    per_photo = {}
    for row in listings:
        per_photo.setdefault((row["claimed_brand"], row["source_photo"]), []).append(row["counterfeit_kind"])
    assert all(len(set(kinds) - {""}) == 3 for kinds in per_photo.values())  # 3 different kinds per photo


@pytest.mark.slow
def test_benchmark_is_byte_identical_for_a_seed_and_reused_when_unchanged(grocery, benchmark, tmp_path):
    def digest(root: Path) -> str:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in {".jpg", ".png", ".csv"})
        return hashlib.sha256(
            b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes() for p in files)
        ).hexdigest()

    second = build_benchmark(grocery, tmp_path / "b", small_settings())
    assert digest(second.root) == digest(benchmark.root)
    other = build_benchmark(grocery, tmp_path / "c", small_settings(seed=1))
    assert digest(other.root) != digest(benchmark.root)
    stamp = benchmark.listings.stat().st_mtime_ns
    again = build_benchmark(grocery, benchmark.root, small_settings())
    assert again.listings.stat().st_mtime_ns == stamp and again.summary == benchmark.summary
    changed = build_benchmark(grocery, tmp_path / "b", small_settings(authentic_per_photo=1))
    assert len(read_rows(changed.listings)) == 4 * 2 * (1 + 3)
    assert len(list((tmp_path / "b" / "listings").iterdir())) == 4 * 2 * (
        1 + 3
    )  # nothing left of the old one


# ---- MLflow and the command line -------------------------------------------------------------------------------


def test_cli_prints_the_figures_and_logs_them_to_the_evaluation_experiment(product_folders, tmp_path, capsys):
    import mlflow

    from brandsentry.cli import main

    workspace = tmp_path / "ws"
    code = main(
        ["evaluate", "retrieval", str(product_folders), "embedder=tiny_random", f"workspace={workspace}"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "R@1" in out and "1.0000" in out
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("evaluation")
    assert experiment.artifact_location == (workspace / "mlartifacts").resolve().as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["R_1"] == 1.0 and run.data.params["views"] == "center"
    stored = Path(client.download_artifacts(run.info.run_id, "retrieval.json", str(tmp_path)))
    assert json.loads(stored.read_text())["figures"]["R@1"] == 1.0

    nan = SuiteResult("retrieval", {"R@1": 0.5, "mAP": float("nan")}, {"views": "flip"})
    logged = client.get_run(log_result(uri, workspace / "mlartifacts", nan))
    assert logged.data.metrics == {"R_1": 0.5} and logged.data.params == {"views": "flip", "mAP": "nan"}


@pytest.mark.slow
def test_tampered_logo_runs_the_pipeline_and_reports_test_figures_per_kind(grocery, benchmark, tmp_path):
    from brandsentry.evaluation.tampered_logo import run_tampered_logo

    overrides = [
        *TINY,
        "eval=tampered_logo",
        f"eval.data_dir={grocery}",
        f"eval.work_dir={tmp_path / 'work'}",
        f"eval.benchmark_dir={benchmark.root}",
        "eval.benchmark.split={train: 0.5, validation: 0.25, test: 0.25}",
        "eval.benchmark.ocr_threads=1",
        "eval.benchmark.authentic_per_photo=3",
        "eval.benchmark.counterfeits_per_photo=3",
        "cues.text.enabled=false",
        "logger.register=false",
        "classifier=logreg",  # gradient boosting cannot bin two packages' worth of rows
    ]
    stamp = benchmark.listings.stat().st_mtime_ns
    cfg = load_config(overrides, config_name="evaluate")
    result = run_tampered_logo(cfg, overrides, progress=False)
    figures = result.figures
    assert figures["n"] == 12 and figures["positives"] == 6  # the one test package: 2 photos x (3 + 3)
    assert 0.0 <= figures["roc_auc"] <= 1.0 and 0.0 <= figures["similarity_only.roc_auc"] <= 1.0
    kinds = {key.split(".")[1] for key in figures if key.startswith("kind.")}
    assert kinds and kinds <= set(TAMPER_KINDS)
    assert {key.split(".")[2] for key in figures if key.startswith("similarity_only.kind.")} == kinds
    assert 0 <= figures["val.roc_auc"] <= 1 and figures["cost.placement_ms"] >= 0  # choices use validation
    assert figures["import_rejected"] == 0 and figures["indexed_references"] == figures["import_accepted"]
    assert result.params["embedder"] == "test_efficientnet.r160_in1k"
    assert (tmp_path / "work" / "workspace" / "catalog.sqlite").is_file()
    assert benchmark.listings.stat().st_mtime_ns == stamp  # the benchmark was reused, not generated again

    # a second run in the same work_dir keeps the index version (part of the training features cache key)
    from brandsentry.config import Workspace
    from brandsentry.evaluation.tampered_logo import update_index
    from brandsentry.index import saved_versions

    train_cfg = load_config(
        ["embedder=tiny_random", f"workspace={tmp_path / 'work' / 'workspace'}", "listings=x"], "train"
    )
    workspace = Workspace.from_config(train_cfg)
    versions = saved_versions(workspace.index_dir)
    assert update_index(train_cfg, workspace, progress=False) == (figures["indexed_references"], [])
    assert saved_versions(workspace.index_dir) == versions
    rebuilt, _ = update_index(OmegaConf.merge(train_cfg, {"index": {"factory": "HNSW32"}}), workspace, False)
    assert (
        rebuilt == figures["indexed_references"]
        and len(saved_versions(workspace.index_dir)) == len(versions) + 1
    )


def test_finetuned_weights_load_as_an_embedder_and_change_its_identity(product_folders, tmp_path):
    from brandsentry.embed import Embedder
    from brandsentry.finetune import finetune_embedder

    cfg = load_config(
        ["embedder=tiny_random", "finetune.epochs=1", "finetune.batch_size=4", "finetune.num_workers=0"],
        config_name="evaluate",
    )
    images = labelled_images(product_folders)
    report = finetune_embedder(cfg, images.paths[::3], images.labels[::3], tmp_path / "ft.pth")
    assert (report.images, report.labels, report.epochs) == (9, 3, 1) and report.weights.is_file()
    assert np.isfinite(report.last_epoch_loss)
    base = Embedder.from_config(cfg.embedder)
    tuned = Embedder.from_config({**cfg.embedder, "weights": str(report.weights)})
    assert tuned.identity.weights_sha256 != base.identity.weights_sha256
    assert tuned.identity.dim == base.identity.dim
    pixels = [np.asarray(Image.open(path).convert("RGB")) for path in images.paths[:2]]
    assert not np.allclose(base.embed_arrays(pixels), tuned.embed_arrays(pixels), atol=1e-4)


def test_retrieval_with_finetuning_records_the_weights_it_used(product_folders, tmp_path):
    overrides = [
        *TINY,
        "eval=retrieval",
        f"eval.data_dir={product_folders}",
        f"workspace={tmp_path / 'ws'}",
        "finetune.enabled=true",
        "finetune.epochs=1",
        "finetune.batch_size=4",
        "finetune.num_workers=0",
    ]
    result = run_retrieval(load_config(overrides, config_name="evaluate"), progress=False)
    weights = Path(result.params["finetune_weights"])
    assert weights.is_file() and weights.is_relative_to(tmp_path / "ws" / "runs" / "finetune")
    assert result.params["embedder_weights"] == str(weights) and result.params["finetune_labels"] == "3"


def test_tampered_logo_refuses_a_work_dir_of_another_benchmark(grocery, tmp_path):
    from brandsentry.errors import ConfigError
    from brandsentry.evaluation.tampered_logo import MARKER, run_tampered_logo

    work = tmp_path / "work"
    work.mkdir()
    (work / MARKER).write_text("0123456789abcdef\n")
    overrides = [*TINY, "eval=tampered_logo", f"eval.data_dir={grocery}", f"eval.work_dir={work}"]
    with pytest.raises(ConfigError, match="another benchmark"):
        run_tampered_logo(load_config(overrides, config_name="evaluate"), overrides, progress=False)
    assert sorted(p.name for p in work.iterdir()) == [MARKER]  # nothing generated, nothing trained
