"""`brandsentry train` and `promote` on the tiny synthetic world: metrics, MLflow records, sweeps, errors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_auc_score

from brandsentry.bundle import ScoringBundle
from brandsentry.classify import TrainingDataError, threshold_for_precision
from brandsentry.cli import main
from brandsentry.config import Workspace, load_config
from brandsentry.features import ScoringContext, read_listings
from brandsentry.registry import auto_promotion
from brandsentry.review.runs import logged_model_id
from brandsentry.train import thresholds_below_target
from brandsentry.train.data import assign_splits, labelled_set, rows_digest
from conftest import copy_workspace


@pytest.fixture(scope="module")
def client(tiny_trained):
    uri = Workspace(tiny_trained.workspace.path).mlflow_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def labelled(tiny_trained) -> pd.DataFrame:
    listings = pd.read_csv(tiny_trained.workspace.listings, dtype=str, keep_default_na=False)
    return listings[~listings["counterfeit_kind"].isin(["not_a_product", "undecodable"])]


def test_training_beats_a_dummy_baseline_on_held_out_listings(tiny_trained):
    """Validation and test listings are both unseen by the fitted models (validation only sets thresholds);
    pooled, they make a steadier figure than the ~25-listing test split alone."""
    metrics = tiny_trained.result.metrics
    cfg = load_config([f"listings={tiny_trained.workspace.listings}", *tiny_trained.overrides], "train")
    context = ScoringContext.from_config(cfg)
    data = labelled_set(cfg, context)  # the features training cached
    bundle = ScoringBundle.load(tiny_trained.result.bundle_dir)
    held_out = (data.rows["split"] != "train").to_numpy()
    y = data.rows["y"].to_numpy()[held_out]
    scores, _ = bundle.model.cascaded_scores(
        data.features[held_out].reset_index(drop=True), context.cue_cfg.cascade.enabled
    )
    train = ~held_out
    dummy = DummyClassifier(strategy="prior").fit(np.zeros((train.sum(), 1)), data.rows["y"][train])
    dummy_auc = roc_auc_score(y, dummy.predict_proba(np.zeros((len(y), 1)))[:, 1])
    assert len(y) > 45
    assert roc_auc_score(y, scores) >= dummy_auc + 0.15, (roc_auc_score(y, scores), dummy_auc)
    assert metrics["test.roc_auc"] >= dummy_auc + 0.15 and metrics["val.roc_auc"] >= dummy_auc + 0.1
    listings = labelled(tiny_trained)
    assert metrics["test.n"] == (listings["split"] == "test").sum()  # every usable test listing was scored
    # error-path rows are set aside and counted, never trained on
    assert metrics["rows.excluded.kind.not_a_product"] == 2
    assert metrics["rows.excluded.kind.undecodable"] == 2
    assert metrics["rows.train"] + metrics["rows.validation"] + metrics["rows.test"] == len(listings)
    # the learned band escalates at most cues.cascade.max_escalation of validation, and says how it was chosen
    assert metrics["val.escalation_rate"] <= 0.25 and 0.0 <= metrics["test.escalation_rate"] <= 1.0
    assert bundle.metadata.cascade_band["reason"].startswith("validation: escalates")
    brand_rates = [
        v for k, v in metrics.items() if k.startswith("val.brand.") and k.endswith(".escalation_rate")
    ]
    assert brand_rates and all(0.0 <= rate <= 1.0 for rate in brand_rates)
    assert metrics["cost.cascade_ms"] <= metrics["cost.all_cues_ms"]
    assert metrics["cost.logo_ms"] > 0 and "cost.text_ms" not in metrics  # text disabled in tests


def test_training_run_is_recorded_in_mlflow(tiny_trained, client):
    result = tiny_trained.result
    run = client.get_run(result.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "training"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["classifier.kind"] == "hgb" and params["cues.text.enabled"] == "False"
    assert params["embedder.arch"] == "test_efficientnet.r160_in1k"
    manifest = tiny_trained.workspace.listings
    assert len(tags["dataset_digest"]) == 64 and tags["validation_digest"] != tags["dataset_digest"]
    assert tags["dataset_digest"] == rows_digest(read_listings(manifest), manifest.resolve().parent)
    for key in ("test.roc_auc", "test.pr_auc", "test.recall_at_p90", "test.recall_at_p95", "test.recall_at_p99",
                "test.flag_precision", "test.flag_recall", "val.roc_auc", "cost.logo_ms", "cost.similarity_ms"):  # fmt: skip
        assert key in metrics, key
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "thresholds.json", "thresholds_table.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert plots == {
        f"plots/{name}.png"
        for name in ("pr_curve", "calibration", "score_histogram", "feature_importance", "confusion")
    }
    thresholds = json.loads((result.bundle_dir / "thresholds.json").read_text())
    assert thresholds["target_precision"] == 0.95 and thresholds["global"] > 0.0
    # registered, and promoted because there was no champion
    assert result.model_version == "brandsentry/1" and result.promoted
    assert str(client.get_model_version_by_alias("brandsentry", "champion").version) == "1"
    assert client.get_model_version("brandsentry", "1").run_id == result.run_id


def download_table(client, run_id: str, path: str, tmp_path) -> pd.DataFrame:
    """A table `mlflow.log_table` wrote, as a DataFrame (its JSON rounds floats to 10 digits)."""
    logged = json.loads(Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text())
    return pd.DataFrame(logged["data"], columns=logged["columns"])


def test_the_training_run_reads_well_in_the_mlflow_ui(tiny_trained, client, tmp_path):
    """Named, described, timed over the whole job, its manifest as the dataset, few charts, tables for the rest."""
    result = tiny_trained.result
    run = client.get_run(result.run_id)
    manifest = tiny_trained.workspace.listings
    kind = run.data.params["classifier.kind"]
    day = datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime("%Y-%m-%d")
    assert run.info.run_name == f"train-world-listings_day1-{kind}-{day}"
    # the run covers featurising and fitting, not only the logging after them
    assert run.info.end_time - run.info.start_time >= 1000 * result.metrics["time.total_s"]

    (dataset_input,) = run.inputs.dataset_inputs
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    dataset = dataset_input.dataset
    assert json.loads(dataset.source) == {"uri": str(manifest.resolve())}
    assert dataset.name == "listings_day1" and dataset.digest == run.data.tags["dataset_digest"][:16]
    assert json.loads(dataset.profile)["num_rows"] == len(read_listings(manifest))

    metrics = run.data.metrics
    assert 20 <= len(metrics) <= 60, sorted(metrics)
    assert not [k for k in metrics if k.startswith(("val.brand.", "val.kind.", "test.brand.", "test.kind."))]
    by_kind = download_table(client, result.run_id, "metrics_by_kind.json", tmp_path)
    stolen = by_kind[(by_kind["split"] == "test") & (by_kind["kind"] == "stolen_photo")]
    assert stolen["roc_auc"].item() == pytest.approx(result.metrics["test.kind.stolen_photo.roc_auc"])
    by_brand = download_table(client, result.run_id, "metrics_by_brand.json", tmp_path)
    brands = {k.split(".")[2] for k in result.metrics if k.startswith("val.brand.")}
    assert set(by_brand.loc[by_brand["split"] == "val", "brand"]) == brands

    description = run.data.tags["mlflow.note.content"]
    assert f"on `{manifest}`" in description and f"ROC-AUC {metrics['test.roc_auc']:.3f}" in description
    assert "promotion: promoted to @champion: no champion yet" in description
    version = client.get_model_version("brandsentry", "1")
    assert version.description == description
    assert version.tags["promotion_decision"] == "promoted to @champion"
    assert version.tags["dataset_digest"] == run.data.tags["dataset_digest"]
    # the headline metrics are the logged model's too, so the model version page shows them
    logged_model = {m.key: m.value for m in client.get_logged_model(logged_model_id(version)).metrics}
    assert logged_model["test.roc_auc"] == metrics["test.roc_auc"] and len(logged_model) == len(metrics)
    assert "@champion" in client.get_registered_model("brandsentry").description
    promotion = download_table(client, result.run_id, "promotion.json", tmp_path)
    assert promotion.to_dict("records") == [
        {
            "model_version": "brandsentry/1",
            "decision": "promoted to @champion",
            "reason": "no champion yet",
            "metric": "val.pr_auc",
            "value": pytest.approx(metrics["val.pr_auc"]),
        }
    ]


def test_thresholds_that_reach_no_target_precision_are_reported(tiny_trained, client, tmp_path):
    result = tiny_trained.result
    rule = json.loads((result.bundle_dir / "thresholds.json").read_text())
    never_flag = {b for b, t in rule["brands"].items() if t > 1.0} | (
        {"*"} if rule["global"] > 1.0 else set()
    )
    assert set(result.below_target) == never_flag
    run = client.get_run(result.run_id)
    assert run.data.metrics["thresholds.below_target"] == len(never_flag)
    assert run.data.tags["thresholds_below_target"] == (", ".join(result.below_target) or "none")
    table = download_table(client, result.run_id, "thresholds_table.json", tmp_path)
    assert set(table.loc[~table["reaches_target"], "brand"]) == never_flag
    description = run.data.tags["mlflow.note.content"]
    for brand, best in result.below_target.items():
        assert f"{'global' if brand == '*' else brand} (best {best:.2f})" in description


def test_a_brand_whose_threshold_reaches_no_target_precision_is_warned_about(caplog):
    """Acme's counterfeits outscore its authentic listings; Borealis' best listing is authentic."""
    brands = np.array(["Acme"] * 4 + ["Borealis"] * 4)
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    scores = np.array([0.1, 0.2, 0.8, 0.9, 0.6, 0.95, 0.5, 0.1])
    rule = {
        "target_precision": 0.95,
        "global": threshold_for_precision(scores, y, 0.95),
        "brands": {b: threshold_for_precision(scores[brands == b], y[brands == b], 0.95) for b in ("Acme", "Borealis")},
    }  # fmt: skip
    model = SimpleNamespace(thresholds=lambda: rule)
    with caplog.at_level(logging.WARNING, logger="brandsentry.train"):
        below = thresholds_below_target(model, scores, y, brands)
    assert rule["brands"]["Acme"] <= 1.0 and rule["brands"]["Borealis"] > 1.0 and rule["global"] > 1.0
    assert below == {"*": pytest.approx(0.8), "Borealis": pytest.approx(2 / 3)}
    assert (
        "brand Borealis: no flag threshold reaches precision 0.95 on validation (best reachable 0.67): "
        "never flagged, at most reviewed" in caplog.text
    )
    assert "global threshold: no flag threshold reaches precision 0.95" in caplog.text
    assert "Acme" not in caplog.text


@pytest.mark.slow
def test_a_sweep_runs_one_job_per_value_and_reuses_features(tiny_trained, tmp_path, capsys):
    workspace = copy_workspace(tiny_trained.workspace, tmp_path / "workspace")
    overrides = [o for o in tiny_trained.overrides if not o.startswith("classifier.")]
    overrides = [o.replace(str(tiny_trained.workspace.path), str(workspace.path)) for o in overrides]
    code = main(["train", "-m", f"listings={workspace.listings}", "classifier=hgb,logreg", *overrides])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("-> brandsentry/") == 2  # versions 2 and 3 beside the copied brandsentry/1
    assert out.count("  MLflow run: http://127.0.0.1:5000/#/experiments/") == 2
    runs_dir = workspace.path / "runs" / "train"
    sweeps = [p for p in runs_dir.iterdir() if p.name.startswith("sweep-")]
    assert len(sweeps) == 1 and sorted(p.name for p in sweeps[0].iterdir() if p.is_dir()) == ["0", "1"]
    uri = Workspace(workspace.path).mlflow_uri
    versions = MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions("name='brandsentry'")
    kinds = {
        MlflowClient(tracking_uri=uri).get_run(v.run_id).data.params["classifier.kind"]
        for v in versions
        if str(v.version) in ("2", "3")
    }
    assert kinds == {"hgb", "logreg"}
    # one feature table per cue configuration, shared by both jobs (and the copied first run's)
    assert len(list((workspace.path / "runs" / "features").glob("*.pkl"))) == 1


def test_missing_listings_is_a_clear_error(tiny_workspace, capsys):
    code = main(["train", *tiny_workspace.overrides])
    err = capsys.readouterr().err
    assert code == 2
    assert "required config value 'listings' is not set (pass listings=...)" in err


def test_a_split_without_both_classes_is_refused(tiny_trained, tmp_path, capsys):
    listings = pd.read_csv(tiny_trained.workspace.listings, dtype=str, keep_default_na=False)
    one_class = listings[(listings["split"] != "validation") | (listings["label"] == "counterfeit")]
    manifest = tiny_trained.workspace.world / "validation_counterfeit_only.csv"
    one_class.to_csv(manifest, index=False)
    code = main(["train", f"listings={manifest}", *tiny_trained.overrides])
    assert code == 2
    assert "validation split needs authentic and counterfeit listings" in capsys.readouterr().err


def test_too_few_training_listings_for_the_calibration_folds_is_refused_before_any_work(
    tiny_trained, capsys, monkeypatch
):
    listings = pd.read_csv(tiny_trained.workspace.listings, dtype=str, keep_default_na=False)
    train_counterfeits = listings.index[(listings["split"] == "train") & (listings["label"] == "counterfeit")]
    few = listings.drop(train_counterfeits[2:])  # 2 counterfeit training listings for 3 folds
    manifest = tiny_trained.workspace.world / "two_train_counterfeits.csv"
    few.to_csv(manifest, index=False)
    monkeypatch.setattr(ScoringContext, "featurize_all", lambda *a, **k: pytest.fail("featurised"))
    code = main(["train", f"listings={manifest}", *tiny_trained.overrides])
    assert code == 2
    err = capsys.readouterr().err
    assert "2 counterfeit listing(s)" in err and "needs at least 3 of each" in err
    assert "classifier.calibration_folds=3" in err


def test_promote_sets_the_alias(tiny_trained, tmp_path, client, capsys):
    workspace = copy_workspace(tiny_trained.workspace, tmp_path / "workspace")
    uri = Workspace(workspace.path).mlflow_uri
    local = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = local.create_model_version("brandsentry", f"runs:/{tiny_trained.result.run_id}/model")
    assert main(["promote", str(version.version), *workspace.overrides]) == 0
    assert f"brandsentry/{version.version} is now @champion" in capsys.readouterr().out
    assert str(local.get_model_version_by_alias("brandsentry", "champion").version) == str(version.version)
    assert main(["promote", "brandsentry/1", "--alias", "previous", *workspace.overrides]) == 0
    assert str(local.get_model_version_by_alias("brandsentry", "previous").version) == "1"
    assert main(["promote", "99", *workspace.overrides]) == 2
    assert "PromotionError: cannot promote brandsentry/99" in capsys.readouterr().err
    # the original workspace is untouched
    assert str(client.get_model_version_by_alias("brandsentry", "champion").version) == "1"


def test_auto_promotion_compares_stored_metrics_on_the_same_validation_set(tiny_trained, client):
    run = client.get_run(tiny_trained.result.run_id)
    digest, theirs = run.data.tags["validation_digest"], run.data.metrics["val.pr_auc"]
    promoted, note = auto_promotion(client, "brandsentry", "val.pr_auc", theirs + 0.01, digest)
    assert promoted and "beats champion brandsentry/1" in note
    promoted, note = auto_promotion(client, "brandsentry", "val.pr_auc", theirs, digest)
    assert not promoted and "does not beat" in note
    promoted, note = auto_promotion(client, "brandsentry", "val.pr_auc", 1.0, "another-digest")
    assert not promoted and "validated on another set" in note
    assert auto_promotion(client, "no-such-model", "val.pr_auc", 0.1, digest) == (True, "no champion yet")


def test_splits_by_product_when_the_manifest_has_none(tiny_workspace):
    cfg = load_config([*tiny_workspace.overrides, "listings=x"], config_name="train")
    listings = pd.read_csv(tiny_workspace.listings, dtype=str, keep_default_na=False).drop(columns="split")
    splits = assign_splits(listings, cfg.data, seed=0)
    assert set(splits) == {"train", "validation", "test"}
    per_product = pd.Series(splits).groupby(listings["claimed_product"].to_numpy()).nunique()
    assert (per_product == 1).all()  # no product straddles two splits
    assert list(assign_splits(listings, cfg.data, seed=0)) == list(splits)  # deterministic for a seed
    bad = listings.assign(split="holdout")
    with pytest.raises(TrainingDataError, match="holdout"):
        assign_splits(bad, OmegaConf.merge(cfg.data, {"split_column": "split"}), seed=0)


def test_dataset_digest_ignores_row_order_and_location(tiny_workspace, tmp_path):
    listings = pd.read_csv(tiny_workspace.listings, dtype=str, keep_default_na=False)
    here = listings.assign(image_path=[str(tiny_workspace.world / p) for p in listings["image_path"]])
    there = listings.assign(image_path=[str(tmp_path / p) for p in listings["image_path"]])
    digest = rows_digest(here, tiny_workspace.world)
    assert digest == rows_digest(there.iloc[::-1], tmp_path)
    changed = here.copy()
    changed.loc[0, "label"] = "authentic" if changed.loc[0, "label"] == "counterfeit" else "counterfeit"
    assert rows_digest(changed, tiny_workspace.world) != digest
