"""Scrapy's downloader with a per-host concurrency limit that holds, Retry-After pauses, and the fleet's budget."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from time import monotonic
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.core.downloader import Downloader
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import _schedule_coro

from xkcdcrawl.fleet import FleetBudget

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.core.downloader import Slot
    from scrapy.core.downloader.handlers import DownloadHandlers
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)


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


class PoliteDownloader(Downloader):
    """Count a request as transferring when it is scheduled, not when its task starts.

    Scrapy 2.19 only adds a request to ``slot.transferring`` once the task scheduled
    for it runs. With DOWNLOAD_DELAY = 0 the loop below empties the whole queue first,
    so a host saw 7 requests in flight with CONCURRENT_REQUESTS_PER_DOMAIN = 1.

    With scrapy-redis's scheduler, a request also needs a lease from the fleet's budget
    (xkcdcrawl.fleet) to leave its slot's queue: the one place where a request starts
    its transfer. A lease taken earlier (a downloader middleware) would be held while
    the request waits for the local slot, its delay or a pause, and the fleet would put
    fewer requests on the wire than the limit.
    """

    def __init__(self, crawler: Crawler):
        super().__init__(crawler)
        self._paused: dict[Slot, float] = {}  # slot -> monotonic time its host may be asked again
        self._retry_after_max = crawler.settings.getfloat("XKCDCRAWL_RETRY_AFTER_MAX")
        # Sent before the slot takes its next request: a pause set here stops that request too.
        crawler.signals.connect(self._honour_retry_after, signal=signals.response_downloaded)
        self.fleet = FleetBudget.from_crawler(crawler)
        if self.fleet is not None:
            self.handlers = _GiveBackLeases(self.handlers, self.fleet)  # type: ignore[assignment]

    def close(self) -> None:
        super().close()
        if self.fleet is not None:
            self.fleet.close()

    def _honour_retry_after(self, response: Response, request: Request) -> None:
        if response.status not in (429, 503):
            return
        wait = retry_after(response.headers.get("Retry-After"))
        if wait is not None and wait <= self._retry_after_max:
            logger.info("Pausing %s for %.1f s (Retry-After)", self.get_slot_key(request), wait)
            self.pause(request, wait)

    def pause(self, request: Request, seconds: float) -> None:
        """Send nothing more to the request's host for that long (a Retry-After)."""
        key, slot = self._get_slot(request)
        self._paused[slot] = max(self._paused.get(slot, 0.0), monotonic() + seconds)
        if self.fleet is not None:
            self.fleet.pause(key, seconds)
        self._process_queue(slot)

    def _process_queue(self, slot: Slot) -> None:
        if slot.latercall:
            return  # a delayed call will process the queue
        now = monotonic()
        if (paused := self._paused.get(slot, now) - now) > 0:
            slot.latercall = call_later(paused, self._latercall, slot)
            return
        self._paused.pop(slot, None)
        delay = slot.download_delay()
        if delay and (penalty := delay - now + slot.lastseen) > 0:
            slot.latercall = call_later(penalty, self._latercall, slot)
            return
        while slot.queue and slot.free_transfer_slots() > 0:
            if self.fleet is not None and (wait := self._fleet_wait(slot, delay)):
                slot.latercall = call_later(wait, self._latercall, slot)
                return
            slot.lastseen = now
            request, queue_dfd = slot.queue.popleft()
            slot.transferring.add(request)  # the fix; _download() adds it again, harmlessly
            _schedule_coro(self._wait_for_download(slot, request, queue_dfd))
            if delay:  # one request per delay: no burst
                self._process_queue(slot)
                break

    def _fleet_wait(self, slot: Slot, delay: float) -> float:
        assert self.fleet is not None
        request = slot.queue[0][0]
        return self.fleet.acquire(request, request.meta[self.DOWNLOAD_SLOT], slot.concurrency, delay)


class _GiveBackLeases:
    """The download handlers, giving back a request's fleet lease the moment its transfer ends.

    Before Downloader._download() lets the slot take its next request, so a worker's own
    next request finds the lease free.
    """

    def __init__(self, handlers: DownloadHandlers, fleet: FleetBudget) -> None:
        self._handlers = handlers
        self._fleet = fleet

    async def download_request_async(self, request: Request) -> Response:
        try:
            return await self._handlers.download_request_async(request)
        finally:
            self._fleet.release(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handlers, name)
