"""notebooks/explore_scoring_run.ipynb runs top to bottom on a scoring run with its evidence page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient
from PIL import Image

from brandsentry.config import Workspace
from brandsentry.ledger import record_scoring_run
from brandsentry.review import ReviewSettings
from brandsentry.review.evidence import ImageSources, build_evidence_page
from brandsentry.run_folder import read_results as read_scoring_results
from brandsentry.settings import default_settings
from fake_runs import make_results, write_run

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_scoring_run.ipynb"


def _outputs(notebook) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.extend(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(texts)


@pytest.mark.slow
def test_notebook_explores_a_scoring_run(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path / "ws").ensure()
    image = tmp_path / "listing.jpg"
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(image)
    run = write_run(tmp_path / "run", make_results(n=40, seed=3, image_paths=[str(image)] * 40))
    results = read_scoring_results(run)
    record_scoring_run(workspace, run)
    settings = default_settings(ReviewSettings, "review")
    page = build_evidence_page(
        results,
        run,
        replace(settings, evidence=replace(settings.evidence, queue={"review": 2, "flag": 1})),
        references=pd.DataFrame(
            columns=["brand", "product", "view", "stored_path"], index=pd.Index([], name="id")
        ),
        wordmarks={},
        sources=ImageSources(
            load_listing=lambda path: np.asarray(Image.open(path).convert("RGB")),
            load_reference=lambda ref_id: np.zeros((10, 10, 3), np.uint8),
            logo_template_side=400,
        ),
    )
    assert len(page.items) == 3

    monkeypatch.setenv("BRANDSENTRY_RUN_DIR", str(run))
    monkeypatch.setenv("BRANDSENTRY_WORKSPACE", str(workspace.root))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    text = _outputs(notebook)
    assert "40 listings, model ['1']" in text
    assert "3 listing(s) on the evidence page" in text
    assert "all counterfeits" in text  # the labelled manifest's truth table
    assert "0 reviewed listing(s)" in text
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/jpeg" in o.get("data", {})]
    assert images, "the top listing's evidence image is shown"


def test_the_committed_notebook_is_executed_top_to_bottom_without_errors():
    """It is committed with the outputs of a run on the demo's day 2, so that GitHub shows what it gives."""
    code = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = [o for c in code for o in c.outputs]
    assert all(c.outputs for c in code) and not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.get("name") == "stderr"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the score histogram is shown"
