"""Scoring runs in MLflow: run metrics, drift (PSI), cue attributions, evidence pages, truth tables."""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from PIL import Image

from brandsentry.catalog import Catalog
from brandsentry.config import Workspace, load_config
from brandsentry.errors import ConfigError
from brandsentry.ledger import record_scoring_run
from brandsentry.registry import mlflow_store
from brandsentry.review import (
    DriftSettings,
    ReviewError,
    ReviewSettings,
    compare_histograms,
    cue_players,
    log_scoring_run,
    psi,
    run_histograms,
    run_metrics,
    shapley_attributions,
    truth_table,
    utc_date,
)
from brandsentry.review.attribution import Player
from brandsentry.review.drift import histogram_counts
from brandsentry.review.evidence import Panel, evidence_image, queue_counts, select_for_evidence
from brandsentry.review.export import export_run
from brandsentry.review.rescan import decision_changes, rescan_manifest
from brandsentry.review.runs import mlflow_client
from brandsentry.run_folder import ScoringResultsError
from brandsentry.settings import default_settings
from fake_runs import BRANDS, make_results, write_run


def review_config(*overrides: str):
    """The composed config; adds the score and review groups while configs/brandsentry.yaml lacks them."""
    present = load_config([])
    return load_config([*(f"+{g}=default" for g in ("score", "review") if g not in present), *overrides])


# ---- drift --------------------------------------------------------------------------------------------


def test_psi_is_zero_for_the_same_histogram_and_grows_with_the_shift():
    edges = np.linspace(0, 1, 11)
    rng = np.random.default_rng(0)
    base = histogram_counts(rng.beta(2, 5, 5000), edges)
    assert psi(base, base) == 0.0
    small = psi(base, histogram_counts(np.clip(rng.beta(2, 5, 5000) + 0.03, 0, 1), edges))
    large = psi(base, histogram_counts(np.clip(rng.beta(2, 5, 5000) + 0.3, 0, 1), edges))
    assert 0 < small < 0.1 < 0.5 < large
    with pytest.raises(ValueError, match="non-empty"):
        psi(base, np.zeros_like(base))


def test_histogram_counts_clip_to_the_range_and_skip_nan():
    counts = histogram_counts(np.array([-0.5, 0.05, 0.95, 1.7, np.nan]), np.linspace(0, 1, 11))
    assert counts.sum() == 4 and counts[0] == 2 and counts[-1] == 2


def test_drift_warns_on_a_shift_but_not_on_sampling_noise_and_skips_small_brands():
    drift = default_settings(DriftSettings, "review.drift", min_rows=50)
    day1 = run_histograms(make_results(n=240, seed=1), drift)
    same = run_histograms(make_results(n=240, seed=2), drift)
    shifted = run_histograms(make_results(n=240, seed=3, score_shift=0.35), drift)
    calm = compare_histograms(same, [day1], drift)
    assert {(c.scope, c.metric) for c in calm.checks} == {
        (scope, metric) for scope in ("*", *BRANDS) for metric in ("score", "sim_top1")
    }
    assert not calm.warnings
    alarm = compare_histograms(shifted, [day1], drift, run_ids=["r1"])
    flagged = {(c.scope, c.metric) for c in alarm.warnings}
    assert ("*", "score") in flagged and ("*", "sim_top1") in flagged
    assert "all brands:score psi=" in alarm.describe()
    strict = compare_histograms(same, [day1], default_settings(DriftSettings, "review.drift", min_rows=100))
    assert {c.scope for c in strict.checks} == {"*"}  # ~80 rows per brand: too few to judge a brand


def test_drift_pools_the_baseline_runs():
    drift = default_settings(DriftSettings, "review.drift", min_rows=10)
    history = [run_histograms(make_results(n=90, seed=s), drift) for s in range(3)]
    report = compare_histograms(run_histograms(make_results(n=90, seed=9), drift), history, drift)
    overall = next(c for c in report.checks if c.scope == "*" and c.metric == "score")
    assert overall.baseline_rows == 3 * 88 and overall.rows == 88  # two error rows per run left out


# ---- run metrics, attribution, truth ------------------------------------------------------------------


def test_run_metrics_count_decisions_brands_errors_and_throughput():
    results = make_results(n=30, seed=5)
    metrics = run_metrics(results, {"images_per_s": 40.0})
    counts = results["decision"].value_counts()
    for decision in ("flag", "review", "pass", "error"):
        assert metrics[f"decisions.{decision}"] == counts.get(decision, 0)
    assert metrics["errors.decode_failed"] == 1 and metrics["errors.unknown_brand"] == 1
    acme = results[results["claimed_brand"] == "Acme"]
    assert metrics["brand.Acme.flag_rate"] == pytest.approx((acme["decision"] == "flag").mean())
    assert metrics["throughput.images_per_s"] == 40.0
    odd = run_metrics(results.assign(claimed_brand="L'Oréal & Co"), None)
    assert "brand.L_Oréal _ Co.listings" in odd


