"""File writes that survive a crash halfway (temp file, fsync, rename, fsync of the folder) and content digests.

Every stage that writes something a later run relies on (index, catalog files, results, bundles) goes through
`atomic_write`: a reader sees the old file or the new one, never half of one. Folders built in several steps
(an index version, an evidence page) are staged beside their final name and swapped in by `swap_in`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_MARK = ".tmp-"
STAGING_PREFIX = ".tmp-"  # staged folders: `.tmp-NAME-XXXXXXXX`, beside the folder they become


def temp_path(path: Path) -> Path:
    """The hidden sibling a write goes through (`.NAME.tmp-PID-TID`): readers skip it, a resume removes it.

    Named by process and thread, so concurrent writers of the same file never share (and truncate) one temp.
    """
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{threading.get_native_id()}")


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_synced(temp: Path, write: Callable[[BinaryIO], object], mode: int | None) -> None:
    """Write `temp` through `write(handle)` and fsync it; `mode` (exact, umask ignored) or the umask's default."""
    if mode is None:
        handle = temp.open("wb")
    else:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(descriptor, mode)  # before any byte is written; also fixes a stale temp's mode
        handle = os.fdopen(descriptor, "wb")
    with handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write(path: Path, write: Callable[[BinaryIO], object], *, mode: int | None = None) -> None:
    """Write through `write(handle)` to a temp file, fsync, rename over `path`, fsync the folder.

    `mode` sets the file's permissions exactly (e.g. 0o644 for files other users read whatever the umask).
    """
    path = Path(path)
    temp = temp_path(path)
    try:
        _write_synced(temp, write, mode)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> None:
    atomic_write(path, lambda handle: handle.write(data), mode=mode)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_create(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Publish `data` at `path` only if nothing is there yet: a hard link never replaces, so of racing
    creators the first wins and every one of them then reads the same file.
    """
    path = Path(path)
    temp = temp_path(path)
    try:
        _write_synced(temp, lambda handle: handle.write(data), mode)
        try:
            os.link(temp, path)
        except FileExistsError:
            return
    finally:
        temp.unlink(missing_ok=True)
    fsync_directory(path.parent)


def _sync_tree(folder: Path) -> None:
    for parent, _, names in os.walk(folder):
        for name in names:
            with open(Path(parent) / name, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_directory(Path(parent))


def publish_once(staging: Path, final: Path) -> bool:
    """Make the finished folder `staging` become `final` unless another writer published `final` first
    (then `staging` is removed and theirs is kept): for caches whose content is the same whoever writes it."""
    staging, final = Path(staging), Path(final)
    _sync_tree(staging)
    try:
        staging.rename(final)
    except OSError:  # a non-empty `final` exists: someone else's copy of the same content
        shutil.rmtree(staging, ignore_errors=True)
        return False
    fsync_directory(final.parent)
    return True


def swap_in(staging: Path, final: Path) -> Path:
    """Make the finished folder `staging` (a sibling of `final`) become `final`, replacing any old one.

    Everything under `staging` is fsynced first, then renamed into place and the parent fsynced. A folder
    cannot be renamed over a non-empty one, so an old `final` is moved aside first and removed last:
    between those two renames `final` is briefly absent, never half-written.
    """
    staging, final = Path(staging), Path(final)
    _sync_tree(staging)
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{final.name}-old-", dir=final.parent))
        final.rename(old / final.name)
        staging.rename(final)
        fsync_directory(final.parent)
        shutil.rmtree(old)
    else:
        staging.rename(final)
        fsync_directory(final.parent)
    return final


@contextmanager
def atomic_folder(final: Path, mode: int | None = None) -> Iterator[Path]:
    """A staging folder to fill (`.tmp-NAME-XXXXXXXX` beside `final`), swapped in as `final` when the block
    ends normally and removed when it raises; a killed process leaves the staging folder for its owner to
    collect by `STAGING_PREFIX`. `mode`: the folder's permissions once in place (mkdtemp makes it private).
    """
    final = Path(final)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{final.name}-", dir=final.parent))
    try:
        yield staging
        if mode is not None:
            staging.chmod(mode)
        swap_in(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
