"""One ERROR line per failure: no tracebacks, no second and third line from Scrapy for it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Self

from scrapy import signals

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

# RobotsTxtMiddleware logs an unreachable host's robots.txt with its traceback; the
# failure of the request itself is reported anyway, in one line.
NOISY = ("scrapy.downloadermiddlewares.robotstxt",)
# Messages that repeat a failure reported anyway, once, by the pipeline ("File failed: URL
# (reason)"), a spider ("Cannot read URL: reason") or Scrapy's scraper ("Error downloading"):
# kept, as INFO, for who reads the whole log.
DUPLICATES = {
    "scrapy.downloadermiddlewares.robotstxt": "Error downloading",
    "scrapy.downloadermiddlewares.retry": "Gave up retrying",
}


class _OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


class _Lower(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO and str(record.msg).startswith(self.prefix):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class QuietNetworkErrors:
    """Drops the tracebacks of NOISY loggers and lowers DUPLICATES for the crawl's lifetime."""

    def __init__(self) -> None:
        for name in NOISY:
            logging.getLogger(name).addFilter(_OneLine())
        for name, prefix in DUPLICATES.items():
            logging.getLogger(name).addFilter(_Lower(prefix))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        ext = cls()
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        return ext

    def spider_opened(self) -> None:
        # Scrapy sets its logger to DEBUG and the root one to NOTSET (again once the crawl starts,
        # hence here), and filters in its handlers: every debug() of every request and item
        # builds a record only to drop it (two a file, a tenth of a re-run's CPU).
        levels = [handler.level for handler in logging.root.handlers]
        if levels and (level := min(levels)) > logging.NOTSET:
            for logger in (logging.root, logging.getLogger("scrapy")):
                logger.setLevel(max(logger.level, level))
