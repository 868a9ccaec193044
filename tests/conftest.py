"""Shared fixtures: the local xkcd mirror and a `scrapy crawl` runner; the e2e marker."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from scrapy.utils.defer import deferred_from_coro
from servers.faultserver import FaultServer
from servers.redisserver import redis_server
from servers.xkcdsite import Servers, Site

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

T = TypeVar("T")
PROJECT = Path(__file__).resolve().parent.parent
# Where the store writes a file before it renames it into place (AtomicFSFilesStore.partial).
PARTIAL = Path(".xkcdcrawl", "partial")
# Fixtures that start a server or a `scrapy crawl` subprocess: a test that uses one is e2e.
E2E_FIXTURES = frozenset(
    {"crawl", "xkcd", "server", "site", "redis_url", "hostile", "listing", "first", "egg", "served"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark e2e every test that uses an E2E_FIXTURES fixture (a name given by parametrize is no fixture)."""
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        params = item.callspec.params if hasattr(item, "callspec") else {}
        if E2E_FIXTURES & (set(item.fixturenames) - set(params)):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _fast_tests_start_nothing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test not marked e2e fails if it starts a process or a listening server: the marker stays true."""
    if request.node.get_closest_marker("e2e"):
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{request.node.nodeid} starts a process or a server: mark it e2e")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(socket.socket, "listen", refuse)


@pytest.fixture
def xkcd() -> Iterator[Site]:
    """The xkcd mirror: pages and API on one port, images on another."""
    site = Site()
    servers = Servers(site)
    yield site
    servers.close()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    store: Path
    feed: Path

    def items(self) -> list[dict[str, Any]]:
        if not self.feed.exists():
            return []
        return [json.loads(line) for line in self.feed.read_text(encoding="utf-8").split("\n") if line]

    def stored(self) -> dict[str, bytes]:
        return stored_files(self.store)


def stored_files(store: Path) -> dict[str, bytes]:
    """Every file under the store but the bookkeeping folder, .xkcdcrawl/: {relative path: bytes}.

    Files left in the partial folder are included: a test that finds one has found a bug.
    """
    files: dict[str, bytes] = {}
    for path in store.rglob("*"):
        rel = path.relative_to(store)
        if path.is_file() and (rel.parts[0] != ".xkcdcrawl" or rel.is_relative_to(PARTIAL)):
            files[rel.as_posix()] = path.read_bytes()
    return files


class Crawl(Protocol):
    def __call__(self, *args: str, store: Path | None = None, timeout: float = 120) -> Run: ...


@pytest.fixture
def crawl(tmp_path: Path) -> Crawl:
    """Run `scrapy crawl ARGS` in a subprocess, storing under tmp_path/store."""
    default_store = tmp_path / "store"
    runs = 0

    def run(*args: str, store: Path | None = None, timeout: float = 120) -> Run:
        nonlocal runs
        runs += 1
        store = store or default_store
        feed = tmp_path / f"items-{runs}.jsonl"
        cmd = [sys.executable, "-m", "scrapy", "crawl", *args, "-s", f"FILES_STORE={store}", "-O", f"{feed}:jsonlines"]
        env = {**os.environ, "PYTHONPATH": str(PROJECT)}
        proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr, store, feed)

    return run


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """The fault-injecting server (tests/servers/faultserver.py)."""
    with FaultServer() as srv:
        yield srv


def urls_arg(tmp_path: Path, urls: list[str]) -> str:
    """-a file=... for a URL list written under tmp_path."""
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(u + "\n" for u in urls), encoding="utf-8")
    return f"file={listing}"


def run_crawl(*args: str) -> subprocess.CompletedProcess[str]:
    """`scrapy crawl ARGS` in a subprocess, its settings all in ARGS (the store too)."""
    cmd = [sys.executable, "-m", "scrapy", "crawl", *args]
    return subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A redis-server of the test module's own on 127.0.0.1 (tests/servers/redisserver.py)."""
    with redis_server() as url:
        yield url


def in_asyncio(test: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Any]:
    """An async test run as an asyncio task: pytest-twisted's own runs on Twisted, where asyncio futures cannot be awaited."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> T:
        result: T = await deferred_from_coro(test(*args, **kwargs))
        return result

    return pytest_twisted.ensureDeferred(run)  # type: ignore[no-any-return]
