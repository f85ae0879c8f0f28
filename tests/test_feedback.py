"""The scoring ledger, verdict import, training rows from verdicts, and the simulated reviewer."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from brandsentry.catalog import Catalog
from brandsentry.cli import main
from brandsentry.config import Workspace
from brandsentry.errors import ConfigError
from brandsentry.feedback import (
    CUE_COLUMNS,
    VerdictFileError,
    brand_answers,
    brand_verdict,
    feedback_agreement,
    feedback_origins,
    feedback_training_rows,
    import_verdicts,
    open_feedback,
    record_brand_answer,
    simulate_verdicts,
)
from brandsentry.ledger import latest_scorings, record_scoring_run
from brandsentry.run_folder import ScoringResultsError
from brandsentry.run_folder import read_results as read_scoring_results
from fake_runs import make_results, write_run


@pytest.fixture
def workspace(tmp_path):
    return Workspace(tmp_path / "ws").ensure()


@pytest.fixture
def day1(tmp_path):
    return write_run(tmp_path / "runs" / "day1", make_results(n=40, seed=1, day=1))


def write_verdicts(path, rows):
    pd.DataFrame(rows, columns=["listing_id", "verdict", "reviewer", "note"]).to_csv(path, index=False)
    return path


def test_unfinished_run_is_refused(tmp_path):
    run = write_run(tmp_path / "run", make_results(n=10))
    (run / "_SUCCESS").unlink()
    with pytest.raises(ScoringResultsError, match="unfinished"):
        read_scoring_results(run)
    with pytest.raises(ScoringResultsError, match="does not exist"):
        read_scoring_results(tmp_path / "missing")


def test_a_run_over_its_error_budget_is_finished_but_not_successful(tmp_path):
    run = write_run(tmp_path / "run", make_results(n=10))
    (run / "_SUCCESS").unlink()
    summary = json.loads((run / "_summary.json").read_text())
    (run / "_summary.json").write_text(json.dumps({**summary, "status": "error_budget_exceeded"}))
    assert len(read_scoring_results(run)) == 10  # every shard was written: reviewers must see this day


def test_record_scoring_run_fills_the_ledger_idempotently(workspace, day1):
    first = record_scoring_run(workspace, day1)
    again = record_scoring_run(workspace, day1)
    assert first.listings == again.listings == 40
    assert first.decisions["error"] == 2
    with Catalog.open(workspace) as catalog:
        count = catalog.connection().execute("SELECT count(*) FROM scored_listings").fetchone()[0]
    assert count == 40
    ledger = latest_scorings(workspace, brand="acme")  # brands compare case-insensitively
    assert set(ledger["claimed_brand"]) == {"Acme"}
    assert ledger["scored_at"].iloc[0] == "2026-11-01T06:00:00.000000+00:00"


def test_latest_scoring_wins_and_since_filters(workspace, tmp_path):
    old = make_results(n=12, seed=2, scored_at="2026-11-01T06:00:00Z")
    new = old.copy()
    new["scored_at"] = "2026-11-03T06:00:00Z"
    new["decision"] = "pass"
    record_scoring_run(workspace, write_run(tmp_path / "old", old))
    record_scoring_run(workspace, write_run(tmp_path / "new", new))
    latest = latest_scorings(workspace)
    assert len(latest) == 12 and set(latest["decision"]) == {"pass"}
    assert latest["run_dir"].str.endswith("new").all()
    assert latest_scorings(workspace, since="2026-11-04T00:00:00+00:00").empty


def test_import_stores_verdicts_with_the_features_of_the_judged_scoring(workspace, day1, tmp_path):
    record_scoring_run(workspace, day1)
    results = read_scoring_results(day1)
    verdicts = write_verdicts(
        tmp_path / "verdicts.csv",
        [
            ("d1-00000", "confirmed_counterfeit", "ana", "fake box"),
            ("d1-00001", "false_positive", "ana", ""),
            ("d1-00002", "authentic", "bo", "own photo"),
            ("d1-00003", "maybe", "bo", ""),  # unknown verdict
            ("zz-99999", "authentic", "bo", ""),  # never scored here
            ("d1-00039", "authentic", "bo", ""),  # its only scoring failed: no features
            ("", "authentic", "bo", ""),
            ("d1-00004", "authentic", "", ""),
        ],
    )
    outcome = import_verdicts(workspace, verdicts)
    assert outcome.rows == 8
    assert outcome.imported == 3 and outcome.duplicates == 0
    assert outcome.by_verdict == {"confirmed_counterfeit": 1, "false_positive": 1, "authentic": 1}
    reasons = {r.line: r.reason for r in outcome.rejected}
    assert set(reasons) == {5, 6, 7, 8, 9}  # every rejected row is accounted for, with its line
    assert "unknown verdict 'maybe'" in reasons[5]
    assert "never scored" in reasons[6] and "never scored" in reasons[7]
    assert reasons[8] == "empty listing_id" and reasons[9] == "empty reviewer"

    rows = feedback_training_rows(workspace).set_index("listing_id")
    assert list(rows["label"]) == ["counterfeit", "authentic", "authentic"]
    expected = results.set_index("listing_id").loc["d1-00000"]
    for name in CUE_COLUMNS:
        assert rows.at["d1-00000", name] == pytest.approx(expected[name])
    assert rows.at["d1-00000", "claimed_product"] == expected["claimed_product"]
    assert rows["escalated"].all()

    again = import_verdicts(workspace, verdicts)
    assert again.imported == 0 and again.duplicates == 3


def test_nan_cues_survive_the_round_trip_and_latest_verdict_wins(workspace, tmp_path):
    results = make_results(n=10, seed=3)
    results.loc[0, "logo_reproj_error"] = np.nan
    run = write_run(tmp_path / "run", results)
    record_scoring_run(workspace, run)
    import_verdicts(
        workspace, write_verdicts(tmp_path / "a.csv", [("d1-00000", "false_positive", "ana", "")])
    )
    import_verdicts(
        workspace, write_verdicts(tmp_path / "b.csv", [("d1-00000", "confirmed_counterfeit", "ana", "")])
    )
    rows = feedback_training_rows(workspace)
    assert len(rows) == 1 and rows.loc[0, "label"] == "counterfeit"
    assert math.isnan(rows.loc[0, "logo_reproj_error"])
    with Catalog.open(workspace) as catalog:
        stored = catalog.connection().execute("SELECT features FROM feedback ORDER BY id").fetchall()
    assert json.loads(stored[0][0])["logo_reproj_error"] is None  # stored as JSON null, not NaN


def test_feedback_rows_are_empty_without_verdicts(workspace):
    rows = feedback_training_rows(workspace)
    assert rows.empty and "label" in rows.columns


def test_verdict_file_problems_name_the_file(workspace, tmp_path):
    with pytest.raises(VerdictFileError, match="does not exist"):
        import_verdicts(workspace, tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("listing,verdict\nx,authentic\n")
    with pytest.raises(VerdictFileError, match=r"lacks column\(s\) \['listing_id', 'reviewer'\]"):
        import_verdicts(workspace, bad)


def test_simulated_reviewer_answers_from_truth():
    results = make_results(n=80, seed=4)
    truth = results[["listing_id", "label"]]
    verdicts = simulate_verdicts(results, truth, top=15)
    queued = results[results["decision"].isin(["flag", "review"])].sort_values("score", ascending=False)
    assert list(verdicts["listing_id"]) == list(queued["listing_id"].head(15))
    merged = verdicts.merge(results, on="listing_id")
    counterfeit = merged["label"] == "counterfeit"
    assert (merged.loc[counterfeit, "verdict"] == "confirmed_counterfeit").all()
    authentic = merged[~counterfeit]
    expected = np.where(authentic["decision"] == "flag", "false_positive", "authentic")
    assert list(authentic["verdict"]) == list(expected)


def test_simulated_reviewer_errors_at_the_asked_rate():
    results = make_results(n=400, seed=5, score_shift=0.3)
    truth = results[["listing_id", "label"]]
    verdicts = simulate_verdicts(results, truth, top=300, error_rate=0.25, seed=1).merge(
        truth, on="listing_id"
    )
    wrong = (verdicts["verdict"] == "confirmed_counterfeit") != (verdicts["label"] == "counterfeit")
    assert len(verdicts) == 300
    assert 0.18 < wrong.mean() < 0.32
    assert (verdicts.loc[wrong, "note"] == "simulated reviewer error").all()


def test_cli_simulate_then_import(workspace, day1, tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    read_scoring_results(day1)[["listing_id", "label", "counterfeit_kind"]].to_csv(truth, index=False)
    verdicts = tmp_path / "verdicts.csv"
    ws = f"workspace={workspace.root}"
    assert (
        main(["feedback", "simulate", str(day1), str(truth), "--top", "10", "--out", str(verdicts), ws]) == 0
    )
    assert len(pd.read_csv(verdicts)) == 10
    assert main(["review", "record", str(day1), ws]) == 0
    assert main(["feedback", "import", str(verdicts), ws]) == 0
    out = capsys.readouterr().out
    assert "imported 10 verdict(s)" in out
    assert len(feedback_training_rows(workspace)) == 10


# ---- brand answers (the portal's inbox) beside reviewer verdicts ---------------------------------------

FIRST_VERSION = """
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    listing_id TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('confirmed_counterfeit', 'false_positive', 'authentic')),
    label TEXT NOT NULL CHECK (label IN ('counterfeit', 'authentic')),
    reviewer TEXT NOT NULL, note TEXT NOT NULL, imported_at TEXT NOT NULL, source TEXT NOT NULL,
    run_dir TEXT NOT NULL, claimed_brand TEXT NOT NULL, claimed_product TEXT, seller_id TEXT,
    decision TEXT NOT NULL, score REAL, model_version TEXT,
    expensive_cues INTEGER NOT NULL CHECK (expensive_cues IN (0, 1)), features TEXT NOT NULL
);
CREATE UNIQUE INDEX feedback_listing_reviewer_verdict ON feedback(listing_id, reviewer, verdict);
INSERT INTO feedback VALUES (7, 'd1-00000', 'false_positive', 'authentic', 'ana', 'n', 't', 'a.csv', '/r',
    'Acme', 'acme-p0', 's000', 'flag', 0.9, '1', 1, '{"sim_top1": 0.5}');