def test_shapley_credits_the_cue_that_drives_the_score_through_an_interaction():
    """A re-uploaded photo: high when the photo is reused OR every similarity cue is near 1 (a tree reads
    either). Replacing one cue at a time changes nothing (each path alone keeps the score high), so it
    credits no cue; Shapley gives the reuse flag the credit: it decides in every coalition but the one
    where all three similarities are already in."""
    sims = ["sim_top1", "sim_brand_top1", "sim_product_top1"]

    def predict(frame):
        similar = (frame[sims] > 0.9).all(axis=1)
        return np.where((frame["copy_reused"] == 1) | similar, 0.9, 0.1)

    rows = pd.DataFrame({"copy_reused": [1.0], **{s: [0.99] for s in sims}})
    baseline = pd.Series({"copy_reused": 0.0, **{s: 0.5 for s in sims}})
    for cue in baseline.index:  # what one-at-a-time replacement sees: nothing
        assert predict(rows.assign(**{cue: baseline[cue]}))[0] == 0.9
    players = [Player(cue, (cue,)) for cue in baseline.index]
    credit, base = shapley_attributions(predict, rows, baseline, players)
    assert base.iloc[0] == pytest.approx(0.1)
    assert credit.loc[0, "copy_reused"] == pytest.approx(0.75 * 0.8)
    assert credit.loc[0, sims].tolist() == pytest.approx([0.8 / 12] * 3)
    assert credit.loc[0].sum() == pytest.approx(0.9 - 0.1)


def test_shapley_contributions_sum_to_the_score_minus_the_baseline_score_on_a_fitted_tree_model():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    names = ["sim_top1", "sim_margin", "copy_reused", "quality_sharpness", "pack_banding"]
    train = pd.DataFrame(rng.random((400, len(names))), columns=names)
    label = ((train["sim_top1"] > 0.7) & (train["copy_reused"] > 0.5)) | (train["pack_banding"] > 0.9)
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(train, label)

    def predict(frame):
        return model.predict_proba(frame[names])[:, 1]

    rows = train.head(6)
    baseline = train.median()
    players = cue_players(names, max_players=4)  # 5 cues in 4 groups: similarity plays whole
    assert [p.label for p in players] == [
        "similarity: sim_top1, sim_margin", "copy_reused", "quality_sharpness", "pack_banding",
    ]  # fmt: skip
    credit, base = shapley_attributions(predict, rows, baseline, players)
    expected = predict(rows) - predict(pd.DataFrame([baseline]))[0]
    np.testing.assert_allclose(credit.sum(axis=1), expected, atol=1e-9)
    assert base.tolist() == pytest.approx([predict(pd.DataFrame([baseline]))[0]] * 6)
    assert [p.label for p in cue_players(names, max_players=5)] == names  # each cue its own player
    with pytest.raises(ReviewError, match="4 cue groups, more than review.evidence.attribution_players=2"):
        cue_players(names, max_players=2)


def test_truth_table_precision_and_recall_per_kind():
    results = pd.DataFrame(
        {
            "label": ["counterfeit"] * 4 + ["authentic"] * 3,
            "counterfeit_kind": ["a", "a", "b", "b", "", "", ""],
            "decision": ["flag", "pass", "flag", "review", "flag", "pass", "review"],
        }
    )
    table = truth_table(results).set_index("kind")
    assert table.at["a", "recall"] == 0.5 and table.at["a", "precision"] == 0.5  # 1 true flag, 1 false flag
    assert table.at["b", "recall+review"] == 1.0
    assert table.at["all counterfeits", "precision"] == pytest.approx(2 / 3)
    assert table.at["authentic", "flag"] == 1
    with pytest.raises(ReviewError, match="no 'label' column"):
        truth_table(results.drop(columns="label"))


def test_dates_from_the_command_line():
    assert utc_date("2026-11-27") == "2026-11-27T00:00:00.000000+00:00"
    assert utc_date("2026-11-27T10:00+02:00") == "2026-11-27T08:00:00.000000+00:00"
    with pytest.raises(ReviewError, match="not an ISO date"):
        utc_date("yesterday")


# ---- evidence -----------------------------------------------------------------------------------------


def test_evidence_image_draws_the_logo_box_and_points():
    grey = np.full((300, 400, 3), 128, np.uint8)
    quad = ((100.0, 80.0), (300.0, 80.0), (300.0, 220.0), (100.0, 220.0))
    drawn = evidence_image(
        [Panel("listing", grey, quad=quad, points=((200.0, 150.0),)), Panel("ref", grey)], 300
    )
    plain = evidence_image([Panel("listing", grey), Panel("ref", grey)], 300)
    as_array = [
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int) for data in (drawn, plain)
    ]
    green = [((a[..., 1] > 180) & (a[..., 0] < 120) & (a[..., 2] < 120)).sum() for a in as_array]
    red = [((a[..., 0] > 180) & (a[..., 1] < 90)).sum() for a in as_array]
    assert green[0] > 200 and green[1] == 0
    assert red[0] > 5 and red[1] == 0


def _store(
    workspace: Workspace, catalog: Catalog, rgb: np.ndarray, brand: str, product: str, view: str
) -> int:
    data = io.BytesIO()
    Image.fromarray(rgb).save(data, format="PNG")
    digest = hashlib.sha256(data.getvalue()).hexdigest()
    stored = f"{digest[:2]}/{digest}.png"
    (workspace.image_store / stored).parent.mkdir(parents=True, exist_ok=True)
    (workspace.image_store / stored).write_bytes(data.getvalue())
    ref = catalog.add_reference(
        brand=brand, product=product, view=view, sha256=digest, phash=digest[:16], stored_path=stored,
        width=rgb.shape[1], height=rgb.shape[0], submitted_by="test", status="approved",
    )  # fmt: skip
    return ref.id


