"""The daily batch job: one row per listing, resumable shards, bad input as error rows, clear refusals."""

from __future__ import annotations

import ctypes.util
import json
import logging
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from brandsentry.config import load_config
from brandsentry.features import ListingManifestError
from brandsentry.feedback import CUE_COLUMNS
from brandsentry.run_folder import embedding_files, embeddings_path, part_files
from brandsentry.scoring import (
    ErrorBudgetExceeded,
    ScoreRunError,
    ScoreSummary,
    ShardScorer,
    plan_shards,
    score_run,
)
from conftest import (
    assert_close_results,
    comparable,
    first_rows,
    read_results,
    read_vectors,
    score_config,
    write_day,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_one_row_per_listing_with_every_column(world, reference):
    out, summary, results = reference
    manifest = pd.read_csv(world.listings, dtype=str, keep_default_na=False)
    assert results["listing_id"].tolist() == manifest["listing_id"].tolist()
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [f"part-{i:05d}.parquet" for i in range(6)]
    bundle_features = world.feature_names
    for column in ["claimed_brand", "score", "decision", "threshold", "review_threshold", "top_ref_ids",
                   "top_similarities", "top_ref_brand", "top_ref_product", "error", "error_detail",
                   "model_version", "scored_at", "escalated", *bundle_features]:  # fmt: skip
        assert column in results.columns, column
    # unknown manifest columns travel along; the price as a number
    for column in ("label", "counterfeit_kind", "split", "title", "seller_id"):
        assert results[column].tolist() == manifest[column].tolist()
    assert results["price"].tolist() == manifest["price"].astype(float).tolist()
    assert set(results["decision"]) <= {"flag", "review", "pass", "error"}
    errors = results[results["decision"] == "error"]
    assert (errors["error"].str.len() > 0).all() and errors["score"].isna().all()
    ok = results[results["decision"] != "error"]
    assert ok["score"].between(0, 1).all() and ok["error"].isna().all() and ok["error_detail"].isna().all()
    assert (ok["review_threshold"] <= ok["threshold"]).all() and ok["review_threshold"].gt(0).all()
    review = ok["decision"] == "review"
    assert (
        ok.loc[review, "score"].between(ok.loc[review, "review_threshold"], ok.loc[review, "threshold"]).all()
    )
    assert ok["top_ref_brand"].notna().all() and ok["top_ref_product"].notna().all()
    assert ok["top_ref_ids"].map(len).gt(0).all()
    # the world's undecodable listings are error rows with their reason
    undecodable = manifest.index[manifest["counterfeit_kind"] == "undecodable"]
    assert len(undecodable) and (results.loc[undecodable, "decision"] == "error").all()
    assert (out / "_SUCCESS").is_file()
    written = json.loads((out / "_summary.json").read_text())
    assert written["listings"] == len(manifest) == summary.listings
    assert (
        written["decisions"]
        == results["decision"]
        .value_counts()
        .reindex(["flag", "review", "pass", "error"], fill_value=0)
        .to_dict()
    )
    assert written["errors"] == errors["error"].value_counts().sort_index().to_dict()
    assert written["images_per_s"] > 0 and written["elapsed_s"] > 0
    assert written["escalated"] == int(results["escalated"].sum())
    scored = results[results["decision"] != "error"]
    assert written["escalation_rate"] == pytest.approx(scored["escalated"].mean())
    by_brand = scored.groupby("claimed_brand")["escalated"].agg(["size", "sum"])
    assert written["escalation_by_brand"] == {
        brand: {"listings": int(row["size"]), "escalated": int(row["sum"]), "rate": row["sum"] / row["size"]}
        for brand, row in by_brand.iterrows()
    }


def test_embeddings_are_saved_row_aligned_per_shard(world, reference):
    from brandsentry.bundle import ScoringBundle

    out, _, results = reference
    vectors = read_vectors(out)
    assert vectors.dtype == np.float32 and len(vectors) == len(results)
    failed = (results["decision"] == "error").to_numpy()
    assert np.isnan(vectors[failed]).all()
    assert np.allclose(np.linalg.norm(vectors[~failed], axis=1), 1.0, atol=1e-4)
    # searching the bundle's index with the saved vectors finds the neighbours the results report
    found = ScoringBundle.load(world.bundle).context().index.search(vectors[~failed], 10)
    for ids, sims, row in zip(found.ids, found.scores, results[~failed].itertuples(), strict=True):
        assert list(ids[ids >= 0]) == list(row.top_ref_ids)
        np.testing.assert_allclose(sims[ids >= 0], row.top_similarities, rtol=1e-6)


def test_a_finished_run_folder_is_a_parquet_dataset(reference):
    import pyarrow.dataset as ds

    out, summary, results = reference
    assert {p.name for p in out.iterdir() if not p.name.startswith(("_", "."))} == {
        p.name for p in part_files(out)
    }
    by_pandas = pd.read_parquet(out)
    assert len(by_pandas) == summary.listings and list(by_pandas.columns) == list(results.columns)
    assert by_pandas["listing_id"].tolist() == results["listing_id"].tolist()
    dataset = ds.dataset(out, format="parquet")
    assert dataset.count_rows() == summary.listings
    assert sorted(dataset.to_table(columns=["listing_id"])["listing_id"].to_pylist()) == sorted(
        results["listing_id"]
    )
    assert dataset.schema.field("cue_failures").type == pa.list_(pa.string())


def test_a_folder_of_the_old_layout_is_refused_by_name(world, reference, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(reference[0], out)
    (out / "_summary.json").rename(out / "summary.json")
    with pytest.raises(ScoreRunError, match="summary.json.*force=true"):
        score_run(score_config(world, out, "score.shard_size=10"))


def test_cue_failures_are_counted_in_the_summary_and_a_bug_is_logged_once(
    world, tmp_path, monkeypatch, caplog
):
    import brandsentry.cues.compute as compute
    import brandsentry.cues.quality as quality

    def broken(*args, **kwargs):
        raise TypeError("quality cue bug")

    monkeypatch.setattr(quality, "quality_cues", broken)
    monkeypatch.setattr(compute, "_reported", set())
    out = tmp_path / "failing"
    with caplog.at_level(logging.ERROR, logger="brandsentry.cues.compute"):
        summary = score_run(score_config(world, out, listings=first_rows(world, 20)))
    results = read_results(out)
    decoded = int((results["decision"] != "error").sum())
    assert summary.cue_failures == {"quality": {"TypeError": decoded}} and decoded > 0
    assert json.loads((out / "_summary.json").read_text())["cue_failures"] == summary.cue_failures
    failed = results[results["decision"] != "error"]
    assert failed["cue_failures"].map(lambda entries: list(entries) == ["quality: TypeError"]).all()
    assert failed["quality_sharpness"].isna().all() and failed["score"].notna().all()
    bugs = [r for r in caplog.records if "quality" in r.getMessage() and r.exc_info]
    assert len(bugs) == 1 and "quality cue bug" in str(bugs[0].exc_info[1])


def test_finished_run_is_a_noop_unless_forced(world, reference, tmp_path):
    out, summary, results = reference
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = score_run(score_config(world, out, "score.shard_size=10"))
    assert again.already_complete and again.scored_now == 0 and again.decisions == summary.decisions
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_force_scores_again_from_scratch(world, reference, tmp_path):
    out = tmp_path / "forced"
    shutil.copytree(reference[0], out)
    (out / "part-00003.parquet").unlink()  # even an unfinished run of another shard size is discarded
    forced = score_run(score_config(world, out, "score.shard_size=20", "score.force=true"))
    assert forced.scored_now == forced.listings and forced.shards_reused == 0 and forced.shards == 3
    assert sorted(p.name for p in out.glob("part-*")) == [f"part-{i:05d}.parquet" for i in range(3)]
    assert len(embedding_files(out)) == 3
    assert_close_results(read_results(out), reference[2])


def crash_after_two_shards(monkeypatch) -> None:
    """The next run dies (KeyboardInterrupt) when it is about to write its third shard.

    Shards are written by the main process whatever the number of lanes, so the patch reaches every run.
    """
    real_write, written = ShardScorer._write, []

    def write(self, buffer):
        if len(written) == 2:
            raise KeyboardInterrupt("simulated crash")
        real_write(self, buffer)
        written.append(buffer.shard.number)

    monkeypatch.setattr(ShardScorer, "_write", write)


def test_resume_after_a_crash_equals_an_uninterrupted_run(world, reference, tmp_path, monkeypatch):
    out, listings = tmp_path / "crashed", first_rows(world, 40)
    crash_after_two_shards(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        score_run(score_config(world, out, "score.shard_size=10", listings=listings))
    monkeypatch.undo()
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.parquet", "part-00001.parquet"]
    assert not (out / "_SUCCESS").exists()
    # what a kill -9 in the middle of shard 2's write leaves behind: its embeddings and a temp file
    embeddings_path(out, 2).write_bytes(b"half")
    (out / ".part-00002.parquet.tmp-999").write_bytes(b"half")
    (out / "_embeddings" / ".part-00003.npy.tmp-999").write_bytes(b"half")
    resumed = score_run(score_config(world, out, "score.shard_size=10", listings=listings))
    assert resumed.shards_reused == 2 and resumed.scored_now == 20 and resumed.listings == 40
    assert not list(out.glob("**/.*tmp*")) and (out / "_SUCCESS").is_file()
    assert comparable(read_results(out)).equals(comparable(reference[2]).head(40))
    vectors, expected = read_vectors(out), read_vectors(reference[0])
    np.testing.assert_array_equal(vectors, expected[:40])


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("lanes", ["auto", "2"])
def test_resume_after_kill_minus_9(world, reference, tmp_path, lanes):
    """A real SIGKILL mid-run (the CLI in a subprocess), then a rerun: the rows of an uninterrupted run.

    The day is the reference day's first 10 listings four times over (new listing ids); with shards of 10
    every copy is cut into the same batches as the reference run, so each copy must reproduce it exactly.
    With lanes, the killed command's lane processes die with it (none is left writing).
    """
    psutil = pytest.importorskip("psutil")
    copies = 4
    listings = write_day(world.listings, tmp_path / "repeated.csv", rows=10, copies=copies)
    day = pd.read_csv(listings, dtype=str, keep_default_na=False)
    out = tmp_path / "killed"
    args = [str(Path(sys.executable).with_name("brandsentry")), "score", *world.overrides, f"listings={listings}",
            f"out={out}", f"model={world.bundle}", "shard_size=10", "score.error_budget=1.0", "score.model_threads=1",
            f"score.lanes={lanes}"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (out / "part-00001.parquet").exists():
        assert process.poll() is None and time.monotonic() < deadline, "scorer ended before the kill"
        time.sleep(0.005)
    if ctypes.util.find_library("tcmalloc_minimal"):  # the CLI restarted itself with tcmalloc (same pid)
        assert "tcmalloc" in Path(f"/proc/{process.pid}/maps").read_text()
    children = psutil.Process(process.pid).children(recursive=True)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"processes outlived the killed scorer: {alive}"
    assert not (out / "_SUCCESS").exists(), "the run finished before it could be killed"
    parts_before = len(list(out.glob("part-*.parquet")))
    assert 2 <= parts_before < len(plan_shards(len(day), 10))
    finished = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"({parts_before} reused)" in finished.stdout
    results = comparable(read_results(out))
    assert results["listing_id"].tolist() == day["listing_id"].tolist()
    tiled = pd.concat([comparable(reference[2]).head(10)] * copies, ignore_index=True)
    carried = [c for c in results.columns if c != "listing_id"]
    assert results[carried].equals(tiled[carried])


def test_resume_with_another_manifest_or_shard_size_is_refused(world, reference, tmp_path):
    out, _, _ = reference
    with pytest.raises(ScoreRunError, match="shard_size 10 -> 7"):
        score_run(score_config(world, out, "score.shard_size=7"))
    changed = write_day(world.listings, tmp_path / "changed.csv", rows=59)
    with pytest.raises(ScoreRunError, match="manifest_sha256"):
        score_run(score_config(world, out, "score.shard_size=10", listings=changed))


def png_with_declared_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def bad_inputs(folder: Path, photo: np.ndarray) -> dict[str, tuple[str, set[str]]]:
    """name -> (image_path, acceptable reasons): every way a listing image can be unusable."""
    folder.mkdir()
    Image.fromarray(photo).save(folder / "good.jpg", quality=90)
    Image.fromarray(photo).save(folder / "good.png")
    Image.fromarray(photo).save(folder / "good.webp")
    jpeg, png, webp = ((folder / f"good.{s}").read_bytes() for s in ("jpg", "png", "webp"))
    files = {
        "empty.jpg": b"",
        "truncated_half.jpg": jpeg[: len(jpeg) // 2],
        "truncated_header.jpg": jpeg[:300],
        "truncated_tail.jpg": jpeg[:-200],
        "truncated.png": png[: len(png) // 2],
        "truncated.webp": webp[: len(webp) // 2],
        "noise.jpg": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "text.jpg": b"this is not an image, just a caption someone saved as .jpg\n" * 20,
        "page.jpg": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "vector.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        "document.pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
        "bomb.png": png_with_declared_size(100_000, 100_000),
        "bomb_9k.png": png_with_declared_size(9_000, 9_000),
        "jpeg_magic_then_garbage.jpg": b"\xff\xd8\xff\xe0" + b"\x13" * 2000,
        "png_bad_crc.png": png[:33] + b"\0\0\0\0" + png[37:],
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    with open(folder / "oversized.jpg", "wb") as handle:  # sparse: > 50 MiB declared, no disk used
        handle.write(jpeg)
        handle.truncate(51 * 1024 * 1024)
    (folder / "subfolder.jpg").mkdir()
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    corrupt = {"corrupt", "truncated"}
    cases = {
        "missing": ("missing.jpg", {"missing_file"}),
        "dangling_symlink": ("dangling.jpg", {"missing_file"}),
        "directory": ("subfolder.jpg", {"not_a_file"}),
        "empty": ("empty.jpg", {"empty_file"}),
        "oversized": ("oversized.jpg", {"too_many_bytes"}),
        "truncated_half": ("truncated_half.jpg", corrupt),
        "truncated_header": ("truncated_header.jpg", {"truncated"}),
        "truncated_tail": ("truncated_tail.jpg", corrupt),
        "truncated_png": ("truncated.png", corrupt),
        "truncated_webp": ("truncated.webp", corrupt | {"unsupported_format"}),
        "noise": ("noise.jpg", {"unsupported_format"}),
        "text": ("text.jpg", {"unsupported_format"}),
        "html": ("page.jpg", {"unsupported_format"}),
        "svg": ("vector.svg", {"unsupported_format"}),
        "pdf": ("document.pdf", {"unsupported_format"}),
        "bomb": ("bomb.png", {"decompression_bomb"}),
        "bomb_9k": ("bomb_9k.png", {"decompression_bomb"}),
        "jpeg_garbage": ("jpeg_magic_then_garbage.jpg", corrupt | {"unsupported_format"}),
        "png_bad_crc": ("png_bad_crc.png", corrupt),
        "remote_uri": ("https://cdn.example.com/listing.jpg", {"missing_file", "unsupported_uri"}),
    }
    return {
        name: (str(folder / path) if "://" not in path else path, reasons)
        for name, (path, reasons) in cases.items()
    }


def test_every_kind_of_bad_input_is_an_error_row_and_the_run_completes(world, tmp_path, photo_array):
    cases = bad_inputs(tmp_path / "bad", photo_array(320, 240))
    brand = world.brands[0]
    rows = [
        {"listing_id": f"bad-{name}", "image_path": path, "claimed_brand": brand}
        for name, (path, _) in cases.items()
    ]
    good = str(tmp_path / "bad" / "good.jpg")
    rows += [
        {"listing_id": "good", "image_path": good, "claimed_brand": brand},
        {"listing_id": "unknown-brand", "image_path": good, "claimed_brand": "Nonexistent Brand Co"},
    ]
    listings = tmp_path / "bad.csv"
    pd.DataFrame(rows).to_csv(listings, index=False)
    out = tmp_path / "out"
    summary = score_run(score_config(world, out, "score.shard_size=8", listings=listings))
    results = read_results(out).set_index("listing_id")
    assert len(results) == len(rows) == summary.listings
    assert len(cases) >= 15
    for name, (_, reasons) in cases.items():
        row = results.loc[f"bad-{name}"]
        assert row["decision"] == "error" and row["error"] in reasons, (
            name,
            row["error"],
            row["error_detail"],
        )
    assert results.loc["unknown-brand", "error"] == "unknown_brand"
    assert results.loc["good", "decision"] in ("flag", "review", "pass")
    assert summary.decisions["error"] == len(cases) + 1
    assert sum(summary.errors.values()) == len(cases) + 1 and (out / "_SUCCESS").is_file()


def test_error_budget_fails_loudly_after_writing_everything(world, tmp_path, caplog):
    out, listings = tmp_path / "budget", first_rows(world, 25)
    caplog.set_level("INFO", logger="brandsentry.scoring")
    settings = ("score.shard_size=10", "score.error_budget=0.0", "score.progress=log", "score.log_every_s=0")
    with pytest.raises(ErrorBudgetExceeded, match=r"error budget 0\.0%") as caught:
        score_run(score_config(world, out, *settings, listings=listings))
    summary = caught.value.summary
    failed = (read_results(out)["decision"] == "error").sum()
    assert summary.status == "error_budget_exceeded" and summary.decisions["error"] == failed > 0
    assert len(list(out.glob("part-*.parquet"))) == 3 and len(read_results(out)) == summary.listings == 25
    assert json.loads((out / "_summary.json").read_text())["status"] == "error_budget_exceeded"
    assert not (out / "_SUCCESS").exists()
    # without a terminal, progress is a log line with rate and ETA
    lines = [r.getMessage() for r in caplog.records if "images/s, ETA" in r.getMessage()]
    assert lines and lines[-1].startswith("scored 25/25 listings (100.0%)")
    # a rerun scores nothing again and fails the same way
    with pytest.raises(ErrorBudgetExceeded):
        score_run(score_config(world, out, *settings, listings=listings))


@pytest.mark.parametrize(
    "content,message",
    [
        ("listing_id,claimed_brand\nx,Acme\n", r"lacks column\(s\) \['image_path'\]"),
        (
            "listing_id,image_path,claimed_brand\na,1.jpg,Acme\nb,2.jpg,Acme\na,3.jpg,Acme\n",
            r"repeats listing_id\(s\) \['a'\]",
        ),
        ("listing_id,image_path,claimed_brand\n", "has no rows"),
        ("", "cannot be read"),
    ],
    ids=["missing-column", "duplicate-ids", "header-only", "empty-file"],
)
def test_manifest_errors_stop_the_run_before_any_work(world, tmp_path, content, message, capsys):
    from brandsentry.cli import main

    listings = tmp_path / "listings.csv"
    listings.write_text(content)
    out = tmp_path / "out"
    with pytest.raises(ListingManifestError, match=message):
        score_run(score_config(world, out, listings=listings))
    assert not out.exists()
    code = main(["score", *world.overrides, f"listings={listings}", f"out={out}", f"model={world.bundle}"])
    assert code == 2 and "ListingManifestError" in capsys.readouterr().err and not out.exists()


def test_a_batch_that_fails_as_a_whole_becomes_error_rows(world, reference, tmp_path, monkeypatch):
    from brandsentry.bundle import ScoringBundle
    from brandsentry.embed import Embedder

    real_score, real_embed, calls = ScoringBundle.score_batch, Embedder.embed_batch, []
    second_shard = reference[2]["listing_id"].iloc[10]

    def scoring_fails_for_the_second_shard(self, rows, images, errors, vectors=None):
        if rows["listing_id"].iloc[0] == second_shard:
            raise MemoryError("simulated")
        return real_score(self, rows, images, errors, vectors)

    def model_fails_on_the_third_batch(self, batch):
        calls.append(len(batch))  # (the embedder's own probe at construction is one zero image)
        if len([n for n in calls if n > 1]) == 3 and calls[-1] > 1:
            raise RuntimeError("simulated CUDA error")
        return real_embed(self, batch)

    monkeypatch.setattr(ScoringBundle, "score_batch", scoring_fails_for_the_second_shard)
    monkeypatch.setattr(Embedder, "embed_batch", model_fails_on_the_third_batch)
    out = tmp_path / "failing"
    score_run(score_config(world, out, "score.shard_size=10", listings=first_rows(world, 40)))
    results = read_results(out)
    assert len(results) == 40 and (out / "_SUCCESS").is_file()
    failed = results.iloc[10:20]
    assert (failed["decision"] == "error").all() and (failed["error"] == "scoring_failed").all()
    assert failed["error_detail"].str.contains("MemoryError: simulated").all()
    assert failed[list(world.feature_names)].isna().all().all()
    expected = comparable(reference[2]).head(40)
    unembedded, expected_unembedded = results.iloc[20:30], expected.iloc[20:30]
    undecoded = expected_unembedded["decision"] == "error"  # keep their own decode reason
    assert (unembedded["decision"] == "error").all()
    assert (unembedded.loc[~undecoded, "error"] == "embed_failed").all()
    assert unembedded.loc[~undecoded, "error_detail"].str.contains("simulated CUDA error").all()
    assert unembedded.loc[undecoded, "error"].equals(expected_unembedded.loc[undecoded, "error"])
    others = [*range(10), *range(30, 40)]
    assert comparable(results).iloc[others].equals(expected.iloc[others])


def test_parquet_manifest_and_default_output_folder(world, reference, tmp_path):
    manifest = pd.read_csv(first_rows(world, 20), dtype=str, keep_default_na=False)
    manifest["price"] = manifest["price"].astype(float)
    listings = tmp_path / "day7.parquet"
    manifest.to_parquet(listings)
    # no out= and no model=: WORKSPACE/runs/score/<stem> with the registry's champion
    cfg = load_config([*world.overrides, f"score.listings={listings}", "score.progress=off",
                       "score.error_budget=1.0", "score.shard_size=10", "score.model_threads=1"])  # fmt: skip
    summary = score_run(cfg)
    assert summary.out_dir == (world.workspace.path / "runs" / "score" / "day7").resolve()
    assert summary.model_uri == "models:/brandsentry@champion" and summary.model_version == "brandsentry/1"
    results = read_results(summary.out_dir)
    assert results["price"].dtype == np.float64
    assert results["price"].tolist() == manifest["price"].tolist()
    columns = [c for c in reference[2].columns if c not in ("scored_at", "price", "model_version")]
    assert results[columns].equals(reference[2][columns].head(20))  # the champion is that same bundle


def test_summary_round_trips(reference):
    summary = reference[1]
    assert ScoreSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary


@pytest.mark.gpu
def test_cuda_scores_like_the_cpu(world, reference, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path / "cuda"
    score_run(score_config(world, out, "score.shard_size=10", "score.device=cuda"))
    results, expected = read_results(out), reference[2]
    assert (results["decision"] == "error").equals(expected["decision"] == "error")
    ok = expected["decision"] != "error"
    np.testing.assert_allclose(results.loc[ok, "sim_top1"], expected.loc[ok, "sim_top1"], atol=2e-2)


def test_score_settings_read_every_key_strictly_and_fill_in_the_output_folder(tmp_path):
    from brandsentry.errors import ConfigError
    from brandsentry.scoring import ScoreSettings

    def settings(*overrides: str) -> ScoreSettings:
        return ScoreSettings.from_config(load_config([f"workspace={tmp_path}", *overrides]))

    day = settings("score.listings='~/day.csv'")
    assert day.listings == Path("~/day.csv").expanduser()
    assert day.out == tmp_path.resolve() / "runs" / "score" / "day"
    assert (day.lanes, day.ray.gpus_per_actor, day.tcmalloc_mode, day.log_run) == (
        "auto",
        "auto",
        "auto",
        True,
    )
    assert settings("score.listings=day.csv", "score.out='~/out'").out == Path("~/out").expanduser()
    assert settings("score.listings=day.csv", "score.tcmalloc=false").tcmalloc_mode == "false"
    assert settings("score.listings=day.csv", "score.ray.gpus_per_actor=1").ray.gpus_per_actor == 1.0
    for override, message in (
        ("+score.shard_sise=10", r"score.shard_sise \(did you mean score.shard_size\?\)"),
        ("score.tcmalloc=sometimes", "score.tcmalloc='sometimes'"),
        ("score.lanes=many", "score.lanes='many'"),
        ("score.ray.gpus_per_actor=many", "score.ray.gpus_per_actor='many'"),
        ("score.ray.actors=0", "score.ray.actors=0"),
        ("score.log_run=maybe", "score.log_run must be bool"),
    ):
        with pytest.raises(ConfigError, match=message):
            settings("score.listings=day.csv", override)


def test_invalid_settings_are_refused_with_their_names(world, tmp_path):
    from brandsentry.errors import ConfigError
    from brandsentry.scoring import ScoreSettings

    bad = ("score.engine=spark", "score.shard_size=0", "score.error_budget=1.5", "score.device=tpu",
           "score.lanes=0", "score.runtime=tensorrt")  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        ScoreSettings.from_config(score_config(world, tmp_path / "out", *bad))
    for name in (
        "score.engine='spark'",
        "score.shard_size=0",
        "score.error_budget=1.5",
        "score.device='tpu'",
        "score.lanes=0",
        "score.runtime='tensorrt'",
    ):
        assert name in str(caught.value)
    with pytest.raises(ConfigError, match="score.listings"):
        ScoreSettings.from_config(load_config([*world.overrides]))


# ---- lanes and runtimes: the same rows whatever the layout ----------------------------------------------------


@pytest.mark.slow
def test_lanes_score_exactly_like_one_process(world, reference, tmp_path):
    """Two scoring processes (chunks handed out, shards written here) give the reference rows bit for bit."""
    out = tmp_path / "lanes"
    summary = score_run(score_config(world, out, "score.shard_size=10", "score.lanes=2"))
    assert summary.listings == 60 and summary.shards == 6 and (out / "_SUCCESS").is_file()
    assert comparable(read_results(out)).equals(comparable(reference[2]))
    vectors, expected = read_vectors(out), read_vectors(reference[0])
    np.testing.assert_array_equal(vectors, expected)
    # shards cut into several chunks each, chunks finishing out of order: still the same rows
    again = tmp_path / "lanes_chunks"
    score_run(score_config(world, again, "score.shard_size=20", "score.search_batch=7", "score.lanes=2"))
    assert_close_results(read_results(again), reference[2])


@pytest.mark.slow
def test_lanes_resume_after_a_crash_like_one_process(world, reference, tmp_path, monkeypatch):
    out, listings = tmp_path / "crashed_lanes", first_rows(world, 40)
    crash_after_two_shards(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        score_run(score_config(world, out, "score.shard_size=10", "score.lanes=2", listings=listings))
    monkeypatch.undo()
    assert len(list(out.glob("part-*.parquet"))) == 2
    resumed = score_run(score_config(world, out, "score.shard_size=10", "score.lanes=2", listings=listings))
    assert resumed.shards_reused == 2 and resumed.scored_now == 20
    assert comparable(read_results(out)).equals(comparable(reference[2]).head(40))


@pytest.mark.slow
def test_a_lane_that_dies_fails_the_run_and_a_rerun_resumes(world, reference, tmp_path):
    import threading

    psutil = pytest.importorskip("psutil")
    out = tmp_path / "lane_dies"
    failures = []

    def run() -> None:
        try:
            score_run(score_config(world, out, "score.shard_size=10", "score.lanes=2"))
        except Exception as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while thread.is_alive() and time.monotonic() < deadline:
        lanes = [c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())]
        if lanes:
            lanes[0].kill()  # as the kernel's OOM killer would
            break
        time.sleep(0.01)
    thread.join(180)
    assert len(failures) == 1 and isinstance(failures[0], ScoreRunError), failures
    assert "exit code" in str(failures[0]) and not (out / "_SUCCESS").exists()
    score_run(score_config(world, out, "score.shard_size=10", "score.lanes=2"))
    assert comparable(read_results(out)).equals(comparable(reference[2]))


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_exported_runtimes_score_like_pytorch(world, reference, tmp_path, runtime):
    out = tmp_path / runtime
    score_run(score_config(world, out, "score.shard_size=10", f"score.runtime={runtime}"))
    assert_close_results(read_results(out), reference[2])


def test_lane_count_follows_the_settings_and_the_work(world, tmp_path):
    from brandsentry.scoring import ScoreSettings, lane_count

    settings = ScoreSettings.from_config(score_config(world, tmp_path / "out"))
    assert lane_count(settings, chunks=5, rows=10_000) == 1
    auto = ScoreSettings.from_config(
        score_config(world, tmp_path / "out", "score.lanes=auto", "score.device=cpu")
    )
    cpus = len(os.sched_getaffinity(0))
    assert lane_count(auto, chunks=400, rows=100_000) == min(cpus, 4)
    assert lane_count(auto, chunks=1, rows=100_000) == 1  # never more lanes than chunks
    assert lane_count(auto, chunks=4, rows=1000) == 1  # too little work to pay for starting a lane
    assert lane_count(auto, chunks=40, rows=10_000) == min(cpus, 2)
    three = ScoreSettings.from_config(score_config(world, tmp_path / "out", "score.lanes=3"))
    assert lane_count(three, chunks=100, rows=50) == 3


def _documented_columns(section: str) -> dict[str, str]:
    """`name -> second cell` of the table under `## section` in docs/results.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| `?([^`|]+?)`? \|", body, flags=re.MULTILINE)
    return dict(rows)


def test_docs_results_md_names_every_written_column_with_its_type(world, reference):
    out, _, _ = reference
    written = {field.name: str(field.type) for field in pq.read_schema(part_files(out)[0])}
    documented, cues = _documented_columns("Every row"), _documented_columns("Cue columns")
    assert set(cues) == set(CUE_COLUMNS)  # every cue a bundle can write, and no other
    manifest = pd.read_csv(world.listings, dtype=str, nrows=0).columns
    carried = [c for c in manifest if c not in documented]
    assert [n for n in written if n not in cues and n not in carried] == list(documented)  # and in order
    assert {n: written[n] for n in documented} == documented
    assert {written[n] for n in written if n in cues} == {"double"}
    assert {n: written[n] for n in carried} == {n: "double" if n == "price" else "string" for n in carried}
