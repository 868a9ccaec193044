"""xkcdcrawl.politeness, component by component: built with get_crawler(), run in this process.

The gate runs in front of Scrapy's real downloader, whose download handler here is
CountingHandler: it answers after a pause and counts the requests it has at once,
as FaultServer does at the other end of a socket in the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from time import monotonic
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import pytest
from conftest import in_asyncio
from scrapy import Request, Spider
from scrapy.core.engine import ExecutionEngine
from scrapy.http import Response
from scrapy.settings.default_settings import DOWNLOADER_MIDDLEWARES_BASE
from scrapy.utils.asyncio import sleep
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from xkcdcrawl import settings as project_settings
from xkcdcrawl.politeness import BackoffRetryMiddleware, HostGate, Policy, retry_after

if TYPE_CHECKING:
    from scrapy.core.downloader import Downloader
    from scrapy.crawler import Crawler

T = TypeVar("T")

GATE = "xkcdcrawl.politeness.HostGate"
# Our knobs' defaults live in the project's settings module, which get_crawler() does not read.
OURS = {name: value for name, value in vars(project_settings).items() if name.startswith("XKCDCRAWL_")}
TRANSFER = 0.05


class CountingHandler:
    """A download handler: every answer takes TRANSFER seconds; /429/ URLs get a 429 with Retry-After: 1."""

    lazy = False
    built: ClassVar[list[CountingHandler]] = []
    # In flight in every handler of the process together (the workers of a fleet test).
    together: ClassVar[int] = 0
    together_peak: ClassVar[int] = 0

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.asked: list[tuple[float, str]] = []
        self.built.append(self)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls()

    async def download_request(self, request: Request) -> Response:
        self.asked.append((monotonic(), request.url))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        CountingHandler.together += 1
        CountingHandler.together_peak = max(CountingHandler.together_peak, CountingHandler.together)
        try:
            await sleep(TRANSFER)
        finally:
            self.in_flight -= 1
            CountingHandler.together -= 1
        if "/429/" in request.url:
            return Response(request.url, status=429, headers={"Retry-After": "1"}, request=request)
        return Response(request.url, request=request)

    async def close(self) -> None:
        pass


def downloader(gate: bool = True, **settings: Any) -> Downloader:
    """Scrapy's downloader with only the gate for middleware (or none) and CountingHandler for http."""
    crawler = get_crawler(
        settings_dict={
            "DOWNLOAD_HANDLERS": {"http": f"{__name__}.CountingHandler"},
            "DOWNLOADER_MIDDLEWARES_BASE": {},
            "DOWNLOADER_MIDDLEWARES": {GATE: 1000} if gate else {},
            **OURS,
            **settings,
        }
    )
    crawler.spider = Spider.from_crawler(crawler, "politeness")
    crawler.engine = ExecutionEngine(crawler, lambda spider: None)
    return crawler.engine.downloader


def retry_middleware(**settings: Any) -> BackoffRetryMiddleware:
    crawler = get_crawler(settings_dict={**OURS, **settings})
    crawler.spider = Spider.from_crawler(crawler, "politeness")
    return build_from_crawler(BackoffRetryMiddleware, crawler)


def gate_of(downloader: Downloader) -> HostGate:
    [gate] = [mw for mw in downloader.middleware.middlewares if isinstance(mw, HostGate)]
    return gate


async def fetch_all(downloader: Downloader, urls: list[str]) -> list[Response]:
    fetches = [maybe_deferred_to_future(downloader.fetch(Request(url))) for url in urls]
    responses = [response for response in await asyncio.gather(*fetches) if isinstance(response, Response)]
    assert len(responses) == len(urls)
    return responses


# ---------------------------------------------------------------- decisions


def test_retry_after_takes_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after(b"120") == 120.0
    assert retry_after(" 7 ") == 7.0
    assert retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


def test_policy_pauses_gives_up_or_leaves_alone() -> None:
    policy = Policy(retry_after_max=60, backoff=1, backoff_max=10)
    wait = Response("http://h.test/", status=429, headers={"Retry-After": "30"})
    too_long = Response("http://h.test/", status=503, headers={"Retry-After": "3600"})
    assert (policy.pause(wait), policy.gives_up(wait)) == (30.0, None)
    assert (policy.pause(too_long), policy.gives_up(too_long)) == (None, 3600.0)
    for other in (Response("http://h.test/", status=500, headers={"Retry-After": "30"}), Response("http://h.test/")):
        assert (policy.pause(other), policy.gives_up(other)) == (None, None)


def test_backoff_doubles_within_a_quarter_and_is_capped() -> None:
    policy = Policy(retry_after_max=60, backoff=1, backoff_max=10)
    for tries, nominal in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)]:
        assert 0.75 * nominal <= policy.backoff_wait(tries) <= 1.25 * nominal


def test_the_gate_is_the_last_downloader_middleware() -> None:
    """After every middleware that may download a request of its own (the dry run's HEAD), and Scrapy's own."""
    orders: dict[str, int | None] = {**DOWNLOADER_MIDDLEWARES_BASE, **project_settings.DOWNLOADER_MIDDLEWARES}
    gate = orders.pop(GATE)
    assert gate is not None
    assert all(order is None or order < gate for order in orders.values())
    # And the downloader is Scrapy's own.
    assert not hasattr(project_settings, "DOWNLOADER")


# ---------------------------------------------------------------- the gate


