"""AtomicFSFilesStore on a real folder: complete files only, checksums remembered, partials cleaned."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]

from xkcdcrawl.stores import STALE_PARTIAL, AtomicFSFilesStore, IncompleteFileError

INFO: Any = None  # the store does not use the pipeline's SpiderInfo


@pytest_twisted.ensureDeferred
async def test_persist_then_stat_gives_the_checksum(tmp_path: Path) -> None:
    store = AtomicFSFilesStore(str(tmp_path))
    checksum = await store.persist_file("a/b/file.bin", BytesIO(b"hello"), INFO)
    assert checksum == hashlib.sha256(b"hello").hexdigest()
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
    assert (await store.stat_file("f.txt", INFO))["checksum"] == hashlib.sha256(b"two!").hexdigest()


def test_old_temporary_files_are_removed_new_ones_and_resumable_ones_kept(tmp_path: Path) -> None:
    partial = tmp_path / ".xkcdcrawl" / "partial"
    partial.mkdir(parents=True)
    old, new, resumable = partial / "old.tmp", partial / "new.tmp", partial / "0123.part"
    for path in (old, new, resumable):
        path.write_bytes(b"x")
    past = time.time() - STALE_PARTIAL - 10
    os.utime(old, (past, past))
    os.utime(resumable, (past, past))
    AtomicFSFilesStore(str(tmp_path))
    assert sorted(p.name for p in partial.iterdir()) == ["0123.part", "new.tmp"]


def test_a_dead_crawls_temporary_files_are_removed_at_once_a_live_ones_kept(tmp_path: Path) -> None:
    # A crawl killed while it wrote a file leaves <pid>@<host>-<tag>-<n>.tmp: the next run on
    # this machine removes it, however new, unless that process still runs (it may be writing).
    partial = tmp_path / ".xkcdcrawl" / "partial"
    partial.mkdir(parents=True)
    # No process has a number above the kernel's largest.
    ended = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    host = socket.gethostname()
    dead, live = partial / f"{ended}@{host}-ab12-0.tmp", partial / f"{os.getpid()}@{host}-cd34-0.tmp"
    elsewhere = partial / f"{ended}@another-host-ef56-0.tmp"
    for path in (dead, live, elsewhere):
        path.write_bytes(b"x")
    AtomicFSFilesStore(str(tmp_path))
    assert sorted(p.name for p in partial.iterdir()) == sorted([live.name, elsewhere.name])


def test_sweep_removes_what_nobody_resumed(tmp_path: Path) -> None:
    store = AtomicFSFilesStore(str(tmp_path))
    kept, _ = store.partial_for("a/kept.bin")
    gone, gone_state = store.partial_for("a/gone.bin")
    fresh, _ = store.partial_for("a/fresh.bin")
    for path in (kept, gone, gone_state, fresh):
        path.write_bytes(b"x")
    past = time.time() - 10
    for path in (kept, gone, gone_state):
        os.utime(path, (past, past))
    store.sweep(time.time() - 5, keep={kept})
    assert sorted(p.name for p in store.partial.iterdir()) == sorted([kept.name, fresh.name])


@pytest_twisted.ensureDeferred
async def test_finalize_moves_a_whole_file_and_refuses_a_short_one(tmp_path: Path) -> None:
    store = AtomicFSFilesStore(str(tmp_path))
    part, state = store.partial_for("d/f.bin")
    part.write_bytes(b"12345")
    state.write_text("{}")
    with pytest.raises(IncompleteFileError, match="short body: 5 of 6 bytes"):
        await store.finalize(part, "d/f.bin", 6, {}, {})
    assert part.exists()  # kept for the next try
    assert await store.finalize(part, "d/f.bin", 5, {}, {}) == hashlib.sha256(b"12345").hexdigest()
    assert (tmp_path / "d" / "f.bin").read_bytes() == b"12345"
    assert list(store.partial.iterdir()) == []
