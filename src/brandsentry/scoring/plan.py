"""What a scoring run is (its identity) and how it is cut: shards of the manifest, chunks of shards.

A shard is the unit of atomic writes and of resumption; a chunk (up to `search_batch` rows, never across a
shard) is the unit of FAISS search, cues and classifier; model batches never straddle a chunk. So a
shard's rows depend on its own rows only, whatever engine or number of lanes scored it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from brandsentry.errors import BrandsentryError


class ScoreRunError(BrandsentryError):
    """The output folder holds another run (other manifest, model or shard size), shards went missing,
    or a scoring lane or actor failed mid-run."""


@dataclass(frozen=True)
class RunIdentity:
    """What makes two runs the same run: resuming is allowed only when all of it matches."""

    manifest_sha256: str
    rows: int
    model_version: str
    shard_size: int

    def differences(self, other: dict) -> list[str]:
        return [
            f"{key} {other.get(key)!r} -> {value!r}"
            for key, value in asdict(self).items()
            if other.get(key) != value
        ]


@dataclass(frozen=True)
class Shard:
    """Manifest rows [start, stop) of shard `number`."""

    number: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def plan_shards(rows: int, shard_size: int) -> list[Shard]:
    return [
        Shard(i, start, min(start + shard_size, rows)) for i, start in enumerate(range(0, rows, shard_size))
    ]


def cut(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) in consecutive pieces of `size` rows (the last one shorter)."""
    return [(a, min(a + size, stop)) for a in range(start, stop, size)]


def scoring_chunks(shards: Sequence[Shard], search_batch: int) -> list[tuple[int, int, int]]:
    """(shard, start, stop) of every scoring chunk: `search_batch` rows, never across a shard."""
    return [(shard.number, a, b) for shard in shards for a, b in cut(shard.start, shard.stop, search_batch)]