@pytest.mark.parametrize("limit", [1, 2, 4])
@in_asyncio
async def test_the_gate_holds_the_limit_exactly(limit: int) -> None:
    gated = downloader(CONCURRENT_REQUESTS_PER_DOMAIN=limit)
    await fetch_all(gated, [f"http://h.test/{i}" for i in range(3 * limit + 2)])
    assert CountingHandler.built[-1].peak == limit
    gate = gate_of(gated)
    # Every place given back, and nothing kept of a host nobody uses.
    assert (gate.holding, gate.hosts) == ({}, {})


@in_asyncio
async def test_without_the_gate_scrapy_overshoots() -> None:
    """Why HostGate exists (Scrapy 2.19, asyncio reactor, no delay): if this fails, Scrapy fixed it."""
    stock = downloader(gate=False, CONCURRENT_REQUESTS_PER_DOMAIN=1)
    await fetch_all(stock, [f"http://h.test/{i}" for i in range(6)])
    assert CountingHandler.built[-1].peak > 1


@in_asyncio
async def test_each_host_has_its_own_places() -> None:
    gated = downloader(CONCURRENT_REQUESTS_PER_DOMAIN=1, DOWNLOAD_SLOTS={"b.test": {"concurrency": 3}})
    await fetch_all(gated, [f"http://{host}/{i}" for i in range(6) for host in ("a.test", "b.test")])
    assert CountingHandler.built[-1].peak == 1 + 3


@in_asyncio
async def test_a_retry_after_pauses_its_host_and_no_other() -> None:
    gated = downloader(CONCURRENT_REQUESTS_PER_DOMAIN=1)
    urls = ["http://a.test/429/x", *(f"http://a.test/{i}" for i in range(3)), *(f"http://b.test/{i}" for i in range(3))]
    responses = await fetch_all(gated, urls)
    assert [r.status for r in responses] == [429] + [200] * 6
    asked = CountingHandler.built[-1].asked
    [(told, _)] = [(at, url) for at, url in asked if "/429/" in url]
    answered = told + TRANSFER
    # Retry-After: 1 from a.test: its three other requests wait that long; b.test's do not.
    a_later = [at - answered for at, url in asked if url.startswith("http://a.test/") and at > told]
    assert len(a_later) == 3
    assert min(a_later) >= 0.95
    assert max(at - answered for at, url in asked if url.startswith("http://b.test/")) < 0.9


@in_asyncio
async def test_a_request_given_up_while_it_waits_holds_no_place() -> None:
    gated = downloader(CONCURRENT_REQUESTS_PER_DOMAIN=1)
    gate = gate_of(gated)
    first = asyncio.ensure_future(maybe_deferred_to_future(gated.fetch(Request("http://h.test/1"))))
    waiting = asyncio.ensure_future(gate.process_request(Request("http://h.test/2")))
    await sleep(0)
    assert gate.hosts["h.test"].users == 2
    waiting.cancel()
    await first
    await fetch_all(gated, ["http://h.test/3"])
    assert (gate.holding, gate.hosts) == ({}, {})


@in_asyncio
async def test_two_workers_hold_the_limit_together(redis_url: str) -> None:
    """Two gates on one Redis, as two workers of a scale-out crawl: the fleet's lease is the gate's last step."""
    fleet: dict[str, Any] = {
        "SCHEDULER": "scrapy_redis.scheduler.Scheduler",
        "REDIS_URL": redis_url,
        "XKCDCRAWL_FLEET_KEY": "politeness-test",
        "CONCURRENT_REQUESTS_PER_DOMAIN": 2,
    }
    workers = [downloader(**fleet) for _ in range(2)]
    CountingHandler.together_peak = 0
    lists = [[f"http://h.test/{n}-{i}" for i in range(6)] for n in range(2)]
    await asyncio.gather(*(fetch_all(worker, urls) for worker, urls in zip(workers, lists, strict=True)))
    assert CountingHandler.together_peak == 2
    for worker in workers:
        gate = gate_of(worker)
        assert gate.fleet is not None
        assert gate.fleet.held == {}
        assert gate.fleet.server.keys("politeness-test:*:leases") == []


# ---------------------------------------------------------------- retries


@in_asyncio
async def test_a_retry_backs_off_unless_its_host_is_paused() -> None:
    retry = retry_middleware(XKCDCRAWL_RETRY_BACKOFF=0.2)
    request = Request("http://h.test/a")
    begun = monotonic()
    again = await retry.process_response(request, Response(request.url, status=503, request=request))
    assert isinstance(again, Request)
    assert monotonic() - begun >= 0.15
    paused = Response(request.url, status=503, headers={"Retry-After": "5"}, request=request)
    begun = monotonic()
    again = await retry.process_response(request, paused)
    # The wait is the gate's: the retry queues for the paused host at once.
    assert isinstance(again, Request)
    assert monotonic() - begun < 0.1


@in_asyncio
async def test_a_retry_after_over_the_maximum_is_given_up(caplog: pytest.LogCaptureFixture) -> None:
    retry = retry_middleware(XKCDCRAWL_RETRY_AFTER_MAX=60)
    request = Request("http://h.test/a")
    response = Response(request.url, status=429, headers={"Retry-After": "3600"}, request=request)
    with caplog.at_level(logging.WARNING):
        assert await retry.process_response(request, response) is response
    assert "asks to wait 3600 s (Retry-After), over XKCDCRAWL_RETRY_AFTER_MAX" in caplog.text
