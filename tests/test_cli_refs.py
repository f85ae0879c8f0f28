"""`brandsentry refs …` end to end through the CLI entry point on a temporary workspace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brandsentry.catalog import Catalog
from brandsentry.cli import main


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )


@pytest.fixture
def folder(tmp_path):
    photo(1).save(tmp_path / "front.jpg")
    photo(2).save(tmp_path / "logo.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "refs.csv").write_text(
        "image_path,brand,product,view\n"
        "front.jpg,Acme,Widget,product\n"
        "logo.png,Acme,Widget,logo\n"
        "front.jpg,Acme,Widget,product\n"
        "broken.jpg,Acme,Widget,product\n"
    )
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_import_list_withdraw(folder, capsys):
    workspace = folder / "ws" / "nested"  # created on demand
    ws = f"workspace={workspace}"
    code, out, _ = run(capsys, "refs", "import", str(folder / "refs.csv"), "--submitted-by", "ops", ws)
    assert code == 1  # one row rejected; the others are kept
    assert out.splitlines()[0] == "4 submitted: 2 accepted, 1 duplicate, 1 rejected"
    assert "accepted   front.jpg (row 2) -> reference 1" in out
    assert "accepted   logo.png (row 3) -> reference 2" in out
    assert "duplicate  front.jpg (row 4) -> already held as reference 1" in out
    assert "rejected   broken.jpg (row 5): unsupported_format" in out
    assert (workspace / "catalog.sqlite").is_file()

    code, out, _ = run(capsys, "refs", "list", ws)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["id", "status", "brand", "product", "view"]
    assert lines[1].split()[:5] == ["1", "approved", "Acme", "Widget", "product"]
    assert lines[2].split()[:5] == ["2", "approved", "Acme", "Widget", "logo"]
    assert lines[-1] == "2 reference(s): 2 approved"

    code, out, _ = run(capsys, "refs", "withdraw", "2", "7", "--reason", "brand request", ws)
    assert code == 1
    assert "withdrawn      2 (Acme / Widget / logo)" in out
    assert "not withdrawn  7: unknown reference id(s) [7]" in out
    assert out.splitlines()[-1] == "1 withdrawn, 1 not withdrawn"

    code, out, _ = run(capsys, "refs", "withdraw", "2", ws)
    assert code == 1 and "cannot go from 'withdrawn' to 'withdrawn'" in out

    code, out, _ = run(capsys, "refs", "list", "--status", "withdrawn", ws)
    assert out.splitlines()[1].split()[:2] == ["2", "withdrawn"]
    assert "brand request" in out and out.splitlines()[-1] == "1 reference(s): 1 withdrawn"

    with Catalog.open(workspace) as catalog:
        assert catalog.get(1).submitted_by == "ops"
        assert catalog.get(2).reason == "brand request"


def test_add_files_pending_by_override_and_exit_zero_when_nothing_rejected(folder, capsys):
    ws = f"workspace={folder / 'ws'}"
    argv = ["refs", "add", "--brand", "Acme", "--product", "Widget", "--view", "logo"]
    code, out, _ = run(capsys, *argv, str(folder / "front.jpg"), ws, "ingest.auto_approve=false")
    assert code == 0 and "1 submitted: 1 accepted" in out
    code, out, _ = run(capsys, *argv, str(folder / "front.jpg"), ws)
    assert code == 0 and "already held as reference 1" in out  # a duplicate is not a failure
    code, out, _ = run(capsys, "refs", "list", "--view", "logo", ws)
    assert out.splitlines()[1].split()[:2] == ["1", "pending"]
    code, out, _ = run(capsys, *argv, "--view", "side", str(folder / "logo.png"), ws)
    assert code == 1 and "unknown_view" in out


def test_manifest_missing_columns_is_a_one_line_error(folder, capsys):
    (folder / "bad.csv").write_text("image_path,brand\nfront.jpg,Acme\n")
    code, out, err = run(capsys, "refs", "import", str(folder / "bad.csv"), f"workspace={folder / 'ws'}")
    assert code == 2 and out == ""
    assert err.strip().startswith("brandsentry refs: ManifestError:")
    assert "lacks column(s) product, view" in err
    code, out, err = run(capsys, "refs", "list", "--status", "gone", f"workspace={folder / 'ws'}")
    assert code == 2 and "unknown status 'gone'" in err


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path):
    """`brandsentry refs list | head`: the closed pipe ends the command without a traceback."""
    command = [str(Path(sys.executable).with_name("brandsentry")), "refs", "list", f"workspace={tmp_path}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the command has printed anything
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
