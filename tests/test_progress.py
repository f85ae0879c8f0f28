"""Progress lines of a scoring run in a scheduler's log: one per interval, and a final one only when stale."""

from __future__ import annotations

import logging
from dataclasses import replace

from brandsentry.scoring.progress import Progress
from brandsentry.scoring.settings import ScoreSettings
from brandsentry.settings import default_settings


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "brandsentry.scoring.progress"]


def test_the_last_advance_is_logged_once(caplog):
    settings = replace(default_settings(ScoreSettings, "score"), progress="log", log_every_s=0.0)
    with (
        caplog.at_level(logging.INFO, logger="brandsentry.scoring.progress"),
        Progress(10, 0, settings) as bar,
    ):
        bar.advance(4)
        bar.advance(6)
    assert [line.split(" listings")[0] for line in lines(caplog)] == ["scored 4/10", "scored 10/10"]


def test_a_run_shorter_than_the_interval_ends_with_one_line(caplog):
    settings = replace(default_settings(ScoreSettings, "score"), progress="log", log_every_s=3600.0)
    with (
        caplog.at_level(logging.INFO, logger="brandsentry.scoring.progress"),
        Progress(10, 2, settings) as bar,
    ):
        bar.advance(8)
    assert [line.split(" listings")[0] for line in lines(caplog)] == ["scored 10/10"]
