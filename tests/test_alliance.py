"""The brand side: sellers across days, seller clusters, case packages and the transparency report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brandsentry.alliance import AllianceSettings
from brandsentry.alliance.sellers import seller_clusters, seller_tables, shared_photo_links
from brandsentry.catalog import Catalog
from brandsentry.cli import main
from brandsentry.config import Workspace
from brandsentry.feedback import import_verdicts
from brandsentry.ledger import record_scoring_run
from fake_runs import make_results, write_run

SETTINGS = AllianceSettings(
    link_cosine=0.97, confirm_weight=3.0, prior_strength=2.0, top=50, evidence_listings=3, out="unused"
)


def listings(rows: list[tuple[str, str, str, float, str]]) -> pd.DataFrame:
    """(listing_id, seller_id, decision, score, verdict label or '') rows as window listings."""
    frame = pd.DataFrame(rows, columns=["listing_id", "seller_id", "decision", "score", "label"])
    frame["claimed_brand"] = "Acme"
    frame["label"] = frame["label"].replace("", None)
    return frame


def test_repeat_score_is_the_smoothed_verdict_weighted_flag_rate():
    frame = listings(
        [("a1", "A", "flag", 0.9, ""), ("a2", "A", "flag", 0.8, "counterfeit"), ("a3", "A", "pass", 0.1, "")]
        + [("b1", "B", "flag", 0.95, "authentic"), ("b2", "B", "pass", 0.2, "")]
        + [("c1", "C", "pass", 0.3, "")]
    )
    tables = seller_tables(frame, np.full((len(frame), 4), np.nan), {}, SETTINGS)
    table = tables.sellers.set_index("seller_id")
    p0 = 3 / 6  # the window's flag rate
    # A: a1 flag (1, w 1), a2 confirmed (1, w 3), a3 pass (0, w 1)
    assert table.at["A", "repeat_score"] == pytest.approx((1 + 3 + 2 * p0) / (5 + 2))
    # B: b1's authentic verdict overrides its flag and weighs 3
    assert table.at["B", "repeat_score"] == pytest.approx((0 + 0 + 2 * p0) / (4 + 2))
    assert table.at["B", "disputed"] == 1 and table.at["A", "confirmed"] == 1
    assert list(tables.sellers["seller_id"]) == ["A", "C", "B"]
    assert table.at["A", "evidence_listing_ids"] == ["a1", "a2", "a3"]


def test_many_flags_outrank_one_flag_and_smoothing_is_what_does_it():
    frame = listings(
        [(f"a{i}", "A", "flag", 0.9, "") for i in range(10)]
        + [("a10", "A", "pass", 0.2, ""), ("b0", "B", "flag", 0.99, "")]
        + [(f"c{i}", "C", "pass", 0.1, "") for i in range(10)]
    )
    vectors = np.full((len(frame), 2), np.nan)
    ranked = seller_tables(frame, vectors, {}, SETTINGS).sellers["seller_id"].tolist()
    assert ranked[:2] == ["A", "B"]
    unsmoothed = AllianceSettings(**{**SETTINGS.__dict__, "prior_strength": 0.0})
    assert seller_tables(frame, vectors, {}, unsmoothed).sellers["seller_id"].tolist()[:2] == ["B", "A"]


def test_shared_photos_link_sellers_transitively_but_not_an_authorised_seller():
    frame = listings(
        [("x1", "A", "flag", 0.9, ""), ("x2", "B", "flag", 0.8, ""), ("x3", "B", "pass", 0.2, "")]
        + [("x4", "C", "flag", 0.7, ""), ("x5", "D", "pass", 0.1, ""), ("x6", "E", "pass", 0.1, "")]
    )
    photo, other, third = np.eye(3)
    vectors = np.stack([photo, photo * 2, other, other + 0.01 * third, third, photo])
    links = shared_photo_links(frame, vectors, {"Acme": frozenset({"E"})}, 0.97)
    pairs = {(a, b) for a, b in zip(links["listing_a"], links["listing_b"], strict=True)}
    assert pairs == {("x1", "x2"), ("x3", "x4")}  # x6 is the brand's own seller; x5 shares nothing
    assert seller_clusters(links) == {"A": "C-A", "B": "C-A", "C": "C-A"}
    tables = seller_tables(frame, vectors, {"Acme": frozenset({"E"})}, SETTINGS)
    cluster = tables.clusters.set_index("cluster_id").loc["C-A"]
    assert cluster["sellers"] == ["A", "B", "C"] and cluster["scanned"] == 4 and cluster["flagged"] == 3
    assert tables.sellers.set_index("seller_id").at["E", "authorised_for"] == "Acme"


def test_a_listing_does_not_link_its_own_seller():
    frame = listings([("y1", "A", "flag", 0.9, ""), ("y2", "A", "flag", 0.8, "")])
    assert shared_photo_links(frame, np.ones((2, 3)), {}, 0.97).empty


def test_linking_in_blocks_finds_pairs_across_block_edges(monkeypatch):
    import brandsentry.alliance.sellers as sellers

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(9, 32))
    vectors[8] = vectors[0]  # first and last listing: in different blocks of 2
    vectors[5] = vectors[4]
    frame = listings([(f"z{i}", f"S{i}", "pass", 0.1, "") for i in range(9)])
    whole = sellers.shared_photo_links(frame, vectors, {}, 0.97)
    monkeypatch.setattr(sellers, "_BLOCK", 2)
    blocked = sellers.shared_photo_links(frame, vectors, {}, 0.97)
    assert set(zip(blocked["listing_a"], blocked["listing_b"], strict=True)) == {("z0", "z8"), ("z4", "z5")}
    pd.testing.assert_frame_equal(blocked, whole)


# ---- a workspace with two scored days -------------------------------------------------------------------


def scored_day(tmp_path, workspace, day: int, stamp: str) -> pd.DataFrame:
    """A scoring run of day `day` with embeddings, recorded in the ledger; sellers s000 and s001 share a photo."""
    results = make_results(n=40, seed=day, day=day, scored_at=stamp)
    rng = np.random.default_rng(day)
    vectors = rng.normal(size=(len(results), 16)).astype(np.float32)
    shared = np.flatnonzero(results["seller_id"].isin(["s000", "s001"]).to_numpy())[:2]
    vectors[shared[1]] = vectors[shared[0]]
    out = write_run(tmp_path / f"day{day}", results, parts=2)
    (out / "_embeddings").mkdir()
    for index, rows in enumerate(np.array_split(np.arange(len(results)), 2)):
        np.save(out / "_embeddings" / f"part-{index:05d}.npy", vectors[rows])
    record_scoring_run(workspace, out)
    return results


@pytest.fixture
def workspace(tmp_path):
    workspace = Workspace(tmp_path / "ws").ensure()
    Catalog.open(workspace).close()
    return workspace


@pytest.fixture
def two_days(tmp_path, workspace):
    first = scored_day(tmp_path, workspace, 1, "2026-11-02T06:00:00+00:00")
    second = scored_day(tmp_path, workspace, 2, "2026-11-03T06:00:00+00:00")
    flagged = pd.concat([first, second]).query("decision == 'flag'")
    verdicts = tmp_path / "verdicts.csv"
    with verdicts.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["listing_id", "verdict", "reviewer"])
        for n, listing_id in enumerate(flagged["listing_id"][:6]):
            writer.writerow([listing_id, "confirmed_counterfeit" if n % 3 else "false_positive", "rev"])
    import_verdicts(workspace, verdicts)
    return workspace, pd.concat([first, second], ignore_index=True)


def test_sellers_report_writes_parquet_and_html_into_the_workspace(two_days, capsys):
    workspace, results = two_days
    assert main(["sellers", "report", f"workspace={workspace.root}"]) == 0
    printed = capsys.readouterr().out
    page = next(line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("sellers report"))
    folder = workspace.root / "reports" / "sellers"
    assert page.startswith(str(folder)) and page.endswith("sellers.html")
    sellers = pd.read_parquet(page.replace("sellers.html", "sellers.parquet"))
    scored = results[results["decision"] != "error"]
    assert sellers["scanned"].sum() == len(scored)  # both days, errors left out
    assert sellers.set_index("seller_id")["flagged"].to_dict() == (
        scored.assign(f=scored["decision"] == "flag").groupby("seller_id")["f"].sum().to_dict()
    )
    assert sellers["confirmed"].sum() == 4 and sellers["disputed"].sum() == 2
    clusters = pd.read_parquet(page.replace("sellers.html", "clusters.parquet"))
    assert [list(s) for s in clusters["sellers"]] == [["s000", "s001"]]
    html = Path(page).read_text(encoding="utf-8")
    assert "C-s000" in html and sellers.at[0, "seller_id"] in html


def test_sellers_report_since_narrows_the_window(two_days, capsys):
    workspace, results = two_days
    assert main(["sellers", "report", "--since", "2026-11-03", f"workspace={workspace.root}"]) == 0
    page = capsys.readouterr().out.splitlines()[0].split(": ", 1)[1]
    sellers = pd.read_parquet(page.replace("sellers.html", "sellers.parquet"))
    assert sellers["scanned"].sum() == int((results["listing_id"].str.startswith("d2")
                                            & (results["decision"] != "error")).sum())  # fmt: skip


def test_embeddings_of_another_size_are_left_out_rather_than_compared(tmp_path):
    from brandsentry.alliance.sellers import window_vectors

    runs = []
    for day, (n, dim) in enumerate([(4, 8), (3, 8), (2, 5)], start=1):
        out = write_run(tmp_path / f"r{day}", make_results(n=n, day=day), parts=1)
        (out / "_embeddings").mkdir()
        np.save(out / "_embeddings" / "part-00000.npy", np.full((n, dim), float(day), np.float32))
        runs += [(str(out), f"d{day}-{i:05d}") for i in range(n)]
    vectors = window_vectors(pd.DataFrame(runs, columns=["run_dir", "listing_id"]))
    assert vectors.shape == (9, 8)
    assert (vectors[:4] == 1).all() and (vectors[4:7] == 2).all() and np.isnan(vectors[7:]).all()


@pytest.mark.parametrize(
    ("since", "message"),
    [("2026-12-01", "no scoring runs in the window since 2026-12-01: run `brandsentry score` first"),
     ("2026-13-01", "--since '2026-13-01' is not a date (expected YYYY-MM-DD")],
)  # fmt: skip
def test_sellers_report_refuses_an_empty_window_or_a_bad_date(two_days, capsys, since, message):
    workspace, _ = two_days
    assert main(["sellers", "report", "--since", since, f"workspace={workspace.root}"]) == 2
    assert message in capsys.readouterr().err


# ---- case packages ----------------------------------------------------------------------------------------


@pytest.fixture
def case_workspace(tmp_path, workspace):
    """Day 1 with real listing images, the catalog reference each matched and one its copy cue compared with."""
    from PIL import Image

    rng = np.random.default_rng(7)
    ref_ids = []
    with Catalog.open(workspace) as catalog:
        for n in range(2):
            stored = f"acme/ref{n}.png"
            (workspace.image_store / "acme").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                workspace.image_store / stored
            )
            ref = catalog.add_reference(
                brand="Acme", product="acme-p0", view="product", sha256=f"{n:064x}", phash=f"{n:016x}",
                stored_path=stored, width=8, height=8, submitted_by="test", status="approved",
            )  # fmt: skip
            ref_ids.append(ref.id)
    images = tmp_path / "images"
    images.mkdir()
    paths = []
    for i in range(40):
        path = images / f"d1-{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    results = make_results(n=40, seed=1, day=1, image_paths=paths, top_ref_ids=[ref_ids[:1]] * 40)
    results["top_similarities"] = [[0.9]] * 40
    results["evidence"] = json.dumps({"cues": {"copy_reference_id": ref_ids[1]}, "reasons": {}})
    record_scoring_run(workspace, write_run(tmp_path / "day1", results))
    return workspace, results


def export(workspace, out, *args) -> int:
    return main(["case", "export", "--brand", "acme", *args, str(out), f"workspace={workspace.root}"])


def test_a_case_package_holds_the_evidence_and_is_the_same_bytes_twice(case_workspace, tmp_path, capsys):
    import zipfile

    workspace, results = case_workspace
    seller = results.loc[results["claimed_brand"] == "Acme", "seller_id"].iloc[0]
    assert export(workspace, tmp_path / "a.zip", "--seller", seller) == 0
    assert export(workspace, tmp_path / "b.zip", "--seller", seller) == 0
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    expected = results[(results["claimed_brand"] == "Acme") & (results["seller_id"] == seller)]
    expected = expected[expected["decision"] != "error"]
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        manifest = json.loads(archive.read("manifest.json"))
        assert set(manifest["files"]) == set(names) - {"manifest.json"}
        listing_id = expected["listing_id"].iloc[0]
        record = json.loads(archive.read(f"listings/{listing_id}.json"))
        row = expected.set_index("listing_id").loc[listing_id]
        assert record["score"] == pytest.approx(row["score"]) and record["seller_id"] == seller
        assert record["cues"]["sim_top1"] == pytest.approx(row["sim_top1"])
        assert archive.read(record["image_file"]) == Path(row["image_path"]).read_bytes()
        assert [r["file"] for r in record["references"]] == ["references/1.png"]
        assert archive.read("references/1.png") == (workspace.image_store / "acme/ref0.png").read_bytes()
        assert record["cue_references"] == {"cues.copy_reference_id": {"id": 2, "file": "references/2.png"}}
        assert archive.read("references/2.png") == (workspace.image_store / "acme/ref1.png").read_bytes()
        assert (
            "summary.html" in names and f"{len(expected)} listing(s)" in archive.read("summary.html").decode()
        )
    assert main(["case", "verify", str(tmp_path / "a.zip")]) == 0
    assert f"all {len(names) - 1} file(s) match" in capsys.readouterr().out


def test_a_tampered_case_package_fails_verification_naming_the_file(case_workspace, tmp_path, capsys):
    import zipfile

    workspace, results = case_workspace
    assert export(workspace, tmp_path / "case.zip") == 0
    with (
        zipfile.ZipFile(tmp_path / "case.zip") as original,
        zipfile.ZipFile(tmp_path / "bad.zip", "w") as bad,
    ):
        victim = next(n for n in original.namelist() if n.startswith("listings/") and n.endswith(".json"))
        for info in original.infolist():
            data = original.read(info)
            bad.writestr(
                info,
                data.replace(b'"decision": "flag"', b'"decision": "pass"')
                if info.filename == victim
                else data,
            )
    capsys.readouterr()
    assert main(["case", "verify", str(tmp_path / "bad.zip")]) == 2
    assert f"{victim} does not match its sha256" in capsys.readouterr().err


def test_case_export_names_an_unknown_brand_seller_or_cluster(case_workspace, tmp_path, capsys):
    workspace, _ = case_workspace
    assert (
        main(["case", "export", "--brand", "Zed", str(tmp_path / "x.zip"), f"workspace={workspace.root}"])
        == 2
    )
    assert "unknown brand 'Zed'" in capsys.readouterr().err
    assert export(workspace, tmp_path / "x.zip", "--seller", "s999") == 2
    assert "unknown seller 's999'" in capsys.readouterr().err
    assert export(workspace, tmp_path / "x.zip", "--cluster", "C-s999") == 2
    assert "unknown cluster 'C-s999'" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


# ---- transparency report ----------------------------------------------------------------------------------


def test_report_numbers_count_flags_verdicts_and_time_to_verdict(two_days):
    from brandsentry.alliance.report import report_numbers

    workspace, results = two_days
    scored = results[results["decision"] != "error"]
    with Catalog.open(workspace) as catalog:
        imported = catalog.connection().execute("SELECT listing_id, imported_at FROM feedback").fetchall()
    stamps = results.set_index("listing_id")["scored_at"]
    hours = [(pd.Timestamp(at) - pd.Timestamp(stamps[i])).total_seconds() / 3600 for i, at in imported]
    report = report_numbers(workspace, "2026-11")
    assert report["overall"] == {
        "scanned": len(scored),
        "flagged": int((scored["decision"] == "flag").sum()),
        "confirmed": 4,
        "disputed": 2,
        "flag_precision": pytest.approx(4 / 6),
        "median_hours_to_verdict": pytest.approx(float(np.median(hours))),
    }
    acme = scored[scored["claimed_brand"] == "Acme"]
    assert report["brands"]["Acme"]["scanned"] == len(acme)
    assert sum(b["flagged"] for b in report["brands"].values()) == report["overall"]["flagged"]
    assert report_numbers(workspace, "2026-11", brand="acme")["overall"] == report["brands"]["Acme"]


def test_a_brand_without_verdicts_has_no_precision_rather_than_a_zero(workspace, tmp_path):
    from brandsentry.alliance.report import report_numbers

    scored_day(tmp_path, workspace, 1, "2026-11-02T06:00:00+00:00")
    overall = report_numbers(workspace, "2026-11")["overall"]
    assert overall["flag_precision"] is None and overall["median_hours_to_verdict"] is None


def test_report_command_writes_html_json_and_an_mlflow_run(two_days, capsys):
    from mlflow import MlflowClient

    workspace, _ = two_days
    assert main(["report", "--period", "2026-11", f"workspace={workspace.root}"]) == 0
    assert "flag precision 0.667" in capsys.readouterr().out
    folder = workspace.root / "reports" / "transparency" / "2026-11"
    report = json.loads((folder / "report.json").read_text())
    page = (folder / "report.html").read_text()
    assert "data:image/png;base64," in page and "Borealis" in page
    client = MlflowClient(tracking_uri=workspace.mlflow_uri)
    experiment = client.get_experiment_by_name("reports")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["period"] == "2026-11"
    assert run.data.metrics["overall.scanned"] == report["overall"]["scanned"]
    assert run.data.metrics["brand.Acme.flagged"] == report["brands"]["Acme"]["flagged"]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {
        "report.html",
        "report.json",
        "flags.png",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--period", "2026/11"], "--period '2026/11' is not a month (expected YYYY-MM"),
     (["--period", "2026-10"], "no scoring runs in the window since 2026-10-01 before 2026-11-01: run `brandsentry score` first"),
     (["--period", "2026-11", "--brand", "Zed"], "unknown brand 'Zed'")],
)  # fmt: skip
def test_report_names_a_bad_period_an_empty_month_or_an_unknown_brand(two_days, capsys, args, message):
    workspace, _ = two_days
    assert main(["report", *args, f"workspace={workspace.root}"]) == 2
    assert message in capsys.readouterr().err
