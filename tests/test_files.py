"""files.py: atomic file and folder writes (old content or new, never half, no leftovers) and file digests."""

from __future__ import annotations

import hashlib
import os
import stat
import threading

import pytest

from brandsentry.files import (
    STAGING_PREFIX,
    TEMP_MARK,
    atomic_create,
    atomic_folder,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    file_sha256,
    swap_in,
    temp_path,
)


class Boom(RuntimeError):
    pass


def mode_of(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_replaces_the_file_and_leaves_only_it(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_text(path, "old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temp(tmp_path):
    path = tmp_path / "result.json"
    atomic_write_text(path, "old")

    def half_then_fail(handle):
        handle.write(b"half of the new")
        raise Boom("disk full")

    with pytest.raises(Boom):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_mode_is_exact_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        atomic_write_bytes(tmp_path / "shared", b"x", mode=0o644)
        atomic_write_bytes(tmp_path / "default", b"x")
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "shared") == 0o644
    assert mode_of(tmp_path / "default") == 0o600  # no mode: the umask decides, as for open()


def test_temp_names_differ_per_thread_and_carry_the_mark(tmp_path):
    path = tmp_path / "part-00001.parquet"
    names = [temp_path(path).name]
    worker = threading.Thread(target=lambda: names.append(temp_path(path).name))
    worker.start()
    worker.join()
    assert names[0] != names[1]
    assert all(name.startswith(f".{path.name}{TEMP_MARK}") for name in names)


def test_atomic_create_publishes_once_and_never_replaces(tmp_path):
    path = tmp_path / "secret"
    atomic_create(path, b"first", mode=0o600)
    atomic_create(path, b"second", mode=0o600)
    assert path.read_bytes() == b"first"
    assert mode_of(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_file_sha256_of_a_known_string_and_across_read_blocks(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = os.urandom((1 << 20) + 123)  # more than one 1 MiB block
    path.write_bytes(big)
    assert file_sha256(path) == hashlib.sha256(big).hexdigest()


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "v000001"
    with pytest.raises(Boom), atomic_folder(final) as staging:
        (staging / "index.faiss").write_bytes(b"half")
        raise Boom("killed mid-save")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(final) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(f"{STAGING_PREFIX}v000001-")
        (staging / "sub").mkdir()
        (staging / "sub" / "a.txt").write_text("a")
        (staging / "manifest.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["v000001"]
    assert (final / "sub" / "a.txt").read_text() == "a" and (final / "manifest.json").read_text() == "{}"


def test_a_failed_folder_keeps_the_old_one(tmp_path):
    final = tmp_path / "_evidence"
    final.mkdir()
    (final / "index.html").write_text("old page")
    with pytest.raises(Boom), atomic_folder(final) as staging:
        (staging / "index.html").write_text("half a page")
        raise Boom
    assert (final / "index.html").read_text() == "old page"
    assert [p.name for p in tmp_path.iterdir()] == ["_evidence"]


def test_swap_in_replaces_an_existing_folder_and_removes_the_old_one(tmp_path):
    final = tmp_path / "_evidence"
    final.mkdir()
    (final / "stale.jpg").write_bytes(b"old")
    staging = tmp_path / ".evidence-abc"
    staging.mkdir()
    (staging / "index.html").write_text("new page")
    assert swap_in(staging, final) == final
    assert sorted(p.name for p in final.iterdir()) == ["index.html"]
    assert [p.name for p in tmp_path.iterdir()] == ["_evidence"]


def test_publish_once_keeps_the_first_copy_and_drops_the_later_one(tmp_path):
    from brandsentry.files import publish_once

    first, second, final = tmp_path / ".a", tmp_path / ".b", tmp_path / "cache"
    for folder, text in ((first, "first"), (second, "second")):
        folder.mkdir()
        (folder / "x.txt").write_text(text)
    assert publish_once(first, final) and (final / "x.txt").read_text() == "first"
    assert not publish_once(second, final) and not second.exists()
    assert (final / "x.txt").read_text() == "first"
