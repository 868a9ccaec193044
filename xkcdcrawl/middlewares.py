"""Retries that back off, and honour Retry-After for the whole host."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import DownloadConnectionRefusedError
from scrapy.utils.asyncio import sleep
from twisted.internet import error as twisted

from xkcdcrawl.downloader import retry_after

if TYPE_CHECKING:
    from scrapy.http import Request, Response
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


class BackoffRetryMiddleware(RetryMiddleware):
    """RetryMiddleware that waits before each retry, page or file.

    Scrapy retries at once, so a struggling server gets the same load again. Here the
    n-th retry of a request waits XKCDCRAWL_RETRY_BACKOFF * 2**(n-1) seconds (±25%).
    A 429 or 503 with Retry-After has already paused its host (PoliteDownloader): its
    retry waits in the host's queue, unless the wait is over XKCDCRAWL_RETRY_AFTER_MAX.
    """

    def __init__(self, settings: BaseSettings):
        super().__init__(settings)
        self.backoff = settings.getfloat("XKCDCRAWL_RETRY_BACKOFF")
        self.backoff_max = settings.getfloat("XKCDCRAWL_RETRY_BACKOFF_MAX")
        self.retry_after_max = settings.getfloat("XKCDCRAWL_RETRY_AFTER_MAX")

    # Scrapy awaits coroutine middleware methods; the base class's are plain functions.
    async def process_response(  # type: ignore[override]
        self, request: Request, response: Response, spider: Any = None
    ) -> Request | Response:
        wait = retry_after(response.headers.get("Retry-After")) if response.status in (429, 503) else None
        if wait is not None and wait > self.retry_after_max:
            logger.warning("%s asks to wait %.0f s (Retry-After), over XKCDCRAWL_RETRY_AFTER_MAX", request, wait)
            return response
        retry = super().process_response(request, response)
        if retry is not response and wait is None:
            await self._back_off(retry)
        return retry

    async def process_exception(  # type: ignore[override]
        self, request: Request, exception: Exception, spider: Any = None
    ) -> Request | Response | None:
        if _refused_at_start(request, exception):
            return None  # given up: the spider's errback says so in one line
        result = super().process_exception(request, exception)
        if result is not None:
            await self._back_off(result)
        return result

    async def _back_off(self, retry: Request | Response) -> None:
        tries = retry.meta.get("retry_times", 1)
        wait = min(self.backoff * 2 ** (tries - 1), self.backoff_max) * random.uniform(0.75, 1.25)
        if wait > 0:
            await sleep(wait)


def _refused_at_start(request: Request, exception: Exception) -> bool:
    """A start URL (or its robots.txt) whose host refused twice: nothing listens there, stop now."""
    start = request.meta.get("xkcdcrawl_start") or request.meta.get("dont_obey_robotstxt")
    refused = isinstance(exception, DownloadConnectionRefusedError | twisted.ConnectionRefusedError)
    return bool(start and refused and request.meta.get("retry_times", 0) >= 1)
