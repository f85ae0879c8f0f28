"""File writes that survive a crash halfway (temp file, fsync, rename, fsync of the folder) and content digests.

Every stage that writes something a later run relies on (index, catalog files, results, bundles) goes through
`atomic_write`: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The hidden sibling a write goes through (`.NAME.tmp-PID`): readers skip it, a resume removes it."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through `write(handle)` to a temp file, fsync, rename over `path`, fsync the folder."""
    path = Path(path)
    temp = temp_path(path)
    try:
        with temp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
