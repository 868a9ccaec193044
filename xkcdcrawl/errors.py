"""Short, human reasons for failed requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.exceptions import CannotResolveHostError, DownloadConnectionRefusedError
from scrapy.pipelines.media import FileException
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet import error as twisted

if TYPE_CHECKING:
    from scrapy import Spider


def reason(exc: BaseException | None) -> str:
    """'HTTP 404', or the exception's own words: for the feed and one-line log messages."""
    if isinstance(exc, HttpError) and exc.response is not None:
        return f"HTTP {exc.response.status}"
    # Twisted's words for these two are a sentence and an errno: the fact is enough.
    if isinstance(exc, DownloadConnectionRefusedError | twisted.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, CannotResolveHostError | twisted.DNSLookupError):
        return "host name not found"
    text = str(exc).strip()
    if isinstance(exc, FileException) and text:
        return text  # our own words already
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name


def log_error(spider: Spider, message: str, *args: Any) -> None:
    """Log a failure of the crawl itself (not of one file) and count it for the exit status."""
    spider.crawler.stats.inc_value("xkcdcrawl/errors")
    spider.logger.error(message, *args)
