"""Scaling out on scrapy-redis: several `scrapy crawl` workers sharing one Redis frontier and dupefilter.

What these tests pin down (scrapy-redis 0.9.1 on Scrapy 2.19):
- our requests (spider-method callbacks, cb_kwargs with a ComicItem) go through the Redis queue intact,
  but only with scrapy-redis's default pickle serializer;
- SCHEDULER_PERSIST must be True: the first worker to finish otherwise deletes the shared frontier;
- two workers on one listing share the work, store exactly the files, and request each page and
  file once; the per-host limit holds for both together (xkcdcrawl.fleet, tested in test_fleet.py).

A worker only waits for work that other workers are still adding with scrapy-redis's RedisMixin
(MAX_IDLE_TIME_BEFORE_CLOSE): the crawls below use xkcdcrawl.scaleout's spiders.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from scrapy import Request
from scrapy.exceptions import ScrapyDeprecationWarning
from scrapy_redis import get_redis  # type: ignore[import-untyped]
from scrapy_redis.dupefilter import RFPDupeFilter  # type: ignore[import-untyped]
from scrapy_redis.queue import PriorityQueue  # type: ignore[import-untyped]
from scrapy_redis.scheduler import Scheduler  # type: ignore[import-untyped]
from servers.faultserver import FaultServer, file_body
from servers.redisserver import fleet_settings

from xkcdcrawl.fingerprint import DrawFingerprinter
from xkcdcrawl.items import ComicItem
from xkcdcrawl.redisqueue import PUSH_ONCE, UNSEEN, ReliableDupeFilter
from xkcdcrawl.spiders import listing, xkcd

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

PROJECT = Path(__file__).resolve().parent.parent
TREE_DIRS = ["", "d0/", "d1/", "d0/d0/", "d0/d1/", "d1/d0/", "d1/d1/"]  # FaultServer's /tree/
TREE_FILES = [f"{folder}f{i}.bin" for folder in TREE_DIRS for i in range(5)]
WORKERS = 2
PER_HOST = 1  # CONCURRENT_REQUESTS_PER_DOMAIN of each worker


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def server(redis_url: str) -> Iterator[redis.Redis]:
    client: redis.Redis = get_redis(url=redis_url)  # as scrapy-redis makes its own
    yield client
    client.flushall()
    client.close()


# ---------------------------------------------------------------- what goes through Redis


def test_requests_and_their_cb_kwargs_survive_the_redis_queue(server: redis.Redis) -> None:
    pages = listing.ListingSpider(url="http://127.0.0.1:9/tree/")
    comics = xkcd.XkcdSpider(start="1", end="2")
    item = ComicItem(num=1, title="Barrel - Part 1", safe_title="Barrel - Part 1", alt="Don't we all.",
                     date="2006-01-01", page_url="http://127.0.0.1:9/1/", image_url="http://127.0.0.1:9/b.jpg")  # fmt: skip
    cases = [
        (pages, Request("http://127.0.0.1:9/tree/d0/", pages.parse_listing, errback=pages.start_failed,
                        cb_kwargs={"root": "http://127.0.0.1:9/tree/", "depth": 1}, priority=-1)),
        (comics, Request(item.page_url, comics.parse_page, errback=comics.page_failed, cb_kwargs={"item": item})),
    ]  # fmt: skip
    for spider, request in cases:
        queue = PriorityQueue(server, spider, "%(spider)s:roundtrip:requests")  # the scheduler's default
        queue.push(request)
        back = queue.pop()
        assert back is not None
        assert (back.url, back.priority, back.dont_filter) == (request.url, request.priority, request.dont_filter)
        assert back.callback == request.callback  # the same spider's method, found again by name
        assert back.errback == request.errback
        assert back.cb_kwargs == request.cb_kwargs
        if "item" in request.cb_kwargs:
            assert type(back.cb_kwargs["item"]) is ComicItem  # a dataclass, pickled by reference
        # SCHEDULER_SERIALIZER=json, the obvious alternative to pickle, cannot: body is bytes, ComicItem no JSON.
        with pytest.raises(TypeError):
            json.dumps(request.to_dict(spider=spider))


def test_without_persist_the_first_worker_to_finish_wipes_the_shared_frontier(server: redis.Redis) -> None:
    spider = listing.ListingSpider(url="http://127.0.0.1:9/tree/")

    def worker(persist: bool) -> Scheduler:
        dupefilter = RFPDupeFilter(server, key="listing:wipe:dupefilter")
        scheduler = Scheduler(server, persist=persist, queue_key="%(spider)s:wipe:requests", dupefilter=dupefilter)
        scheduler.open(spider)
        return scheduler

    page = Request("http://127.0.0.1:9/tree/d0/", spider.parse_listing, cb_kwargs={"root": "/", "depth": 1})
    busy, done = worker(persist=False), worker(persist=False)
    assert busy.enqueue_request(page)
    done.close("finished")  # SCHEDULER_PERSIST=False: flush() on close
    assert not busy.has_pending_requests()  # the busy worker's page is gone...
    assert busy.enqueue_request(page.copy())  # ...and forgotten: it would be fetched again
    server.delete("listing:wipe:requests", "listing:wipe:dupefilter")

    busy = worker(persist=True)
    assert busy.enqueue_request(page)
    # A worker joining a crawl under way: scrapy-redis 0.9.1 says so through the deprecated Spider.log().
    with pytest.warns(ScrapyDeprecationWarning, match=r"Spider\.log\(\) is deprecated"):
        late = worker(persist=True)
    late.close("finished")
    assert busy.has_pending_requests()
    assert not busy.enqueue_request(page.copy())


def test_a_request_the_fleet_has_seen_is_in_a_queue(server: redis.Redis) -> None:
    """ReliableDupeFilter only looks; the push adds the fingerprint and queues in one step (PUSH_ONCE)."""
    dupefilter = ReliableDupeFilter(server, key="listing:once:dupefilter")
    push_once = server.register_script(PUSH_ONCE)
    first, second = Request("http://127.0.0.1:9/tree/d0/"), Request("http://127.0.0.1:9/tree/d0/")
    assert not dupefilter.request_seen(first)
    # The worker dies here, between its look and its push: the request is no one's yet.
    assert not server.exists("listing:once:dupefilter")
    assert not dupefilter.request_seen(second)
    key, fingerprint = second.meta[UNSEEN]
    # Two workers that both looked before either pushed: one of them queues it.
    pushes = [push_once(keys=["listing:once:requests", key], args=[fingerprint, 0, data]) for data in (b"a", b"b")]
    assert pushes == [1, 0]
    assert server.zcard("listing:once:requests") == 1
    assert dupefilter.request_seen(Request("http://127.0.0.1:9/tree/d0/"))
    server.delete("listing:once:requests", "listing:once:dupefilter")


def test_the_redis_dupefilter_ignores_request_fingerprinter_class() -> None:
    """scrapy-redis hashes method, canonical URL and body itself: REQUEST_FINGERPRINTER_CLASS has no say."""
    one, two = (Request("http://127.0.0.1:9/random/8/8", meta={"draw": n}) for n in (1, 2))
    assert DrawFingerprinter().fingerprint(one) != DrawFingerprinter().fingerprint(two)
    redis_dupefilter = RFPDupeFilter(server=None, key="unused")
    assert redis_dupefilter.request_fingerprint(one) == redis_dupefilter.request_fingerprint(two)


# ---------------------------------------------------------------- workers


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    stderr: Path
    feed: Path

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Kill this worker by its own PID if it still runs (a test that failed or timed out)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")

    def items(self) -> list[dict[str, Any]]:
        if not self.feed.exists():
            return []
        return [json.loads(line) for line in self.feed.read_text(encoding="utf-8").splitlines() if line]


def start_worker(n: int, url: str, settings: dict[str, str], work: Path) -> Worker:
    """`scrapy crawl listing -a url=URL` in the project folder, as a scrapyd node would run it."""
    feed, stderr = work / f"items-{n}.jsonl", work / f"worker-{n}.log"
    args = [arg for name, value in settings.items() for arg in ("-s", f"{name}={value}")]
    cmd = [sys.executable, "-m", "scrapy", "crawl", "listing", "-a", f"url={url}", *args, "-O", f"{feed}:jsonlines"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT), str(PROJECT / "tests")])}
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
    return Worker(proc, stderr, feed)


def scale_out_settings(redis_url: str, job: str, store: Path) -> dict[str, str]:
    """The fleet's settings, for a listing."""
    return {
        **fleet_settings(redis_url, job, store),
        "SCHEDULER_PERSIST": "True",  # else the first worker to finish deletes the others' frontier
        # One listing page at a time per worker: the others stay in Redis for the other worker.
        "CONCURRENT_REQUESTS": "1",
        "CONCURRENT_REQUESTS_PER_DOMAIN": str(PER_HOST),
    }