@pytest.fixture(scope="module")
def review_world(tmp_path_factory):
    """A workspace with references (one logo) and listing images, and two scored days (day 2 shifted)."""
    root = tmp_path_factory.mktemp("review")
    workspace = Workspace(root / "ws").ensure()
    rng = np.random.default_rng(0)
    with Catalog.open(workspace) as catalog:
        ids = [
            _store(
                workspace,
                catalog,
                rng.integers(0, 255, (240, 320, 3), dtype=np.uint8),
                brand,
                f"{brand.lower()}-p0",
                "product",
            )
            for brand in BRANDS
        ]
        logo = _store(workspace, catalog, np.full((200, 400, 3), 220, np.uint8), "Acme", "acme-p0", "logo")
        catalog.set_wordmarks("Acme", ["ACME"])
    listing_dir = root / "listings"
    listing_dir.mkdir()
    paths = []
    for i in range(240):
        path = listing_dir / f"l{i}.jpg"
        Image.fromarray(np.full((360, 480, 3), (i * 7) % 255, np.uint8)).save(path)
        paths.append(str(path))
    neighbours = [[ids[(i + 1) % 3], ids[i % 3], logo] for i in range(240)]
    day1 = make_results(
        n=240, seed=1, image_paths=paths, top_ref_ids=neighbours, scored_at="2026-11-01T06:00:00Z"
    )
    reviews = day1[day1["decision"] == "review"]
    best = int((reviews["threshold"] - reviews["score"]).idxmin())  # the head of the review queue
    day1.loc[best, "claimed_brand"] = "Acme"
    day1.at[best, "top_ref_ids"] = [ids[1], ids[0], logo]  # the claimed brand's reference comes second
    day1.loc[best, "title"] = "<script>alert('x')</script> genuine ACME"
    day1.loc[best, "evidence"] = json.dumps(
        {
            "cues": {
                "logo": {
                    "reference_id": logo,
                    "quad": [[100, 80], [300, 80], [300, 220], [100, 220]],
                    "inlier_points": [[120, 100], [250, 200], [180, 150]],
                    "template_points": [[20, 20], [280, 180], [150, 100]],
                },
                "ocr": [{"text": "ACNE", "score": 0.9, "box": [[10, 10], [90, 10], [90, 40], [10, 40]]}],
                "wordmark_match": {
                    "best": ["acne", "acme"],
                    "near_misses": [{"text": "acne", "wordmark": "acme"}],
                },
            },
            "reasons": {"logo_reproj_error": "no valid logo homography"},
        }
    )
    day1.loc[best, "logo_verified"] = 1.0
    day1.loc[best, "logo_reproj_error"] = np.nan
    day2 = make_results(
        n=240, seed=2, day=2, score_shift=0.35, image_paths=paths, top_ref_ids=neighbours,
        scored_at="2026-11-02T06:00:00Z", model_version="2",
    )  # fmt: skip
    runs = root / "runs"
    return {
        "workspace": workspace,
        "day1": write_run(runs / "day1", day1),
        "day2": write_run(runs / "day2", day2),
        "best": day1.loc[best, "listing_id"],
        "ids": ids,
    }


@pytest.fixture(scope="module")
def logged(review_world):
    cfg = review_config(
        f"workspace={review_world['workspace'].root}", "review.evidence.queue.review=3",
        "review.evidence.queue.flag=2",
    )  # fmt: skip
    first = log_scoring_run(cfg, review_world["day1"])
    second = log_scoring_run(cfg, review_world["day2"])
    return cfg, first, second


def test_scoring_runs_are_logged_with_counts_tags_and_artifacts(review_world, logged):
    cfg, first, _ = logged
    client, experiment_id = mlflow_client(review_world["workspace"], ReviewSettings.from_config(cfg))
    run = client.get_run(first.run_id)
    assert client.get_experiment(experiment_id).name == "scoring"
    assert run.data.tags["model_version"] == "1" and run.data.tags["run_kind"] == "daily"
    assert run.data.tags["drift_warning"] == "false" and run.data.tags["drift_baseline_runs"] == "0"
    results = pd.read_parquet(review_world["day1"])  # the run folder is a Parquet dataset
    assert run.data.metrics["decisions.flag"] == (results["decision"] == "flag").sum()
    assert run.data.metrics["throughput.images_per_s"] == 12.5
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"evidence", "plots", "drift", "summary.json"} <= artifacts
    evidence_files = {a.path for a in client.list_artifacts(first.run_id, "evidence")}
    assert (
        "evidence/index.html" in evidence_files and len(evidence_files) == 5 + 2
    )  # images, html, items.json
    with Catalog.open(review_world["workspace"]) as catalog:
        ledger = catalog.connection().execute("SELECT count(*) FROM scored_listings").fetchone()[0]
    assert ledger == 480


def download_table(client, run_id: str, path: str, tmp_path) -> pd.DataFrame:
    """A table `log_table` wrote, as a DataFrame."""
    logged = json.loads(Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text())
    return pd.DataFrame(logged["data"], columns=logged["columns"])


