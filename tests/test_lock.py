"""One crawl per store (xkcdcrawl.lock): a second crawl is refused or waits; a killed crawl's lock is taken over."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from scrapy.settings import Settings
from servers.faultserver import FaultServer

from xkcdcrawl.lock import StoreLock, crawl_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import Crawl

PROJECT = Path(__file__).resolve().parent.parent
SLOW = 4.0  # seconds the first crawl's one file takes


@pytest.fixture
def site() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def start_crawl(store: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    """`scrapy crawl urls -a urls=URL` in the background, once it holds the store's lock."""
    cmd = [sys.executable, "-m", "scrapy", "crawl", "urls", "-a", f"urls={url}", "-s", f"FILES_STORE={store}"]
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while not list((store / ".xkcdcrawl" / "crawls").glob("*.json")):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the first crawl never took the lock"
        time.sleep(0.05)
    return proc


@pytest.fixture
def first(site: FaultServer, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_crawl(tmp_path / "store", site.url_for(f"/slow/a.bin?delay={SLOW}"), tmp_path / "first.log")
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def log_lines(stderr: str, level: str, text: str) -> list[str]:
    return [line for line in stderr.splitlines() if f"] {level}: " in line and text in line]


def test_a_second_crawl_on_the_store_is_refused_before_any_request(
    site: FaultServer, first: subprocess.Popen[bytes], crawl: Crawl, tmp_path: Path
) -> None:
    second = crawl("urls", "-a", f"urls={site.url_for('/ok/b.bin')}")
    assert second.returncode == 2, second.stderr
    [line] = log_lines(second.stderr, "ERROR", "Not crawling")
    assert f"store {(tmp_path / 'store').resolve()} is in use by crawl pid {first.pid}" in line
    assert re.search(r"\(spider urls, started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", line), line
    assert "Traceback" not in second.stderr
    # Server-side: the second crawl asked nothing, not even robots.txt.
    assert site.hits["/ok/b.bin"] == 0
    assert site.hits["/robots.txt"] == 1
    assert first.wait(60) == 0
    assert (tmp_path / "store" / site.folder / "a.bin").exists()
    assert not (tmp_path / "store" / site.folder / "b.bin").exists()
    assert list((tmp_path / "store" / ".xkcdcrawl" / "crawls").glob("*.json")) == []  # released at close


def test_wait_mode_starts_when_the_first_crawl_is_done(
    site: FaultServer, first: subprocess.Popen[bytes], crawl: Crawl
) -> None:
    second = crawl("urls", "-a", f"urls={site.url_for('/ok/b.bin')}",
                   "-s", "XKCDCRAWL_STORE_LOCK=wait", "-s", "XKCDCRAWL_STORE_LOCK_POLL=0.2")  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert len(log_lines(second.stderr, "INFO", f"Waiting: store {second.store.resolve()} is in use")) == 1
    assert first.wait(60) == 0
    [slow_asked] = [at for at, _, target in site.log if target.startswith("/slow/")]
    [b_asked] = [at for at, _, target in site.log if target == "/ok/b.bin"]
    assert b_asked >= slow_asked + SLOW  # not before the first crawl's file had been answered
    assert set(second.stored()) == {f"{site.folder}/a.bin", f"{site.folder}/b.bin"}


def test_a_killed_crawls_lock_is_taken_over(site: FaultServer, first: subprocess.Popen[bytes], crawl: Crawl) -> None:
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = crawl("urls", "-a", f"urls={site.url_for('/ok/b.bin')}")
    assert second.returncode == 0, second.stderr
    [line] = log_lines(second.stderr, "INFO", "Taking over the lock")
    assert f"from crawl pid {first.pid} (spider urls, started " in line
    assert line.endswith("its process is gone")
    assert set(second.stored()) == {f"{site.folder}/b.bin"}


# ---------------------------------------------------------------- the lock itself


def test_workers_of_one_scale_out_crawl_share_the_store_and_other_crawls_do_not(tmp_path: Path) -> None:
    def key(queue: str) -> str:
        return crawl_key(Settings({"SCHEDULER": "scrapy_redis.scheduler.Scheduler", "REDIS_URL":
                                   "redis://:secret@10.0.0.5:6379/0", "SCHEDULER_QUEUE_KEY": queue}), "listing")  # fmt: skip

    assert "secret" not in key("%(spider)s:pub:requests")
    assert key("%(spider)s:pub:requests").endswith(" listing:pub:requests")
    one, two = (StoreLock(tmp_path, "listing", key("%(spider)s:pub:requests"), 300) for _ in range(2))
    two.path = two.folder / "otherworker.json"  # a second worker process, as if on another pid
    other = StoreLock(tmp_path, "listing", key("%(spider)s:other:requests"), 300)
    assert one.acquire() == []
    assert two.acquire() == []
    assert [holder["crawl"] for holder in other.acquire()] == [one.record["crawl"], two.record["crawl"]]
    one.release()
    two.release()
    assert other.acquire() == []
    other.release()
    # Without scrapy-redis a crawl is its own process: no other crawl shares its key.
    assert crawl_key(Settings(), "urls").endswith(f":{os.getpid()}")


def test_a_record_from_another_host_is_stale_without_heartbeat(tmp_path: Path) -> None:
    folder = tmp_path / ".xkcdcrawl" / "crawls"
    folder.mkdir(parents=True)
    record = {"pid": 1, "host": "elsewhere", "spider": "xkcd", "started": "2026-01-01T00:00:00Z", "crawl": "x"}
    path = folder / "elsewhere-1.json"
    path.write_text(json.dumps({**record, "heartbeat": time.time() - 100}))
    # The other host's flock, as a shared file system shows it: held.
    with path.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert [r["host"] for r in StoreLock(tmp_path, "xkcd", "mine", stale=300).acquire()] == ["elsewhere"]
        lock = StoreLock(tmp_path, "xkcd", "mine", stale=60)
        assert lock.acquire() == []
        assert not path.exists()
        lock.release()
