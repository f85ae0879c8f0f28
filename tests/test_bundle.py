"""The scoring bundle: registry round trip, pyfunc parity, the cascade, refusals."""

from __future__ import annotations

import json
import pickle
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from brandsentry.bundle import (
    BundleError,
    EmbedderMismatchError,
    ScoringBundle,
    output_columns,
)
from brandsentry.config import Workspace
from brandsentry.embed import Embedder
from brandsentry.registry import load_bundle, mlflow_store, open_bundle


@pytest.fixture(scope="module")
def workspace(tiny_trained) -> Workspace:
    return Workspace(tiny_trained.workspace.path)


@pytest.fixture(scope="module")
def champion(tiny_trained, workspace) -> ScoringBundle:
    return load_bundle("models:/brandsentry@champion", workspace)


@pytest.fixture(scope="module")
def listings(tiny_trained) -> pd.DataFrame:
    """Eight test-split listings (absolute paths), an unreadable file and a brand with no references."""
    world = tiny_trained.workspace.world
    frame = pd.read_csv(world / "listings_day1.csv", dtype=str, keep_default_na=False)
    frame = frame[(frame["split"] == "test") & (frame["counterfeit_kind"] != "undecodable")].head(8)
    frame = frame.assign(image_path=[str(world / p) for p in frame["image_path"]])
    broken = {"listing_id": "broken", "image_path": str(world / "missing.jpg"), "claimed_brand": "Kalvessa"}
    stranger = {
        "listing_id": "stranger",
        "image_path": frame["image_path"].iloc[0],
        "claimed_brand": "Nobody",
    }
    return pd.concat([frame, pd.DataFrame([broken, stranger])], ignore_index=True).fillna("")


def test_champion_resolves_through_the_registry(tiny_trained, champion, workspace, tmp_path):
    assert champion.version == "brandsentry/1"
    assert champion.path.is_relative_to(workspace.root / "bundles")
    assert champion.metadata.run_id == tiny_trained.result.run_id
    assert champion.identity == Embedder.from_config(champion.config.embedder).identity
    assert champion.config.cues.text.enabled is False  # the training config travels with the model
    assert champion.metadata.metrics["test.roc_auc"] == tiny_trained.result.metrics["test.roc_auc"]
    again = load_bundle("models:/brandsentry/1", workspace)  # cached download, same bundle
    assert again.path == champion.path and again.version == "brandsentry/1"
    uri = f"runs:/{tiny_trained.result.run_id}/model"
    by_run = open_bundle(uri, tracking_uri=workspace.mlflow_uri, cache_dir=tmp_path)
    assert by_run.version == uri and by_run.path.is_relative_to(tmp_path)
    assert by_run.metadata == champion.metadata


def test_one_result_row_per_listing_in_order_with_error_rows(champion, listings):
    results = champion.score_frame(listings)
    assert list(results.columns) == output_columns(champion.feature_names)
    assert list(results["listing_id"]) == list(listings["listing_id"])
    ok = results["error"].isna()
    assert list(results.loc[~ok, "listing_id"]) == ["broken", "stranger"]
    assert list(results.loc[~ok, "error"]) == ["missing_file", "unknown_brand"]
    assert (results.loc[~ok, "decision"] == "error").all() and results.loc[~ok, "score"].isna().all()
    assert results.loc[ok, "score"].between(0, 1).all()
    assert set(results.loc[ok, "decision"]) <= {"flag", "review", "pass"}
    assert (results["model_version"] == "brandsentry/1").all()
    for row in results[ok].itertuples():
        assert len(row.top_ref_ids) == len(row.top_similarities) == 10
        assert row.top_similarities == sorted(row.top_similarities, reverse=True)
        assert (row.score >= row.threshold) == (row.decision == "flag")
        json.loads(row.evidence)