# Scrapy logs warnings: "... [py.warnings] WARNING: /path/module.py:170: ScrapyDeprecationWarning: message"
DEPRECATION = re.compile(r"(?P<where>\S+\.py):\d+: (?P<category>\w*DeprecationWarning): (?P<message>.*)$", re.MULTILINE)


def unexpected_deprecations(log: str) -> list[str]:
    """Deprecation warnings in a worker's log other than scrapy-redis 0.9.1's own, in its scheduler.

    Known: StatsCollector.inc_value(spider=...) on every enqueue/dequeue, and Spider.log() when a
    worker opens while the shared queue holds requests ("Resuming crawl").
    """
    known = ("argument to StatsCollector.inc_value() is deprecated", "Spider.log() is deprecated")
    return [
        found.group(0)
        for found in DEPRECATION.finditer(log)
        if not (
            found["where"].endswith(f"scrapy_redis{os.sep}scheduler.py")
            and any(message in found["message"] for message in known)
        )
    ]


def test_two_workers_share_one_frontier(redis_url: str, server: redis.Redis, tmp_path: Path) -> None:
    store = tmp_path / "store"
    settings = scale_out_settings(redis_url, "run1", store)
    with FaultServer() as site:
        workers = [start_worker(n, site.url_for("/tree/"), settings, tmp_path) for n in range(WORKERS)]
        try:
            codes = [worker.wait(timeout=150) for worker in workers]
        finally:
            for worker in workers:
                worker.stop()
    logs = [worker.log() for worker in workers]
    assert codes == [0] * WORKERS, "\n\n".join(log[-3000:] for log in logs)

    # Together: every file, stored once, byte for byte; every page and file requested once in all.
    stored = {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in store.rglob("*")
        if p.is_file() and p.relative_to(store).parts[0] != ".xkcdcrawl"
    }
    assert stored == {f"{site.folder}/tree/{name}": file_body(name) for name in TREE_FILES}
    wanted = {f"/tree/{path}" for path in TREE_DIRS + TREE_FILES}
    assert {path: n for path, n in site.hits.items() if path != "/robots.txt"} == dict.fromkeys(wanted, 1)
    assert site.hits["/robots.txt"] == WORKERS  # robots.txt is per worker, not shared

    # Each did part of it, and no file was the work of both.
    done = [{item["url"] for item in worker.items()} for worker in workers]
    assert all(done), [len(urls) for urls in done]
    assert sum(len(urls) for urls in done) == len(TREE_FILES)
    assert set().union(*done) == {site.url_for(f"/tree/{name}") for name in TREE_FILES}

    # The per-host limit holds for the fleet, not per worker.
    assert site.max_in_flight == PER_HOST

    # The shared frontier held listing pages only (a worker downloads the files of the pages it
    # parsed itself); the queue empties, the dupefilter stays for whoever cleans up (PERSIST).
    assert not server.exists("listing:run1:requests")
    assert server.scard("listing:run1:dupefilter") == len(TREE_DIRS)
    assert server.keys("listing:run1:*") == [b"listing:run1:dupefilter"]  # no processing entry, no worker left

    for log in logs:
        assert DEPRECATION.search(log), "no deprecation warning found: has the log format changed?"
        assert unexpected_deprecations(log) == []


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_workers_requests_go_back_and_the_mirror_is_complete(
    stop: signal.Signals, redis_url: str, server: redis.Redis, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    settings = {**scale_out_settings(redis_url, "run2", store), "XKCDCRAWL_WORKER_TTL": "2"}
    with FaultServer() as site:
        workers = [start_worker(n, site.url_for("/tree/"), settings, tmp_path) for n in range(WORKERS)]
        try:
            victim, survivor = workers
            deadline = time.monotonic() + 60
            # Kill it while it holds a listing page taken from the queue (its files take 5 x 0.2 s).
            while not (held := server.keys(f"listing:run2:requests:processing:*:{victim.proc.pid}:*")):
                assert time.monotonic() < deadline, victim.log()[-3000:]
                time.sleep(0.01)
            victim.proc.send_signal(stop)
            victim.proc.wait(timeout=60)
            if stop == signal.SIGKILL:
                assert server.hlen(held[0]) >= 1
            code = survivor.wait(timeout=150)
        finally:
            for worker in workers:
                worker.stop()
    assert code == 0, survivor.log()[-3000:]
    if stop == signal.SIGKILL:
        assert re.search(
            r"WARNING: Put \d+ requests of dead workers back into the queue listing:run2:requests", survivor.log()
        )
    else:
        # SIGTERM (scrapyd's cancel.json): Scrapy's clean shutdown finishes what is in flight, and
        # a worker closed before the end hands back whatever it still holds.
        assert "Spider closed (shutdown)" in victim.log()
    stored = {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in store.rglob("*")
        if p.is_file() and p.relative_to(store).parts[0] != ".xkcdcrawl"
    }
    assert stored == {f"{site.folder}/tree/{name}": file_body(name) for name in TREE_FILES}
    assert server.keys("listing:run2:*") == [b"listing:run2:dupefilter"]
