"""One line, not a traceback, for network errors that Scrapy logs with one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

# RobotsTxtMiddleware logs an unreachable host's robots.txt with its traceback; the
# failure of the request itself is reported anyway, in one line.
NOISY = ("scrapy.downloadermiddlewares.robotstxt",)


class _OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


class QuietNetworkErrors:
    """Drops the tracebacks of NOISY loggers for the crawl's lifetime."""

    def __init__(self) -> None:
        for name in NOISY:
            logging.getLogger(name).addFilter(_OneLine())

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls()