def test_a_scoring_run_is_named_timed_and_described_by_the_scoring(review_world, logged, tmp_path):
    """The run spans the scoring (day 1, 06:00, 240 listings at 12.5/s), not the logging that came later."""
    cfg, first, _ = logged
    client, _ = mlflow_client(review_world["workspace"], ReviewSettings.from_config(cfg))
    run = client.get_run(first.run_id)
    assert run.info.run_name == "score-day1"
    scored = int(pd.Timestamp("2026-11-01T06:00:00Z").timestamp() * 1000)
    assert run.info.end_time == scored and run.info.start_time == scored - 19_200
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith("Scored 240 listings of the results in") and "model `1`" in description
    assert f": flag {int(first.metrics['decisions.flag'])}, review" in description
    assert "evidence page: `evidence/index.html` (5 listing(s))" in description
    (dataset_input,) = run.inputs.dataset_inputs
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "scoring"
    assert json.loads(dataset_input.dataset.source) == {"uri": str(Path(review_world["day1"]).resolve())}
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 240
    assert (
        not run.inputs.model_inputs and "model_version_uri" not in run.data.tags
    )  # "1" is no registered version
    # per-brand figures are one table, not three charts per brand
    assert not [key for key in run.data.metrics if key.startswith("brand.")]
    table = download_table(client, first.run_id, "decisions_by_brand.json", tmp_path).set_index("brand")
    assert sorted(table.index) == sorted(BRANDS)
    assert table.loc["Acme", "flag_rate"] == pytest.approx(first.metrics["brand.Acme.flag_rate"])


def test_a_scoring_run_links_the_registered_model_version_it_used(review_world, logged, tmp_path):
    from mlflow import MlflowClient

    cfg, _, _ = logged
    shutil.copytree(review_world["workspace"].root, tmp_path / "ws")
    workspace = Workspace(tmp_path / "ws")
    client = MlflowClient(tracking_uri=workspace.mlflow_uri, registry_uri=workspace.mlflow_uri)
    training = client.create_experiment("training")
    training_run = client.create_run(training).info.run_id
    model = client.create_logged_model(training, name="model", source_run_id=training_run)
    client.create_registered_model("brandsentry")
    with mlflow_store(workspace.mlflow_uri):  # registering resolves the logged model through the global store
        client.create_model_version("brandsentry", model.model_uri, training_run, model_id=model.model_id)
    day3 = make_results(
        n=60, seed=3, day=3, scored_at="2026-11-03T06:00:00Z", model_version="brandsentry/1+index.v2"
    )
    run_dir = write_run(tmp_path / "runs" / "day3", day3)
    cfg = review_config(
        f"workspace={workspace.root}", "review.evidence.queue.review=1", "review.evidence.queue.flag=1"
    )
    linked = log_scoring_run(cfg, run_dir, kind="rescan")
    run = client.get_run(linked.run_id)
    assert run.info.run_name == "rescan-day3"
    assert run.data.tags["model_version_uri"] == "models:/brandsentry/1"
    assert run.data.tags["model_run_id"] == training_run
    assert [m.model_id for m in run.inputs.model_inputs] == [model.model_id]
    assert "`models:/brandsentry/1` (`brandsentry/1+index.v2`" in run.data.tags["mlflow.note.content"]
    version = client.get_model_version("brandsentry", "1")
    assert version.tags["last_logged_scoring_run"] == linked.run_id


def test_the_shifted_day_raises_a_drift_warning(review_world, logged):
    cfg, first, second = logged
    client, _ = mlflow_client(review_world["workspace"], ReviewSettings.from_config(cfg))
    tags = client.get_run(second.run_id).data.tags
    assert tags["drift_warning"] == "true" and tags["drift_baseline_runs"] == "1"
    assert "all brands:score" in tags["drift_offenders"]
    assert second.drift.baseline_runs == (first.run_id,)
    assert client.get_run(second.run_id).data.metrics["drift.all.score.psi"] > 0.5


def test_evidence_page_shows_the_top_listing_with_its_logo_and_text(review_world, logged):
    _, first, _ = logged
    page = first.evidence
    assert [item.rank for item in page.items] == [1, 2, 3, 4, 5]
    assert [item.decision for item in page.items] == ["review"] * 3 + ["flag"] * 2
    gaps = [abs(item.score - item.threshold) for item in page.items]
    assert gaps[:3] == sorted(gaps[:3]) and gaps[3:] == sorted(gaps[3:])  # closest to the threshold first
    day1 = pd.read_parquet(review_world["day1"])
    reviews, flags = ((day1["decision"] == d).sum() for d in ("review", "flag"))
    assert page.queue == f"3 shown of {reviews} queued for review · 2 shown of {flags} flagged"
    top = page.items[0]
    assert top.listing_id == review_world["best"]
    assert top.wordmarks == ("ACME",) and top.ocr_lines == ("ACNE",) and top.near_misses == ("acne ≈ acme",)
    assert top.reference_id == review_world["ids"][0]  # the claimed brand's neighbour, not the first one
    assert top.logo.startswith("logo verified")
    assert page.items[1].ocr_lines == () and page.items[1].ocr_note == "OCR not run"
    html = page.html.read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert page.queue in html and html.count('data-verdict="counterfeit"') == 5
    assert html.count("data:image/jpeg;base64,") == 5
    image = Image.open(page.directory / top.image_file)
    assert image.width > 2.5 * image.height  # logo template | listing | reference
    assert json.loads((page.directory / "items.json").read_text())[0]["listing_id"] == top.listing_id