"""


def test_a_first_version_verdicts_table_is_upgraded_keeping_its_verdicts_as_reviewers(workspace, day1):
    with Catalog.open(workspace) as catalog, catalog.write() as connection:
        for statement in FIRST_VERSION.strip().split(";\n"):
            connection.execute(statement)
    rows = feedback_training_rows(workspace)
    assert rows[["listing_id", "label", "reviewer", "origin"]].values.tolist() == [
        ["d1-00000", "authentic", "ana", "reviewer"]
    ]
    assert rows.loc[0, "sim_top1"] == 0.5
    record_scoring_run(workspace, day1)
    scoring = latest_scorings(workspace, listing_ids=["d1-00000"]).iloc[0]
    with open_feedback(workspace) as catalog:
        record_brand_answer(catalog, brand_verdict(scoring, "not_ours", "brand:alice#k"))
        ids = catalog.connection().execute("SELECT id, origin, verdict FROM feedback ORDER BY id").fetchall()
        names = {r[0] for r in catalog.connection().execute("SELECT name FROM sqlite_master")}
    assert ids == [(7, "reviewer", "false_positive"), (8, "brand", "not_ours")]  # ids carry on
    assert "feedback_first_version" not in names and "feedback_brand_answer" in names


def test_brand_answers_supersede_and_training_reads_the_chosen_origins(workspace, day1, tmp_path):
    record_scoring_run(workspace, day1)
    import_verdicts(
        workspace,
        write_verdicts(
            tmp_path / "v.csv",
            [
                ("d1-00000", "confirmed_counterfeit", "ana", ""),
                ("d1-00001", "false_positive", "ana", ""),
                ("d1-00002", "authentic", "ana", ""),
            ],
        ),
    )
    scorings = latest_scorings(workspace, listing_ids=["d1-00000", "d1-00001", "d1-00003"]).set_index(
        "listing_id", drop=False
    )
    with open_feedback(workspace) as catalog:
        record_brand_answer(
            catalog, brand_verdict(scorings.loc["d1-00000"], "authentic", "brand:alice#k", "first look")
        )
        record_brand_answer(
            catalog, brand_verdict(scorings.loc["d1-00000"], "counterfeit", "brand:bob#j", " ours? no ")
        )
        record_brand_answer(catalog, brand_verdict(scorings.loc["d1-00001"], "counterfeit", "brand:alice#k"))
        record_brand_answer(catalog, brand_verdict(scorings.loc["d1-00003"], "not_ours", "brand:alice#k"))
        with pytest.raises(ValueError, match="unknown answer 'fake'"):
            brand_verdict(scorings.loc["d1-00003"], "fake", "brand:alice#k")
        reviewers = {**brand_verdict(scorings.loc["d1-00001"], "authentic", "ana"), "origin": "reviewer"}
        with pytest.raises(ValueError, match="not a brand verdict \\(origin 'reviewer'\\)"):
            record_brand_answer(catalog, reviewers)
        held = brand_answers(catalog, ["d1-00000", "d1-00002", "d1-00003"])
    assert set(held) == {"d1-00000", "d1-00003"}  # one answer per listing: the second superseded the first
    assert (held["d1-00000"].answer, held["d1-00000"].reviewer, held["d1-00000"].note) == (
        "counterfeit", "brand:bob#j", "ours? no",
    )  # fmt: skip

    def labels(*origins):
        rows = feedback_training_rows(workspace, origins) if origins else feedback_training_rows(workspace)
        label = rows["label"].astype(object).where(rows["label"].notna(), None)
        return dict(zip(rows["listing_id"], zip(rows["origin"], label, strict=True), strict=True))

    assert labels("reviewer") == {
        "d1-00000": ("reviewer", "counterfeit"),
        "d1-00001": ("reviewer", "authentic"),
        "d1-00002": ("reviewer", "authentic"),
    }
    assert labels("brand") == {
        "d1-00000": ("brand", "counterfeit"),
        "d1-00001": ("brand", "counterfeit"),
        "d1-00003": ("brand", None),  # not_ours: no label, training leaves it out
    }
    assert labels() == {**labels("reviewer"), **labels("brand")}  # the latest verdict per listing wins
    with pytest.raises(ValueError, match="unknown verdict origin 'vendor'"):
        feedback_training_rows(workspace, ["vendor"])

    agreement = feedback_agreement(workspace)
    assert (agreement.both, agreement.agree) == (2, 1)
    assert agreement.pairs == {("counterfeit", "counterfeit"): 1, ("authentic", "counterfeit"): 1}


def test_cli_agreement_states_how_often_brand_and_reviewer_agree(workspace, day1, tmp_path, capsys):
    ws = f"workspace={workspace.root}"
    assert main(["feedback", "agreement", ws]) == 0
    assert "no listing has both" in capsys.readouterr().out
    record_scoring_run(workspace, day1)
    verdicts = [("d1-00000", "false_positive", "ana", ""), ("d1-00001", "not_ours", "ana", "")]
    assert main(["feedback", "import", str(write_verdicts(tmp_path / "v.csv", verdicts)), ws]) == 0
    assert "available to training (data.include_feedback=true): 1" in capsys.readouterr().out  # no not_ours
    with open_feedback(workspace) as catalog:
        scorings = latest_scorings(workspace, listing_ids=["d1-00000", "d1-00001"]).set_index(
            "listing_id", drop=False
        )
        record_brand_answer(catalog, brand_verdict(scorings.loc["d1-00000"], "authentic", "brand:alice#k"))
        record_brand_answer(catalog, brand_verdict(scorings.loc["d1-00001"], "counterfeit", "brand:alice#k"))
    assert main(["feedback", "agreement", ws]) == 0
    out = capsys.readouterr().out
    assert "judged by both a reviewer and the brand: 2; agreeing: 1 (50%)" in out
    assert (
        "reviewer authentic   brand authentic   1" in out
        and "reviewer not_ours    brand counterfeit 1" in out
    )
    assert main(["review", "models", ws]) == 0  # the registry's versions, then the same agreement
    assert "judged by both a reviewer and the brand: 2; agreeing: 1 (50%)" in capsys.readouterr().out


def test_feedback_sources_choose_the_origins_training_reads():
    def origins(sources):
        return feedback_origins(OmegaConf.create({"feedback_sources": sources}).feedback_sources)

    assert origins({"reviewer": 1, "brand": 1}) == ["reviewer", "brand"]
    assert origins({"reviewer": 1, "brand": 0}) == ["reviewer"]
    assert origins({"brand": 1}) == ["reviewer", "brand"]  # an origin left unnamed is read
    assert feedback_origins(None) == ["reviewer", "brand"]
    with pytest.raises(ConfigError, match=r"data.feedback_sources.brand must be 0 .* got 0.5"):
        origins({"brand": 0.5})
    with pytest.raises(ConfigError, match="unknown origin 'vendor'"):
        origins({"vendor": 1})


# ---- reviewed listings join training: only where they cannot leak into validation or test -------------


@pytest.mark.slow
def test_training_with_feedback_adds_reviewed_listings_of_training_products_only(tiny_trained, tmp_path):
    """score a new day -> simulated verdicts -> retrain with data.include_feedback=true."""
    import shutil

    from brandsentry.config import load_config
    from brandsentry.scoring import score_run
    from brandsentry.train import run_hydra_train
    from conftest import TINY_WORLD_LISTINGS

    world, workspace = tmp_path / "world", tmp_path / "ws"
    shutil.copytree(tiny_trained.workspace.world, world)
    shutil.copytree(tiny_trained.workspace.path, workspace)
    base = (f"workspace={workspace}", "embedder=tiny_random")
    day = ["synth", "world", "synth=tiny", f"synth.listings={TINY_WORLD_LISTINGS}", f"out={world}", "day=2"]
    assert main(day) == 0
    run = tmp_path / "day2"
    score_run(
        load_config(
            [*base, f"score.listings={world / 'listings_day2.csv'}", f"score.out={run}", "score.progress=off"]
        )
    )
    assert main(["review", "record", str(run), *base]) == 0
    truth = pd.read_csv(world / "listings_day2.csv", dtype=str, keep_default_na=False)
    results = read_scoring_results(run)
    verdicts = simulate_verdicts(results, truth, top=len(results))
    verdicts.loc[0, "verdict"] = "not_ours"  # the claimed brand is wrong: no label to learn, left out
    verdicts.to_csv(tmp_path / "verdicts.csv", index=False)
    assert import_verdicts(workspace, tmp_path / "verdicts.csv").imported == len(verdicts)
    day1 = pd.read_csv(tiny_trained.workspace.listings, dtype=str, keep_default_na=False)
    assert not set(verdicts["listing_id"]) & set(day1["listing_id"])

    overrides = [
        f"workspace={workspace}" if o.startswith("workspace=") else o for o in tiny_trained.overrides
    ]
    (result,) = run_hydra_train(
        [f"listings={tiny_trained.workspace.listings}", *overrides, "data.include_feedback=true"]
    )
    metrics = result.metrics
    joined = metrics["rows.feedback"]
    held_back = metrics.get("rows.excluded.feedback.product_in_validation_or_test", 0.0)
    assert joined > 0 and held_back > 0  # the tiny world's day 2 sells products of every split
    assert metrics["rows.excluded.feedback.not_ours"] == 1
    assert joined + held_back == len(verdicts) - 1
    assert metrics["rows.train"] == tiny_trained.result.metrics["rows.train"] + joined
    for split in ("validation", "test"):  # held-out splits are exactly the ones of the model without feedback
        assert metrics[f"rows.{split}"] == tiny_trained.result.metrics[f"rows.{split}"]

    from brandsentry.review.runs import model_versions

    versions = model_versions(Workspace(workspace).mlflow_uri).set_index("version")
    assert versions.loc[1, "reviewed rows"] == 0 and versions.loc[1, "held back"] == 0
    assert versions.loc[2, "reviewed rows"] == joined and versions.loc[2, "held back"] == held_back + 1
