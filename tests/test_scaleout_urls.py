"""`urls` scaled out on scrapy-redis: the list is split through the shared queue, each URL fetched once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import PROJECT, urls_arg
from scrapy_redis import get_redis  # type: ignore[import-untyped]
from servers.faultserver import FaultServer, file_body
from servers.redisserver import fleet_settings

from xkcdcrawl.items import FileItem
from xkcdcrawl.scaleout import entry_url

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

pytestmark = pytest.mark.e2e

NAMES = [f"f{i:02d}.bin" for i in range(24)]
WORKERS = 2


@pytest.fixture
def server(redis_url: str) -> Iterator[redis.Redis]:
    client: redis.Redis = get_redis(url=redis_url)
    yield client
    client.flushall()
    client.close()


def start_worker(n: int, urls: str, settings: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    args = [arg for name, value in settings.items() for arg in ("-s", f"{name}={value}")]
    cmd = [sys.executable, "-m", "scrapy", "crawl", "urls", "-a", urls, *args]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    with (work / f"worker-{n}.log").open("wb") as err:
        return subprocess.Popen(
            cmd, cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )


def settings_for(redis_url: str, job: str, store: Path) -> dict[str, str]:
    """The fleet's settings, for a URL list."""
    return {
        **fleet_settings(redis_url, job, store),
        "CONCURRENT_REQUESTS": "2",  # a few entries at a time: the rest stay in Redis for the other worker
        "XKCDCRAWL_WORKER_TTL": "2",
    }


def stored(store: Path) -> dict[str, bytes]:
    return {
        p.relative_to(store).as_posix(): p.read_bytes()
        for p in store.rglob("*")
        if p.is_file() and p.relative_to(store).parts[0] != ".xkcdcrawl"
    }


def run_workers(
    site: FaultServer, tmp_path: Path, settings: dict[str, str], victim: redis.Redis | None = None
) -> list[int]:
    """Two workers on one list; with `victim`, the first is killed while it holds entries."""
    urls = urls_arg(tmp_path, [site.url_for(f"/slow/{name}?delay=0.2") for name in NAMES])
    workers = [start_worker(n, urls, settings, tmp_path) for n in range(WORKERS)]
    try:
        if victim is not None:
            deadline = time.monotonic() + 60
            pattern = f"urls:{settings['SCHEDULER_QUEUE_KEY'].split(':')[1]}:requests:processing:*:{workers[0].pid}:*"
            while not any(victim.hlen(key) for key in victim.keys(pattern)):
                assert time.monotonic() < deadline, (tmp_path / "worker-0.log").read_text()[-3000:]
                time.sleep(0.01)
            workers[0].send_signal(signal.SIGKILL)
        return [worker.wait(timeout=150) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_two_workers_split_a_url_list_and_fetch_each_url_once(
    redis_url: str, server: redis.Redis, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    with FaultServer() as site:
        codes = run_workers(site, tmp_path, settings_for(redis_url, "job1", store))
    logs = [(tmp_path / f"worker-{n}.log").read_text(encoding="utf-8") for n in range(WORKERS)]
    assert codes == [0] * WORKERS, "\n\n".join(log[-3000:] for log in logs)
    assert stored(store) == {f"{site.folder}/{name}": file_body(name) for name in NAMES}
    assert {path: n for path, n in site.hits.items() if path != "/robots.txt"} == {f"/slow/{n}": 1 for n in NAMES}
    # Both took part; each entry went into the shared queue once, and nothing is left in it.
    done = [int(log.split("'file_status_count/downloaded': ")[1].split(",")[0]) for log in logs]
    assert all(done), done
    assert sum(done) == len(NAMES)
    assert server.scard("urls:job1:dupefilter") == len(NAMES)
    assert server.keys("urls:job1:*") == [b"urls:job1:dupefilter"]


def test_a_killed_workers_entries_go_to_the_other(redis_url: str, server: redis.Redis, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with FaultServer() as site:
        _, code = run_workers(site, tmp_path, settings_for(redis_url, "job2", store), victim=server)
    survivor = (tmp_path / "worker-1.log").read_text(encoding="utf-8")
    assert code == 0, survivor[-3000:]
    assert "of dead workers back into the queue urls:job2:requests" in survivor
    assert stored(store) == {f"{site.folder}/{name}": file_body(name) for name in NAMES}


def test_an_entry_is_its_url_and_draw() -> None:
    plain = FileItem(url="http://h.test/a b.png?x=1", folder="h.test", file_urls=[])
    drawn = FileItem(url="http://h.test/r", folder="h.test", draw=2, file_urls=[])
    assert entry_url(plain) == "data:text/plain,http%3A%2F%2Fh.test%2Fa%20b.png%3Fx%3D1"
    assert entry_url(drawn) == "data:text/plain,http%3A%2F%2Fh.test%2Fr%23draw%3D2"