def test_a_logged_run_is_not_logged_twice_unless_forced(review_world, logged):
    cfg, first, _ = logged
    with pytest.raises(ReviewError, match="already logged"):
        log_scoring_run(cfg, review_world["day1"])
    again = log_scoring_run(cfg, review_world["day1"], force=True)
    client, _ = mlflow_client(review_world["workspace"], ReviewSettings.from_config(cfg))
    assert client.get_run(first.run_id).info.lifecycle_stage == "deleted"
    assert client.get_run(again.run_id).data.tags["run_dir"] == str(review_world["day1"])


def test_unknown_run_kind_is_refused(review_world, logged):
    cfg, _, _ = logged
    with pytest.raises(ReviewError, match="unknown run kind"):
        log_scoring_run(cfg, review_world["day1"], kind="weekly")


def test_missing_review_group_is_named():
    with pytest.raises(ConfigError, match="no 'review' group"):
        ReviewSettings.from_config(OmegaConf.create({"workspace": "ws"}))


def test_cue_values_are_listed_with_the_reason_of_each_missing_one(logged):
    _, first, _ = logged
    cues = {name: (value, reason) for name, value, _, _, reason in first.evidence.items[0].cues}
    assert cues["logo_verified"] == (1.0, "")
    value, reason = cues["logo_reproj_error"]
    assert math.isnan(value) and reason == "no valid logo homography"
    assert "no valid logo homography" in first.evidence.html.read_text()


def test_the_queue_puts_reviews_closest_to_their_threshold_first_then_flags_with_ties_by_listing_id():
    results = pd.DataFrame(
        {
            "listing_id": ["f2", "f1", "r3", "r1", "r2", "p1", "f3"],
            "decision": ["flag", "flag", "review", "review", "review", "pass", "flag"],
            "score": [1.0, 1.0, 0.5, 0.65, 0.65, 0.1, 0.95],
            "threshold": [1.0, 1.0, 0.7, 0.7, 0.7, 0.7, 0.9],
        }
    )
    settings = default_settings(ReviewSettings, "review")
    settings = replace(settings, evidence=replace(settings.evidence, queue={"review": 2, "flag": 3}))
    assert list(select_for_evidence(results, settings)["listing_id"]) == ["r1", "r2", "f1", "f2", "f3"]
    assert queue_counts(results, settings) == "2 shown of 3 queued for review · 3 shown of 3 flagged"
    with pytest.raises(ConfigError, match=r"unknown decision\(s\) \['escalate'\]"):
        replace(settings.evidence, queue={"escalate": 3})
    with pytest.raises(ConfigError, match="attribution_players must be in .1, 12.*got 20"):
        replace(settings.evidence, attribution_players=20)


# ---- rescan -------------------------------------------------------------------------------------------


def test_rescan_manifest_rebuilds_the_latest_scoring_of_the_brands_recent_listings(tmp_path):
    workspace = Workspace(tmp_path / "ws").ensure()
    day1 = make_results(n=30, seed=1, day=1, scored_at="2026-11-01T06:00:00Z")
    day2 = make_results(n=30, seed=2, day=2, scored_at="2026-11-02T06:00:00Z")
    again = day1.head(6).assign(scored_at="2026-11-03T06:00:00Z", title="rescored")  # d1-00000..5 again
    for name, frame in (("day1", day1), ("day2", day2), ("again", again)):
        record_scoring_run(workspace, write_run(tmp_path / name, frame))
    previous, manifest = rescan_manifest(workspace, "acme", utc_date("2026-11-02"))
    expected = sorted(
        [i for i in day2.loc[day2["claimed_brand"] == "Acme", "listing_id"]]
        + [i for i in again.loc[again["claimed_brand"] == "Acme", "listing_id"]]
    )
    assert sorted(manifest["listing_id"]) == expected == sorted(previous["listing_id"])
    assert "score" not in manifest.columns and "sim_top1" not in manifest.columns
    assert {"image_path", "claimed_product", "seller_id", "label", "title"} <= set(manifest.columns)
    rescored = manifest[manifest["listing_id"].str.startswith("d1-")]
    assert set(rescored["title"]) == {"rescored"}  # rebuilt from the run that last scored them
    with pytest.raises(ReviewError, match="no listing of brand 'Nobody'"):
        rescan_manifest(workspace, "Nobody", utc_date("2026-11-01"))


def test_decision_changes_lists_what_moved():
    previous = pd.DataFrame(
        {
            "listing_id": ["a", "b", "c", "d"],
            "decision": ["pass", "flag", "review", "pass"],
            "score": [0.1, 0.9, 0.5, 0.2],
            "run_dir": ["r1"] * 4,
        }
    )
    new = pd.DataFrame(
        {
            "listing_id": ["d", "c", "b", "a"],
            "decision": ["pass", "flag", "flag", "review"],
            "score": [0.2, 0.8, 0.95, 0.4],
        }
    )
    transitions, changes = decision_changes(previous, new)
    assert list(changes["listing_id"]) == ["c", "a"]  # highest new score first
    assert list(changes["decision_before"]) == ["review", "pass"] and list(changes["decision_after"]) == [
        "flag",
        "review",
    ]
    counts = {(r.decision_before, r.decision_after): r.listings for r in transitions.itertuples()}
    assert counts == {("pass", "pass"): 1, ("pass", "review"): 1, ("flag", "flag"): 1, ("review", "flag"): 1}


