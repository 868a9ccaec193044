"""One crawl per store: a lock in the bookkeeping folder, held from spider_opened to spider_closed.

Each running crawl has a record, ``FILES_STORE/.xkcdcrawl/crawls/<host>-<pid>.json`` (pid, host, spider,
start time, heartbeat, crawl key), and holds an flock on it for its whole run. The kernel drops
that flock when the process ends, however it ends (SIGKILL, out of memory, a cancelled scrapyd job),
so a record whose flock can be taken belongs to a dead crawl and is taken over. Records from other
hosts (a store on a shared file system) are judged by their heartbeat instead. A short flock on
``.xkcdcrawl/crawls.lock`` makes "look at the records, then add ours" one step.

A crawl may run when every live record has its crawl key. Workers of one scale-out crawl (the same
Redis and SCHEDULER_QUEUE_KEY) share a key, so they share the store on purpose; any other crawl has
a key of its own (its host and pid). XKCDCRAWL_STORE_LOCK chooses what a crawl that finds the store
taken does: ``refuse`` (one ERROR line, the spider closes with reason ``store_locked`` before any
request, and ``scrapy crawl`` exits with status 2) or ``wait`` until the store is free.
Local stores only: ``s3://`` and other remote stores are not locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.asyncio import create_looping_call, sleep

from xkcdcrawl.archive import local_store
from xkcdcrawl.outcomes import STORE_LOCKED

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from scrapy.crawler import Crawler
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

MODES = ("refuse", "wait")
# The close reason of a refused crawl, which the crawl command turns into exit status 2.


def crawl_key(settings: BaseSettings, spider: str) -> str:
    """Workers of one scale-out crawl share this key; any other crawl gets its own.

    The key names the Redis server (without its password) and the queue key, as scrapy-redis
    names a crawl.
    """
    scheduler = str(settings.get("SCHEDULER") or "")
    if not scheduler.startswith("scrapy_redis."):
        return f"{socket.gethostname()}:{os.getpid()}"
    url = urlsplit(str(settings.get("REDIS_URL") or f"redis://{settings.get('REDIS_HOST', 'localhost')}"))
    queue = str(settings.get("SCHEDULER_QUEUE_KEY") or "%(spider)s:requests") % {"spider": spider}
    return f"redis://{url.hostname}:{url.port or 6379}{url.path or '/0'} {queue}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine runs under that number (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Another user's process: alive.
        return True
    return True


class StoreLock:
    """This crawl's record in ``<store>/.xkcdcrawl/crawls/``, and the flock that keeps it."""

    def __init__(self, store: Path, spider: str, key: str, stale: float) -> None:
        self.store = store
        self.folder = store / ".xkcdcrawl" / "crawls"
        self.path = self.folder / f"{socket.gethostname()}-{os.getpid()}.json"
        self.stale = stale
        self.record: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "spider": spider,
            "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "crawl": key,
        }
        self.fd: int | None = None

    def acquire(self) -> list[dict[str, Any]]:
        """Take the store, or return the records of the live crawls that hold it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._registry():
            others = [record for path in sorted(self.folder.glob("*.json")) if (record := self._live(path))]
            holders = [record for record in others if record.get("crawl") != self.record["crawl"]]
            if holders:
                return holders
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.fd = fd
            self._write()
        return []

    def heartbeat(self) -> None:
        """Say that this crawl still runs (for crawls on other hosts of a shared store)."""
        if self.fd is not None:
            with self._registry():
                self._write()

    def release(self) -> None:
        if self.fd is None:
            return
        with self._registry():
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None

    def _write(self) -> None:
        assert self.fd is not None
        body = json.dumps({**self.record, "heartbeat": time.time()}).encode()
        # In place, not by rename: the flock belongs to this file.
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, body, 0)

    @contextlib.contextmanager
    def _registry(self) -> Iterator[None]:
        fd = os.open(self.store / ".xkcdcrawl" / "crawls.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _live(self, path: Path) -> dict[str, Any] | None:
        """The record at path if its crawl still runs; a dead crawl's record is removed."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            try:
                record: dict[str, Any] = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
            except ValueError:
                record = {}
            reason = self._why_stale(fd, record)
            if reason is None:
                return record
            logger.info(
                "Taking over the lock on store %s from crawl pid %s (spider %s, started %s): %s",
                self.store, record.get("pid", "?"), record.get("spider", "?"), record.get("started", "?"), reason,
            )  # fmt: skip
            path.unlink(missing_ok=True)
            return None
        finally:
            os.close(fd)

    def _why_stale(self, fd: int, record: dict[str, Any]) -> str | None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass
        else:
            return "its process is gone"
        if record.get("host") == socket.gethostname():
            # Held on this host: the kernel says its process lives, unless a child inherited the flock.
            return None if pid_alive(int(record.get("pid", 0))) else "its process is gone"
        age = time.time() - float(record.get("heartbeat", 0))
        return f"no heartbeat for {age:.0f} s" if age > self.stale else None


def describe(store: Path, holders: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"store {store} is in use by crawl pid {r.get('pid', '?')} on {r.get('host', '?')} "
        f"(spider {r.get('spider', '?')}, started {r.get('started', '?')})"
        for r in holders
    )


class StoreLockExtension:
    """Hold the store's lock from spider_opened (before any request) to spider_closed."""

    def __init__(self, crawler: Crawler, store: Path) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.mode = settings.get("XKCDCRAWL_STORE_LOCK")
        self.store = store
        self.heartbeat = settings.getfloat("XKCDCRAWL_STORE_LOCK_HEARTBEAT")
        self.stale = settings.getfloat("XKCDCRAWL_STORE_LOCK_STALE")
        self.poll = settings.getfloat("XKCDCRAWL_STORE_LOCK_POLL")
        self.lock: StoreLock | None = None
        self.ticker: Any = None
        crawler.signals.connect(self.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        store = local_store(crawler)
        if store is None:
            raise NotConfigured("remote stores are not locked: schedule one crawl per store (README)")
        return cls(crawler, store.resolve())

    async def spider_opened(self) -> None:
        assert self.crawler.spider is not None
        if self.mode not in MODES:
            logger.error("XKCDCRAWL_STORE_LOCK must be refuse or wait, not %r", self.mode)
            raise CloseSpider(STORE_LOCKED)
        name = self.crawler.spider.name
        lock = StoreLock(self.store, name, crawl_key(self.crawler.settings, name), self.stale)
        waiting = False
        while holders := lock.acquire():
            if self.mode == "refuse":
                logger.error("Not crawling: %s (XKCDCRAWL_STORE_LOCK=refuse)", describe(self.store, holders))
                raise CloseSpider(STORE_LOCKED)
            if not waiting:
                logger.info("Waiting: %s (XKCDCRAWL_STORE_LOCK=wait)", describe(self.store, holders))
                waiting = True
            await sleep(self.poll)
        self.lock = lock
        self.ticker = create_looping_call(lock.heartbeat)
        self.ticker.start(self.heartbeat, now=False)

    def spider_closed(self) -> None:
        if self.ticker is not None and self.ticker.running:
            self.ticker.stop()
        if self.lock is not None:
            self.lock.release()
