"""Progress while files download, and a one-line summary of every outcome at the end."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Self

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

logger = logging.getLogger(__name__)

OUTCOMES = ("downloaded", "uptodate", "failed", "filtered")


def counts(stats: StatsCollector) -> dict[str, int]:
    """Files by outcome, from the pipeline's stats."""
    return {name: int(stats.get_value(f"file_status_count/{name}", 0)) for name in OUTCOMES}


def failures(stats: StatsCollector) -> int:
    """What went wrong in a run: failed files, unusable lines of a URL list, unreadable sources."""
    keys = ("file_status_count/failed", "xkcdcrawl/bad_urls", "xkcdcrawl/errors")
    return sum(int(stats.get_value(key, 0)) for key in keys)


def summary(stats: StatsCollector) -> str:
    """One line a person or a cron mail can read."""
    files = ", ".join(f"{n} {name}" for name, n in counts(stats).items())
    extra = {
        "comics missing": stats.get_value("xkcdcrawl/comics_missing", 0),
        "without image": stats.get_value("xkcdcrawl/comics_without_image", 0),
        "skipped as complete": stats.get_value("xkcdcrawl/archive_skipped", 0),
        "bad URLs in the list": stats.get_value("xkcdcrawl/bad_urls", 0),
        "errors": stats.get_value("xkcdcrawl/errors", 0),
    }
    rest = "".join(f", {n} {what}" for what, n in extra.items() if n)
    return f"Files: {files}{rest}"


class Progress:
    """A rich bar on a terminal, else a log line per tick; always a summary at the end."""

    def __init__(self, crawler: Crawler, interval: float) -> None:
        self.crawler = crawler
        self.interval = interval
        self.bar: Any = None
        self.task: Any = None
        self.loop: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        interval = crawler.settings.getfloat("XKCDCRAWL_PROGRESS_INTERVAL")
        if interval < 0:
            raise NotConfigured
        ext = cls(crawler, interval)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_opened(self) -> None:
        if not self.interval:
            return
        if sys.stderr.isatty():
            from rich.progress import Progress as Bar

            self.bar = Bar(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("files", total=None)
        self.loop = create_looping_call(self.tick)
        self.loop.start(self.interval, now=False)

    def tick(self) -> None:
        assert self.crawler.stats is not None
        done = counts(self.crawler.stats)
        if self.bar is not None:
            total = self.crawler.stats.get_value("xkcdcrawl/expected_files")
            self.bar.update(self.task, total=total, completed=sum(done.values()), description=_line(done))
        else:
            logger.info("Progress: %s", _line(done))

    def spider_closed(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.bar is not None:
            self.bar.stop()
        assert self.crawler.stats is not None
        logger.info(summary(self.crawler.stats))


def _line(done: dict[str, int]) -> str:
    return " ".join(f"{n} {name}" for name, n in done.items())