# ---- exports ------------------------------------------------------------------------------------------


def test_labelstudio_export_holds_every_listing_with_local_file_image_urls(review_world, tmp_path):
    done = export_run(review_world["day1"], tmp_path / "ls", "labelstudio")
    results = pd.read_parquet(review_world["day1"])
    tasks = [task["data"] for task in json.loads((tmp_path / "ls" / "tasks.json").read_text())]
    assert len(tasks) == done.listings == len(results) == 240
    assert {t["decision"] for t in tasks} == {"flag", "review", "pass", "error"}  # the whole run
    listing_dir = Path(results["image_path"][0]).parent
    assert done.image_root == listing_dir
    first, row = tasks[0], results.iloc[0]
    assert first["image"] == f"/data/local-files/?d={Path(row['image_path']).name}"
    assert first["image_path"] == row["image_path"]
    assert first["listing_id"] == row["listing_id"] and first["score"] == pytest.approx(row["score"])
    assert (first["threshold"], first["review_threshold"]) == (0.7, 0.35)
    assert first["top_ref_ids"] == [int(i) for i in row["top_ref_ids"]]
    assert (first["top_ref_brand"], first["claimed_product"]) == (
        row["top_ref_brand"],
        row["claimed_product"],
    )
    assert next(t for t in tasks if t["decision"] == "error")["score"] is None
    xml = (tmp_path / "ls" / "labeling_config.xml").read_text()
    view = ElementTree.fromstring(xml)
    assert [c.get("value") for c in view.iter("Choice")] == ["counterfeit", "authentic", "unsure"]
    assert set(re.findall(r"\$(\w+)", xml)) <= set(first)  # every variable the config shows is in a task
    assert first["summary"].startswith(f"score {row['score']:.3f} ({row['decision']}; flag threshold 0.700")
    above = export_run(review_world["day1"], tmp_path / "ls-root", "labelstudio", root=listing_dir.parent)
    task = json.loads((tmp_path / "ls-root" / "tasks.json").read_text())[0]["data"]
    assert above.image_root == listing_dir.parent
    assert task["image"] == f"/data/local-files/?d={listing_dir.name}/{Path(row['image_path']).name}"
    with pytest.raises(ReviewError, match="outside the document root"):
        export_run(review_world["day1"], tmp_path / "elsewhere", "labelstudio", root=tmp_path / "ls")


def test_fiftyone_export_is_a_fiftyone_dataset_folder_with_every_listing(review_world, tmp_path):
    done = export_run(review_world["day2"], tmp_path / "fo", "fiftyone")
    results = pd.read_parquet(review_world["day2"])
    samples = json.loads((tmp_path / "fo" / "samples.json").read_text())["samples"]
    metadata = json.loads((tmp_path / "fo" / "metadata.json").read_text())
    # no "version": FiftyOne's FiftyOneDataset importer reads the folder with its plain-JSON (legacy) reader
    assert "version" not in metadata and metadata["media_type"] == "image"
    assert len(samples) == done.listings == len(results)
    assert [s["listing_id"] for s in samples] == list(results["listing_id"])
    assert all(Path(s["filepath"]).is_absolute() and Path(s["filepath"]).is_file() for s in samples)
    assert [s["tags"] for s in samples] == [[d] for d in results["decision"]]
    assert {"score", "threshold", "review_threshold", "top_ref_ids", "top_ref_product"} <= set(samples[0])
    again = export_run(review_world["day2"], tmp_path / "fo", "fiftyone")  # an earlier export is replaced
    assert again.listings == done.listings


def test_exports_name_a_bad_format_a_folder_that_is_not_a_run_and_a_folder_they_would_clobber(
    review_world, tmp_path
):
    with pytest.raises(
        ReviewError, match="unknown export format 'csv': expected one of labelstudio, fiftyone"
    ):
        export_run(review_world["day1"], tmp_path / "x", "csv")
    with pytest.raises(ScoringResultsError, match=f"scoring run directory {tmp_path / 'nothing'} does not"):
        export_run(tmp_path / "nothing", tmp_path / "x", "fiftyone")
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(ReviewError, match="is not a labelstudio export"):
        export_run(review_world["day1"], keep, "labelstudio")
    assert (keep / "notes.txt").read_text() == "mine"


def test_review_export_command(review_world, tmp_path, capsys):
    from brandsentry.cli import main

    with pytest.raises(SystemExit):
        main(["review", "export", "--help"])
    assert "examples:\n  brandsentry review export" in capsys.readouterr().out
    assert (
        main(["review", "export", str(review_world["day1"]), str(tmp_path / "fo"), "--format", "fiftyone"])
        == 0
    )
    assert "Dataset.from_dir" in capsys.readouterr().out
    assert main(["review", "export", str(review_world["day1"]), str(tmp_path / "y"), "--format", "xml"]) == 2
    assert "unknown export format 'xml'" in capsys.readouterr().err


