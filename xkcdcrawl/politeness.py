"""Politeness: every decision about when a request may go to its host, in one module.

Two downloader middlewares, both deciding through ``Policy`` (the one reader of their settings):

- ``HostGate`` (order 1000, the last before the downloader) lets a request through only when
  its host has room. Per host, keyed as Scrapy's downloader keys its slots
  (``Downloader.get_slot_key()``), it holds
  - a semaphore of the slot's concurrency (``CONCURRENT_REQUESTS_PER_DOMAIN``, or
    ``CONCURRENT_REQUESTS_PER_IP``, or the ``DOWNLOAD_SLOTS`` entry);
  - the host's pause: a 429 or 503 with a ``Retry-After`` up to ``XKCDCRAWL_RETRY_AFTER_MAX``
    sends nothing more to that host for that long;
  - with scrapy-redis's scheduler, the fleet's lease (``xkcdcrawl.fleet``), taken last, after
    the semaphore and the pause, so a lease is held only by a request that goes on the wire.
  A request gives its place (and its lease) back as soon as the downloader returns it, its
  response or its error: the gate is the first middleware to see either.
- ``BackoffRetryMiddleware`` (order 550, in place of Scrapy's RetryMiddleware) waits before each
  retry, and gives up on a ``Retry-After`` longer than ``XKCDCRAWL_RETRY_AFTER_MAX``.

Why a gate: under the asyncio reactor with ``DOWNLOAD_DELAY = 0``, Scrapy 2.19's downloader
overshoots ``CONCURRENT_REQUESTS_PER_DOMAIN`` (a slot counts a request as transferring only once
the task scheduled for it runs, so one pass over its queue sends the whole queue: measured at the
server, 12 requests in flight with a limit of 2, 36 with 16). The gate never lets more requests
into a slot than the slot may transfer, so the slot has no queue to empty and the limit holds as
the server sees it (2, 4 and 16 measured, with and without a delay), through Scrapy's public seam
for per-host control, with no copy of the downloader's private code. It waits on asyncio
primitives, so it needs the asyncio reactor: Scrapy's default, which this project never changes.

``DOWNLOAD_DELAY`` (and AutoThrottle) stay Scrapy's: the slot spaces the requests it is given.
So, with a delay, the requests a slot holds back for it (fewer than the limit) are past the gate
already: a pause that begins meanwhile does not stop them, they still go at the delay's pace;
and with the fleet, the fleet spaces requests by the delay before the slot does, so the slot
holds a leased request back at most for the difference of two jittered delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from time import monotonic
from typing import TYPE_CHECKING, Any, Self

from scrapy import signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import DownloadConnectionRefusedError
from scrapy.utils.asyncio import sleep
from twisted.internet import error as twisted

from xkcdcrawl.fleet import FleetBudget

if TYPE_CHECKING:
    from scrapy.core.downloader import Downloader
    from scrapy.crawler import Crawler
    from scrapy.http import Request, Response
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

RETRY_AFTER_STATUSES = (429, 503)


def retry_after(value: bytes | str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if text.strip().isdigit():
        return float(text.strip())
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Policy:
    """How long a host asked us to wait, whether we do, and how long a retry backs off."""

    retry_after_max: float
    backoff: float
    backoff_max: float

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Self:
        return cls(
            settings.getfloat("XKCDCRAWL_RETRY_AFTER_MAX"),
            settings.getfloat("XKCDCRAWL_RETRY_BACKOFF"),
            settings.getfloat("XKCDCRAWL_RETRY_BACKOFF_MAX"),
        )

    def asked_to_wait(self, response: Response) -> float | None:
        """The Retry-After of a 429 or 503, in seconds; None for any other response."""
        if response.status not in RETRY_AFTER_STATUSES:
            return None
        return retry_after(response.headers.get("Retry-After"))

    def pause(self, response: Response) -> float | None:
        """How long the response's host is paused: its Retry-After, unless that is over the maximum."""
        wait = self.asked_to_wait(response)
        return wait if wait is not None and wait <= self.retry_after_max else None

    def gives_up(self, response: Response) -> float | None:
        """The Retry-After of a response not worth waiting for (over the maximum), else None."""
        wait = self.asked_to_wait(response)
        return wait if wait is not None and wait > self.retry_after_max else None

    def backoff_wait(self, tries: int) -> float:
        """Seconds before the tries-th retry: XKCDCRAWL_RETRY_BACKOFF * 2**(tries-1), capped, ±25%."""
        return min(self.backoff * 2.0 ** (tries - 1), self.backoff_max) * random.uniform(0.75, 1.25)


