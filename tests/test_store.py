"""AtomicFSFilesStore on a real folder: complete files only, checksums remembered, partials cleaned."""

from __future__ import annotations

import hashlib
import os
import time
from io import BytesIO
from typing import TYPE_CHECKING, Any

import pytest_twisted

from xkcdcrawl.stores import STALE_PARTIAL, AtomicFSFilesStore

if TYPE_CHECKING:
    from pathlib import Path

INFO: Any = None  # the store does not use the pipeline's SpiderInfo


@pytest_twisted.ensureDeferred
async def test_persist_then_stat_gives_the_checksum(tmp_path: Path) -> None:
    store = AtomicFSFilesStore(str(tmp_path))
    checksum = await store.persist_file("a/b/file.bin", BytesIO(b"hello"), INFO)
    assert checksum == "5d41402abc4b2a76b9719d911017c592"  # md5 of b"hello"
    assert (tmp_path / "a" / "b" / "file.bin").read_bytes() == b"hello"
    assert list(store.partial.iterdir()) == []
    stat = await store.stat_file("a/b/file.bin", INFO)
    assert stat["checksum"] == checksum
    assert await store.stat_file("missing.bin", INFO) == {}


@pytest_twisted.ensureDeferred
async def test_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    store = AtomicFSFilesStore(str(tmp_path))
    await store.persist_file("f.txt", BytesIO(b"one"), INFO)
    (tmp_path / "f.txt").write_bytes(b"two!")  # another program rewrote it
    assert (await store.stat_file("f.txt", INFO))["checksum"] == hashlib.md5(b"two!").hexdigest()


def test_old_partial_files_are_removed_new_ones_kept(tmp_path: Path) -> None:
    partial = tmp_path / ".xkcdcrawl" / "partial"
    partial.mkdir(parents=True)
    old, new = partial / "old.part", partial / "new.part"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    past = time.time() - STALE_PARTIAL - 10
    os.utime(old, (past, past))
    AtomicFSFilesStore(str(tmp_path))
    assert sorted(p.name for p in partial.iterdir()) == ["new.part"]