def test_the_cascade_escalates_exactly_the_uncertain_listings(champion, listings):
    results = champion.score_frame(listings)
    ok = results[results["error"].isna()]
    cheap = champion.model.cheap.predict_proba(ok[champion.cheap_feature_names].reset_index(drop=True))
    band = champion.model.band
    assert list(ok["escalated"]) == [bool(band.low <= p <= band.high) for p in cheap]
    expensive = [n for n in champion.feature_names if n not in champion.cheap_feature_names]
    assert expensive  # logo cues
    for row in ok.itertuples():
        evidence = json.loads(row.evidence)
        values = ok.loc[row.Index, expensive]
        if row.escalated:
            assert values.notna().any()
        else:
            assert values.isna().all()
            assert {evidence["reasons"][n] for n in expensive} == {"skipped by the cascade"}
            assert row.score == pytest.approx(cheap[list(ok.index).index(row.Index)])
    # scored exactly as training scores: every cue computed, the cascade applied afterwards
    context = champion.context()
    rows = listings.iloc[: len(ok)]
    table = context.featurize(rows, expensive=True)
    scores, escalated = champion.model.cascaded_scores(table.features, context.cue_cfg.cascade.enabled)
    np.testing.assert_allclose(ok["score"].to_numpy(), scores)
    assert list(escalated) == list(ok["escalated"])


@pytest.fixture
def fluent_mlflow(workspace):
    """Fluent MLflow (`mlflow.pyfunc.load_model`) pointed at the workspace store, restored afterwards."""
    with mlflow_store(workspace.mlflow_uri):
        yield


def test_pyfunc_scores_identically(champion, listings, fluent_mlflow):
    model = mlflow.pyfunc.load_model("models:/brandsentry@champion")
    through_pyfunc = model.predict(listings)
    direct = champion.score_frame(listings)
    columns = [c for c in direct.columns if c != "model_version"]
    pd.testing.assert_frame_equal(through_pyfunc[columns], direct[columns])
    # the pyfunc knows its bundle by directory name; the registry alias is resolved by load_bundle only
    assert through_pyfunc["model_version"].iloc[0].startswith("brandsentry-")


def test_a_bundle_pickles_without_its_context(champion, listings):
    twin = pickle.loads(pickle.dumps(champion))
    assert twin._context is None
    pd.testing.assert_frame_equal(twin.score_frame(listings.head(3)), champion.score_frame(listings.head(3)))


def test_a_bundle_whose_embedder_differs_from_its_index_is_refused(champion, tmp_path):
    copy = shutil.copytree(champion.path, tmp_path / "bundle")
    metadata = json.loads((copy / "bundle.json").read_text())
    metadata["embedder"]["weights_sha256"] = "0" * 64
    (copy / "bundle.json").write_text(json.dumps(metadata))
    with pytest.raises(EmbedderMismatchError, match="its index was built"):
        ScoringBundle.load(copy)


def test_another_embedder_is_refused(champion):
    other = Embedder.from_config({**champion.config.embedder, "seed": 1})
    assert other.identity != champion.identity
    with pytest.raises(EmbedderMismatchError, match="needs embedder"):
        champion.context(embedder=other)


def test_unusable_paths_and_uris_are_refused(champion, workspace, tmp_path):
    with pytest.raises(BundleError, match="neither a bundle directory"):
        ScoringBundle.load(tmp_path / "absent")
    with pytest.raises(BundleError, match="no bundle.json"):
        ScoringBundle.load(tmp_path)
    with pytest.raises(BundleError, match="models:/NAME@ALIAS"):
        load_bundle("models:/brandsentry", workspace)
    with pytest.raises(BundleError, match="models:/brandsentry/99"):
        load_bundle("models:/brandsentry/99", workspace)
    copy = shutil.copytree(champion.path, tmp_path / "old")
    metadata = json.loads((copy / "bundle.json").read_text())
    (copy / "bundle.json").write_text(json.dumps({**metadata, "format": 0}))
    with pytest.raises(BundleError, match="format 0"):
        ScoringBundle.load(copy)
