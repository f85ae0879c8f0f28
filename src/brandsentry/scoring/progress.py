"""How far a scoring run is: a bar on a terminal, plain log lines in a scheduler's log."""

from __future__ import annotations

import logging
import math
import sys
import time

from brandsentry.scoring.settings import ScoreSettings

log = logging.getLogger(__name__)


class Progress:
    """A bar with images/s and ETA on a terminal; a plain log line every `log_every_s` seconds otherwise."""

    def __init__(self, total: int, done: int, settings: ScoreSettings):
        mode = settings.progress
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.total, self.done = mode, total, done
        self.every = settings.log_every_s
        self.started = self.last_log = time.perf_counter()
        self.scored = 0
        self.logged_at_done = done  # what the last log line reported (a final line only when it is stale)
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="img", desc="score", smoothing=0.1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and self.scored and self.done != self.logged_at_done:
            self._log()

    def advance(self, rows: int) -> None:
        self.done += rows
        self.scored += rows
        if self.bar is not None:
            self.bar.update(rows)
        elif self.mode == "log" and time.perf_counter() - self.last_log >= self.every:
            self._log()

    def _log(self) -> None:
        now = time.perf_counter()
        self.last_log, self.logged_at_done = now, self.done
        rate = self.scored / max(now - self.started, 1e-9)
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = time.strftime("%H:%M:%S", time.gmtime(remaining)) if math.isfinite(remaining) else "?"
        log.info(
            "scored %d/%d listings (%.1f%%), %.1f images/s, ETA %s",
            self.done, self.total, 100.0 * self.done / max(self.total, 1), rate, eta,
        )  # fmt: skip
