"""The scoring run folder: the one owner of its layout. The folder itself is a Parquet dataset.

    OUT/
      part-NNNNN.parquet         result rows of shard N: `pandas.read_parquet(OUT)`, `pyarrow.dataset.dataset(OUT)`,
                                 DuckDB `read_parquet('OUT/*.parquet')`, Polars and Spark read OUT as it is
      _embeddings/part-NNNNN.npy the listing embeddings of shard N, row-aligned with its part (NaN on error rows)
      _run.json                  what is scored (manifest digest, rows, model, shard size): a resume refuses others
      _summary.json              counts read back from the written parts (status, decisions, errors, cue failures)
      _SUCCESS                   every shard is written and the run stayed within its error budget
      _verdicts.csv              a (simulated) reviewer's verdicts, `brandsentry feedback simulate`'s default
      _evidence/                 the evidence page: review queue, then flags (written by review)
      .lock                      one writing process at a time

Everything but the parts is `_`- or `.`-prefixed, which dataset readers skip. The scorer writes the folder;
feedback, review, rescans and the portal's checks read it through this module only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from brandsentry.errors import BrandsentryError
from brandsentry.files import TEMP_MARK

PART_GLOB = "part-*.parquet"
EMBEDDINGS_DIR = "_embeddings"
RUN_FILE = "_run.json"
SUMMARY_FILE = "_summary.json"
SUCCESS_FILE = "_SUCCESS"
EVIDENCE_DIR = "_evidence"
EVIDENCE_ITEMS = "items.json"  # in EVIDENCE_DIR: what the evidence page shows, as data (read by the portal)
VERDICTS_FILE = "_verdicts.csv"
LOCK_FILE = ".lock"
# What the layout before the Parquet-dataset folder wrote at the top (a resume refuses such a folder).
LEGACY_NAMES = ("summary.json", "embeddings-*.npy", "evidence", "verdicts.csv")


class ScoringResultsError(BrandsentryError, ValueError):
    """A scoring run directory that is missing, unfinished (no _SUCCESS) or lacks the result columns."""


def part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def part_path(out: Path, number: int) -> Path:
    return Path(out) / part_name(number)


def embeddings_path(out: Path, number: int) -> Path:
    return Path(out) / EMBEDDINGS_DIR / f"part-{number:05d}.npy"


def part_files(out: Path) -> list[Path]:
    return sorted(Path(out).glob(PART_GLOB))


def embedding_files(out: Path) -> list[Path]:
    return sorted((Path(out) / EMBEDDINGS_DIR).glob("part-*.npy"))


def temp_files(out: Path) -> list[Path]:
    """Half-written files a killed run left (top level and embeddings)."""
    out = Path(out)
    return [*out.glob(f".*{TEMP_MARK}*"), *(out / EMBEDDINGS_DIR).glob(f".*{TEMP_MARK}*")]


def legacy_entries(out: Path) -> list[str]:
    """Names of the old layout (results beside embeddings) found at the top of `out`."""
    return sorted(path.name for pattern in LEGACY_NAMES for path in Path(out).glob(pattern))


def clear(out: Path) -> None:
    """Remove what a scoring run writes (and nothing else a user may keep in the folder)."""
    out = Path(out)
    for path in [*part_files(out), *embedding_files(out), *temp_files(out)]:
        path.unlink()
    for name in (RUN_FILE, SUCCESS_FILE, SUMMARY_FILE):
        (out / name).unlink(missing_ok=True)


def read_summary(out: Path) -> dict:
    """The scorer's summary of a run ({} when absent)."""
    path = Path(out) / SUMMARY_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def run_finished(out: Path) -> bool:
    """Every shard written: a successful run, or one that wrote everything and then exceeded its error budget.

    The latter has no _SUCCESS marker, yet it is exactly the kind of day a reviewer has to look at.
    """
    out = Path(out)
    if (out / SUCCESS_FILE).is_file():
        return True
    try:
        return read_summary(out).get("status") == "error_budget_exceeded"
    except (json.JSONDecodeError, AttributeError):
        return False


def read_results(out: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """All result rows of a finished scoring run, in part order.

    An unfinished run is refused: its parts would be a partial day that looks like a whole one.
    """
    out = Path(out)
    if not out.is_dir():
        raise ScoringResultsError(f"scoring run directory {out} does not exist")
    if not run_finished(out):
        legacy = legacy_entries(out)
        hint = f" (it holds {', '.join(legacy)}: written by an older brandsentry)" if legacy else ""
        raise ScoringResultsError(f"scoring run {out} is unfinished (no {SUCCESS_FILE} marker){hint}")
    parts = part_files(out)
    if not parts:
        raise ScoringResultsError(f"scoring run {out} has no {PART_GLOB} files")
    wanted = None if columns is None else list(dict.fromkeys(columns))
    frames = []
    for part in parts:
        frame = pd.read_parquet(part)
        if wanted is not None:
            missing = [c for c in wanted if c not in frame.columns]
            if missing:
                raise ScoringResultsError(f"{part} lacks result column(s) {missing}")
            frame = frame[wanted]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
