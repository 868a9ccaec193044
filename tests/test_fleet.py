"""The fleet's per-host budget (xkcdcrawl.fleet): CONCURRENT_REQUESTS_PER_DOMAIN for all workers together.

Measured at the server (FaultServer counts the requests it has in flight), against a real
redis-server: 3 workers with a limit of 4 never put more than 4 requests at once on the host and
do reach 4; a worker killed mid-crawl leaves no lease beyond its expiry.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
import redis
from scrapy import Request
from servers.faultserver import FaultServer, file_body

from xkcdcrawl.fleet import FleetBudget

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent.parent
WORKERS = 3
LIMIT = 4
FILES = 12  # per worker
DELAY = 0.5  # seconds each file takes at the server


@pytest.fixture
def server(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.flushall()
    client.close()


def names(worker: int) -> list[str]:
    return [f"w{worker}-{i}.bin" for i in range(FILES)]


def start_worker(n: int, site: FaultServer, settings: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    """A worker of one scale-out crawl, fetching its own part of the list (README: `urls` is split by hand)."""
    urls = [site.url_for(f"/slow/{name}?delay={DELAY}") for name in names(n)]
    return spawn(urls, settings, work / f"worker-{n}.log")


def spawn(urls: list[str], settings: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    args = [arg for name, value in settings.items() for arg in ("-s", f"{name}={value}")]
    cmd = [sys.executable, "-m", "scrapy", "crawl", "urls", "-a", f"urls={','.join(urls)}", *args]
    with log.open("wb") as err:
        return subprocess.Popen(
            cmd, cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip


def fleet_settings(redis_url: str, store: Path, per_host: int, budget: bool) -> dict[str, str]:
    return {
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "DUPEFILTER_CLASS": "xkcdcrawl.redisqueue.ReliableDupeFilter",
        "REDIS_URL": redis_url,
        "SCHEDULER_QUEUE_KEY": "%(spider)s:fleet:requests",
        "SCHEDULER_DUPEFILTER_KEY": "%(spider)s:fleet:dupefilter",
        "CONCURRENT_REQUESTS_PER_DOMAIN": str(per_host),
        "XKCDCRAWL_FLEET_BUDGET": str(budget),
        "XKCDCRAWL_FLEET_LEASE": "3",
        "XKCDCRAWL_PROGRESS_INTERVAL": "0",
        "FILES_STORE": str(store),
    }


def kill_stragglers(workers: list[subprocess.Popen[bytes]]) -> None:
    """The workers still running once a test is over (it failed): killed, not left behind."""
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def run_fleet(site: FaultServer, settings: dict[str, str], work: Path) -> float:
    """Run the workers to the end; the wall time from the first start to the last exit."""
    begun = time.monotonic()
    workers = [start_worker(n, site, settings, work) for n in range(WORKERS)]
    try:
        codes = [worker.wait(120) for worker in workers]
    finally:
        kill_stragglers(workers)
    logs = "\n".join((work / f"worker-{n}.log").read_text()[-2000:] for n in range(WORKERS))
    assert codes == [0] * WORKERS, logs
    return time.monotonic() - begun


def busy(site: FaultServer) -> float:
    """Seconds from the first file asked to the last one answered, as the server saw it."""
    asked = [at for at, _, target in site.log if target.startswith("/slow/")]
    return max(asked) + DELAY - min(asked)


def stored(store: Path) -> dict[str, bytes]:
    """The files under the store's one host folder (127.0.0.1_PORT)."""
    [folder] = [p for p in store.iterdir() if p.name.startswith("127.0.0.1")]
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_the_limit_holds_for_the_fleet_and_uses_all_of_it(redis_url: str, server: redis.Redis, tmp_path: Path) -> None:
    every = {name: file_body(name) for n in range(WORKERS) for name in names(n)}
    with FaultServer() as site:
        fleet = run_fleet(site, fleet_settings(redis_url, tmp_path / "fleet", LIMIT, budget=True), tmp_path)
        assert site.max_in_flight == LIMIT
        assert sum(site.hits.values()) == WORKERS * FILES + WORKERS  # each file once, robots.txt per worker
        fleet_busy = busy(site)
        site.reset_counters()
        # The same crawl with the budget split by hand: 4 // 3 = 1 request at once per worker.
        split = run_fleet(site, fleet_settings(redis_url, tmp_path / "split", LIMIT // WORKERS, budget=False), tmp_path)
        assert site.max_in_flight <= WORKERS * (LIMIT // WORKERS)
        split_busy = busy(site)
        site.reset_counters()
        # And without the budget, the limit holds per worker only.
        run_fleet(site, fleet_settings(redis_url, tmp_path / "per-worker", LIMIT, budget=False), tmp_path)
        assert site.max_in_flight > LIMIT
    assert stored(tmp_path / "fleet") == every
    assert stored(tmp_path / "split") == every
    print(f"\n{WORKERS} workers, {WORKERS * FILES} files of {DELAY} s: fleet budget {LIMIT}: {fleet:.2f} s"
          f" ({fleet_busy:.2f} s at the server), split by hand {LIMIT // WORKERS} each: {split:.2f} s"
          f" ({split_busy:.2f} s at the server)")  # fmt: skip
    # At the server, where start-up on a busy machine does not count: 4 at once beats 3 at once.
    assert fleet_busy < split_busy
    assert server.keys("xkcdcrawl:hosts:*:leases") == []  # every lease given back at the end


def test_a_killed_workers_leases_expire(redis_url: str, server: redis.Redis, tmp_path: Path) -> None:
    settings = fleet_settings(redis_url, tmp_path / "store", LIMIT, budget=True)
    leases = "xkcdcrawl:hosts:127.0.0.1:leases"
    with FaultServer() as site:
        workers = [start_worker(n, site, settings, tmp_path) for n in range(WORKERS)]
        try:
            victim = workers[0]
            mine = f":{victim.pid}:"
            deadline = time.monotonic() + 60
            while not any(mine in member.decode() for member in cast("list[bytes]", server.zrange(leases, 0, -1))):
                assert time.monotonic() < deadline, "the worker never took a lease"
                time.sleep(0.02)
            victim.kill()
            victim.wait()
            seconds, micros = server.time()
            killed_ms = seconds * 1000 + micros // 1000
            # Not renewed after its death: every lease it left ends within XKCDCRAWL_FLEET_LEASE.
            left = [
                (m.decode(), s)
                for m, s in cast("list[tuple[bytes, float]]", server.zrange(leases, 0, -1, withscores=True))
                if mine in m.decode()
            ]
            assert all(expiry <= killed_ms + 3000 for _, expiry in left), left
            codes = [worker.wait(120) for worker in workers[1:]]
        finally:
            kill_stragglers(workers)
        assert site.max_in_flight <= LIMIT
    assert codes == [0] * (WORKERS - 1)
    assert {name for n in (1, 2) for name in names(n)} <= set(stored(tmp_path / "store"))
    # The key goes with its last lease: nothing of the dead worker stays in Redis.
    deadline = time.monotonic() + 10
    while server.exists(leases):
        assert time.monotonic() < deadline, server.zrange(leases, 0, -1, withscores=True)
        time.sleep(0.1)


def test_leases_of_long_transfers_are_renewed(redis_url: str, server: redis.Redis, tmp_path: Path) -> None:
    """Transfers of 2.5 s under 1 s leases: were a lease not renewed, a second request would start."""
    settings = {**fleet_settings(redis_url, tmp_path / "store", 1, budget=True), "XKCDCRAWL_FLEET_LEASE": "1"}
    with FaultServer() as site:
        settings["ROBOTSTXT_OBEY"] = "False"
        urls = [[site.url_for(f"/slow/long-{n}.bin?delay=2.5")] for n in range(2)]
        workers = [spawn(urls[n], settings, tmp_path / f"worker-{n}.log") for n in range(2)]
        try:
            assert [worker.wait(60) for worker in workers] == [0, 0]
        finally:
            kill_stragglers(workers)
        assert site.max_in_flight == 1
        assert sum(site.hits.values()) == 2


def test_a_retry_after_pauses_the_host_for_every_worker(redis_url: str, server: redis.Redis, tmp_path: Path) -> None:
    """One worker's 429 + Retry-After: 2 stops the other worker's requests to the host too."""
    settings = {**fleet_settings(redis_url, tmp_path / "store", 2, budget=True), "ROBOTSTXT_OBEY": "False"}
    with FaultServer() as site:
        busy = spawn([site.url_for(f"/slow/b{i}.bin?delay=0.3") for i in range(30)], settings, tmp_path / "busy.log")
        workers = [busy]
        try:
            deadline = time.monotonic() + 60
            while not site.hits:
                assert time.monotonic() < deadline, (tmp_path / "busy.log").read_text()
                time.sleep(0.02)
            workers.append(spawn([site.url_for("/429/a.bin?retry_after=2&times=1")], settings, tmp_path / "429.log"))
            assert [worker.wait(60) for worker in workers] == [0, 0]
        finally:
            kill_stragglers(workers)
        [(told, _, _)] = [entry for entry in site.log if entry[2].startswith("/429/")][:1]
        later = [at - told for at, _, target in site.log if at > told]
        just_before = [at for at, _, target in site.log if target.startswith("/slow/") and told - 0.5 < at < told]
        assert site.hits["/429/a.bin"] == 2  # the 429, then the file
    # Requests the busy worker had sent before the pause reached Redis are a few ms after; then 2 s of nothing.
    assert not [gap for gap in later if 0.1 < gap < 1.9], later
    # And it was busy right before and after: without the fleet's pause its requests fill that gap.
    assert just_before
    assert max(later) >= 1.9


def test_download_delay_holds_for_the_fleet(redis_url: str, server: redis.Redis, tmp_path: Path) -> None:
    """DOWNLOAD_DELAY = 0.4 with 2 workers: the host sees one request per 0.4 s, not two."""
    settings = {
        **fleet_settings(redis_url, tmp_path / "store", LIMIT, budget=True),
        "ROBOTSTXT_OBEY": "False", "DOWNLOAD_DELAY": "0.4", "DOWNLOAD_DELAY_JITTER": "0",
    }  # fmt: skip
    with FaultServer() as site:
        workers = [spawn([site.url_for(f"/ok/d{n}-{i}.bin") for i in range(8)], settings, tmp_path / f"{n}.log")
                   for n in range(2)]  # fmt: skip
        try:
            assert [worker.wait(60) for worker in workers] == [0, 0]
        finally:
            kill_stragglers(workers)
        asked = sorted(at for at, _, _ in site.log)
    assert len(asked) == 16
    gaps = sorted(later - earlier for earlier, later in itertools.pairwise(asked))
    # Each worker waits its turn in Redis; the server sees the requests a little later, each late
    # by however long its worker took to send it (a loaded machine): so not every gap, but the
    # fleet's pace. Per worker, the 16 requests would take 7 delays, not 15.
    assert asked[-1] - asked[0] > 15 * 0.4 * 0.95, gaps
    assert gaps[len(gaps) // 4] > 0.35, gaps


# ---------------------------------------------------------------- the scripts


def test_leases_pauses_and_delays(server: redis.Redis) -> None:
    one, two = (FleetBudget(server, "t", lease=5, poll=0.05) for _ in range(2))
    requests = [Request(f"http://h.test/{i}") for i in range(4)]
    assert one.acquire(requests[0], "h.test", limit=2, delay=0) == 0
    assert two.acquire(requests[1], "h.test", limit=2, delay=0) == 0
    assert two.acquire(requests[2], "h.test", limit=2, delay=0) == 0.05  # spent: ask again after a poll
    one.release(requests[0])
    assert two.acquire(requests[2], "h.test", limit=2, delay=0) == 0
    assert server.zcard("t:h.test:leases") == 2
    one.pause("h.test", 30)
    assert two.acquire(Request("http://other.test/"), "other.test", limit=2, delay=0) == 0  # other hosts go on
    assert 29 < one.acquire(requests[3], "h.test", limit=9, delay=0) <= 30
    server.delete("t:h.test:not_before")
    two.close()
    assert one.acquire(requests[3], "h.test", limit=9, delay=10) == 0
    assert 9 < two.acquire(requests[1], "h.test", limit=9, delay=10) <= 10  # the fleet's DOWNLOAD_DELAY