class _Host:
    """What the gate knows of one host: its free places, who uses them, the line to the fleet, its pause."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.places = asyncio.Semaphore(limit)
        self.line = asyncio.Lock()
        self.users = 0
        self.paused_until = 0.0


class HostGate:
    """Downloader middleware: a request goes on only when its host has a free place and is not paused."""

    def __init__(self, crawler: Crawler, fleet: FleetBudget | None) -> None:
        self.crawler = crawler
        self.policy = Policy.from_settings(crawler.settings)
        self.fleet = fleet
        self.hosts: dict[str, _Host] = {}
        # The requests past the gate: request -> its host's key.
        self.holding: dict[Request, str] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        gate = cls(crawler, FleetBudget.from_crawler(crawler))
        crawler.signals.connect(gate.spider_closed, signal=signals.spider_closed)
        return gate

    @property
    def downloader(self) -> Downloader:
        assert self.crawler.engine is not None
        return self.crawler.engine.downloader

    async def process_request(self, request: Request, spider: Any = None) -> None:
        key = self.downloader.get_slot_key(request)
        host = self._host(key)
        host.users += 1
        try:
            await host.places.acquire()
        except BaseException:
            self._forget(key, host)
            raise
        try:
            await self._wait_for_turn(request, key, host)
        except BaseException:
            host.places.release()
            self._forget(key, host)
            raise
        self.holding[request] = key

    # The first middleware to see what the downloader returns: a pause is set before the place
    # is given back, so the next request to the host finds it. A response that did not come from
    # the host (a middleware's, such as a cached one) pauses nothing.
    def process_response(self, request: Request, response: Response, spider: Any = None) -> Response:
        if request in self.holding and (wait := self.policy.pause(response)) is not None:
            self.pause(request, wait)
        self.release(request)
        return response

    def process_exception(self, request: Request, exception: Exception, spider: Any = None) -> None:
        self.release(request)

    def spider_closed(self) -> None:
        if self.fleet is not None:
            self.fleet.close()

    def pause(self, request: Request, seconds: float) -> None:
        """Send nothing more to the request's host for that long (a Retry-After), from any worker."""
        key = self.holding.get(request) or self.downloader.get_slot_key(request)
        logger.info("Pausing %s for %.1f s (Retry-After)", key, seconds)
        host = self._host(key)
        host.paused_until = max(host.paused_until, monotonic() + seconds)
        if self.fleet is not None:
            self.fleet.pause(key, seconds)

    def release(self, request: Request) -> None:
        """Give the request's place (and its fleet lease) back, once; a request not past the gate has none."""
        key = self.holding.pop(request, None)
        if key is None:
            return
        if self.fleet is not None:
            self.fleet.release(request)
        host = self.hosts[key]
        host.places.release()
        self._forget(key, host)

    # Internals.

    def _host(self, key: str) -> _Host:
        if (host := self.hosts.get(key)) is None:
            host = self.hosts[key] = _Host(self._limit(key))
        return host

    def _limit(self, key: str) -> int:
        # The concurrency Scrapy's downloader gives the slot of that key.
        downloader = self.downloader
        default = downloader.ip_concurrency or downloader.domain_concurrency
        return int(downloader.per_slot_settings.get(key, {}).get("concurrency", default))

    def _forget(self, key: str, host: _Host) -> None:
        # A host nobody uses and that is not paused costs nothing to build again.
        host.users -= 1
        if host.users == 0 and host.paused_until <= monotonic():
            del self.hosts[key]

    async def _wait_for_turn(self, request: Request, key: str, host: _Host) -> None:
        # With the fleet, one request per host asks Redis at a time, the first in the host's line:
        # fewer round trips, and none of them between a granted lease and its request's send.
        async with host.line if self.fleet is not None else contextlib.nullcontext():
            while (wait := self._wait(request, key, host)) > 0:
                await sleep(wait)

    def _wait(self, request: Request, key: str, host: _Host) -> float:
        # 0.0 when the request may go now (holding its lease), else the seconds to wait first.
        if (paused := host.paused_until - monotonic()) > 0:
            return paused
        if self.fleet is None:
            return 0.0
        return self.fleet.acquire(request, key, host.limit, self._delay(key))

    def _delay(self, key: str) -> float:
        # The fleet spaces its requests to a host by the slot's delay (AutoThrottle may change it).
        slot = self.downloader.slots.get(key)
        if slot is not None:
            return slot.download_delay()
        default = self.crawler.settings.getfloat("DOWNLOAD_DELAY")
        return float(self.downloader.per_slot_settings.get(key, {}).get("delay", default))


class BackoffRetryMiddleware(RetryMiddleware):
    """RetryMiddleware that waits before each retry, page or file.

    Scrapy retries at once, so a struggling server gets the same load again. Here the
    n-th retry of a request waits ``Policy.backoff_wait(n)``. A 429 or 503 with Retry-After
    has already paused its host (HostGate): its retry waits at the gate, unless the wait
    is over XKCDCRAWL_RETRY_AFTER_MAX, and then the response is given up on.
    """

    def __init__(self, settings: BaseSettings):
        super().__init__(settings)
        self.policy = Policy.from_settings(settings)

    # Scrapy awaits coroutine middleware methods; the base class's are plain functions.
    async def process_response(  # type: ignore[override]
        self, request: Request, response: Response, spider: Any = None
    ) -> Request | Response:
        if (too_long := self.policy.gives_up(response)) is not None:
            logger.warning("%s asks to wait %.0f s (Retry-After), over XKCDCRAWL_RETRY_AFTER_MAX", request, too_long)
            return response
        retry = super().process_response(request, response)
        if retry is not response and self.policy.pause(response) is None:
            await self._back_off(retry)
        return retry

    async def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception, spider: Any = None
    ) -> Request | Response | None:
        if _refused_at_start(request, exception):
            # Given up: the spider's errback says so in one line.
            return None
        result = super().process_exception(request, exception)
        if result is not None:
            await self._back_off(result)
        return result

    async def _back_off(self, retry: Request | Response) -> None:
        wait = self.policy.backoff_wait(retry.meta.get("retry_times", 1))
        if wait > 0:
            await sleep(wait)


def _refused_at_start(request: Request, exception: Exception) -> bool:
    """A start URL (or its robots.txt) whose host refused twice: nothing listens there, stop now."""
    start = request.meta.get("xkcdcrawl_start") or request.meta.get("dont_obey_robotstxt")
    refused = isinstance(exception, DownloadConnectionRefusedError | twisted.ConnectionRefusedError)
    return bool(start and refused and request.meta.get("retry_times", 0) >= 1)