# ---- answering from the page, in headless Chromium ------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium (/usr/bin/chromium)"
)
def test_verdicts_given_on_the_page_download_as_a_csv_that_the_feedback_import_stores(
    review_world, logged, tmp_path
):
    from selenium.webdriver.common.by import By

    from brandsentry.feedback import import_verdicts, read_verdicts
    from test_portal_browser import chromium

    _, first, _ = logged
    page = first.evidence
    items = {item.rank: item for item in page.items}
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with chromium(tmp_path / "profile") as driver:
        driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        driver.get(page.html.as_uri())
        sections = driver.find_elements(By.CSS_SELECTOR, "section.item")
        assert [s.get_attribute("data-listing") for s in sections] == [i.listing_id for i in page.items]

        def answer(rank: int, verdict: str, note: str = "") -> None:
            section = sections[rank - 1]
            section.find_element(By.CSS_SELECTOR, f'button[data-verdict="{verdict}"]').click()
            if note:
                section.find_element(By.CSS_SELECTOR, "input.note").send_keys(note)

        answer(1, "counterfeit", 'misspelt "ACNE", logo ok')
        answer(2, "authentic")  # a review: authentic
        answer(3, "unsure", "ask the brand")  # the import knows no "unsure": stays on the page
        answer(4, "authentic")  # a flag: a false positive
        driver.find_element(By.ID, "download").click()
        assert "Enter your name" in driver.find_element(By.ID, "storage").text
        assert not list(downloads.iterdir())
        driver.find_element(By.ID, "reviewer").send_keys("Ana")
        assert driver.find_element(By.ID, "answered").text == "4 of 5 answered"
        driver.find_element(By.ID, "download").click()
        deadline = time.monotonic() + 20
        while not list(downloads.glob("*.csv")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (csv_file,) = downloads.glob("*.csv")
        assert csv_file.name == f"verdicts-{review_world['day1'].name}.csv"

        driver.refresh()  # answers are kept in the browser
        again = driver.find_elements(By.CSS_SELECTOR, "section.item")[0]
        pressed = again.find_element(By.CSS_SELECTOR, 'button[aria-pressed="true"]')
        assert pressed.get_attribute("data-verdict") == "counterfeit"
        assert (
            again.find_element(By.CSS_SELECTOR, "input.note").get_attribute("value")
            == 'misspelt "ACNE", logo ok'
        )
        assert driver.find_element(By.ID, "reviewer").get_attribute("value") == "Ana"

    assert items[4].decision == "flag" and items[2].decision == "review"
    assert read_verdicts(csv_file) == [
        {"listing_id": items[1].listing_id, "verdict": "confirmed_counterfeit", "reviewer": "Ana",
         "note": 'misspelt "ACNE", logo ok'},
        {"listing_id": items[2].listing_id, "verdict": "authentic", "reviewer": "Ana", "note": ""},
        {"listing_id": items[4].listing_id, "verdict": "false_positive", "reviewer": "Ana", "note": ""},
    ]  # fmt: skip
    outcome = import_verdicts(review_world["workspace"], csv_file)
    assert (outcome.imported, outcome.rejected) == (3, ())
    assert outcome.by_verdict == {"confirmed_counterfeit": 1, "authentic": 1, "false_positive": 1}


# ---- the loop on the tiny world, with the real scorer ------------------------------------------------


@pytest.mark.slow
def test_the_review_loop_on_the_tiny_world(tiny_trained, tmp_path):
    """score two batches -> log both (attributions, drift) -> verdicts -> rescan, then rescan after a withdrawal."""
    from brandsentry.cli import main
    from brandsentry.feedback import feedback_training_rows, import_verdicts, simulate_verdicts
    from brandsentry.review import load_bundle_for, rescan
    from brandsentry.run_folder import read_results
    from brandsentry.scoring import score_run

    workspace = tmp_path / "ws"
    shutil.copytree(tiny_trained.workspace.path, workspace)
    base = (f"workspace={workspace}", "embedder=tiny_random")
    world = tiny_trained.workspace.world
    listings = pd.read_csv(tiny_trained.workspace.listings, dtype=str, keep_default_na=False)
    listings["image_path"] = [str(world / p) for p in listings["image_path"]]
    runs = {}
    for name, rows in (("a", listings.iloc[:40]), ("b", listings.iloc[40:80])):
        manifest = tmp_path / f"{name}.csv"
        rows.to_csv(manifest, index=False)
        runs[name] = tmp_path / "runs" / name
        cfg = review_config(
            *base, f"score.listings={manifest}", f"score.out={runs[name]}", "score.progress=off",
            "score.error_budget=1.0",
        )  # fmt: skip
        score_run(cfg)

    cfg = review_config(
        *base, "review.evidence.queue.review=3", "review.evidence.queue.flag=1", "review.drift.min_rows=20"
    )
    bundle = load_bundle_for(cfg, runs["a"])
    assert bundle is not None and str(bundle.version) == "brandsentry/1"
    first = log_scoring_run(cfg, runs["a"], bundle=bundle)
    second = log_scoring_run(cfg, runs["b"], bundle=bundle)
    assert first.model_version == "brandsentry/1"
    assert first.evidence.items
    assert first.evidence.attribution.startswith("Shapley")  # the bundle replays the recorded scores
    for item in first.evidence.items:  # score = baseline score + every contribution, on the real cascade
        assert item.baseline_score + sum(d for _, d in item.pushed_up) + item.others == pytest.approx(
            item.score
        )
    assert second.drift.baseline_runs == (first.run_id,)
    assert {("*", "score"), ("*", "sim_top1")} <= {(c.scope, c.metric) for c in second.drift.checks}

    day_b = read_results(runs["b"])
    verdicts = simulate_verdicts(day_b, listings, top=8)
    assert len(verdicts)
    verdicts.to_csv(tmp_path / "verdicts.csv", index=False)
    outcome = import_verdicts(workspace, tmp_path / "verdicts.csv")
    assert outcome.imported == len(verdicts) and not outcome.rejected
    reviewed = feedback_training_rows(workspace)
    assert set(reviewed["listing_id"]) == set(verdicts["listing_id"])
    names = list(bundle.cheap_feature_names)
    stored = reviewed.set_index("listing_id")[names].astype(float)
    scored_b = day_b.set_index("listing_id").loc[stored.index, names].astype(float)
    # the verdict keeps the features of the scoring it judged
    pd.testing.assert_frame_equal(stored, scored_b, check_names=False)
    assert stored.notna().any(axis=1).all()

    brand = listings["claimed_brand"].value_counts().index[0]
    same = rescan(cfg, brand, "2000-01-01")
    scored = pd.concat([read_results(runs["a"]), day_b])
    assert same.listings == (scored["claimed_brand"] == brand).sum()
    assert same.index_version == 1 and same.changes.empty  # same model, same references: same decisions
    assert same.transitions["listings"].sum() == same.listings
    assert same.logged.kind == "rescan" and same.logged.drift is None

    with Catalog.open(workspace) as catalog:
        withdrawn = [r.id for r in catalog.list_references(brand=brand, view="product")][::2]
    assert main(["refs", "withdraw", *map(str, withdrawn), *base]) == 0
    assert main(["index", "update", *base]) == 0
    after = rescan(cfg, brand, "2000-01-01")
    assert after.index_version == 2 and after.model_version == "brandsentry/1+index.v2"
    assert after.listings == same.listings  # the latest scorings are now the first rescan's
    rescored = read_results(after.out_dir / "results")
    assert not set(rescored["top_ref_ids"].explode().dropna().astype(int)) & set(withdrawn)
    assert len(after.changes) == pd.read_csv(after.changes_csv).shape[0]


@pytest.mark.slow
def test_the_score_command_logs_its_run_and_exits_4_when_logging_fails(
    tiny_trained, tmp_path, monkeypatch, capsys
):
    """`brandsentry score` = score + `review log`: an MLflow run and ledger rows; a failed log keeps the results."""
    import brandsentry.review as review
    from brandsentry.cli import main

    workspace = tmp_path / "ws"
    shutil.copytree(tiny_trained.workspace.path, workspace)
    base = [f"workspace={workspace}", "embedder=tiny_random", "score.progress=off", "score.error_budget=1.0"]
    listings = pd.read_csv(tiny_trained.workspace.listings, dtype=str, keep_default_na=False).head(24)
    listings["image_path"] = [str(tiny_trained.workspace.world / p) for p in listings["image_path"]]
    manifest = tmp_path / "day.csv"
    listings.to_csv(manifest, index=False)

    out = tmp_path / "runs" / "day"
    assert main(["score", f"listings={manifest}", f"out={out}", *base]) == 0
    printed = capsys.readouterr().out
    cfg = review_config(*base)
    client, experiment_id = mlflow_client(Workspace(workspace), ReviewSettings.from_config(cfg))
    (run,) = client.search_runs([experiment_id])
    assert (
        f"MLflow run: http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run.info.run_id}" in printed
    )
    assert run.info.run_name == "score-day" and run.data.tags["model_version_uri"] == "models:/brandsentry/1"
    # timed by the scoring, which _summary.json's elapsed_s measured
    elapsed_ms = 1000 * json.loads((out / "_summary.json").read_text())["elapsed_s"]
    assert run.info.end_time - run.info.start_time == pytest.approx(elapsed_ms, abs=1000)
    assert (
        run.data.tags["run_dir"] == str(out.resolve()) and run.data.tags["model_version"] == "brandsentry/1"
    )
    assert run.data.metrics["listings"] == 24
    with Catalog.open(Workspace(workspace)) as catalog:
        ledger = catalog.connection().execute("SELECT count(*) FROM scored_listings").fetchone()[0]
    assert ledger == 24
    assert main(["score", f"listings={manifest}", f"out={out}", *base]) == 0  # finished: no second log
    assert len(client.search_runs([experiment_id])) == 1

    def broken(*args, **kwargs):
        raise OSError("tracking store unreachable")

    monkeypatch.setattr(review, "log_scoring_run", broken)
    again = tmp_path / "runs" / "again"
    assert main(["score", f"listings={manifest}", f"out={again}", *base]) == 4
    err = capsys.readouterr().err
    assert "tracking store unreachable" in err and f"brandsentry review log {again.resolve()}" in err
    assert (again / "_SUCCESS").is_file()
    assert (
        main(["score", f"listings={manifest}", f"out={tmp_path / 'quiet'}", *base, "score.log_run=false"])
        == 0
    )
    assert len(client.search_runs([experiment_id])) == 1
