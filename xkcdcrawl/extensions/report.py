"""The run report in the bookkeeping folder (FILES_STORE/.xkcdcrawl/), the end summary, and -a retry_failed=true.

The report is ``.xkcdcrawl/reports/<spider>-<UTC time>.json``, and the latest complete run's is also
``.xkcdcrawl/report-<spider>.json``. Its ``files`` hold one row per line, so that a reader
(retry_failed) can go through a million-file report line by line without loading it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from scrapy import signals
from scrapy.extensions.corestats import CoreStats

from xkcdcrawl.archive import local_store
from xkcdcrawl.args import SpiderArgs
from xkcdcrawl.extensions.progress import duration, size
from xkcdcrawl.items import FileItem
from xkcdcrawl.naming import field
from xkcdcrawl.outcomes import (
    COMPLETE,
    COUNTED,
    DRY_RUN_BYTES,
    DRY_RUN_SIZED,
    DRY_RUN_WOULD_FETCH,
    FAILED,
    FETCHED,
    counts,
    log_error,
    not_fetched,
    summary,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from scrapy import Spider
    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

logger = logging.getLogger(__name__)

# Seconds: rows this old belong to no running crawl.
STALE_ROWS = 86400.0
# How many failed URLs the summary names; the report has them all.
FIRST_FAILURES = 20
# The settings that shape a run, each read as its type (-s gives strings).
SETTINGS = {
    "FILES_STORE": "get",
    "CONCURRENT_REQUESTS": "getint",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "getint",
    "DOWNLOAD_DELAY": "getfloat",
    "AUTOTHROTTLE_ENABLED": "getbool",
    "DOWNLOAD_TIMEOUT": "getfloat",
    "RETRY_TIMES": "getint",
    "ROBOTSTXT_OBEY": "getbool",
    "DOWNLOAD_MAXSIZE": "getint",
    "USER_AGENT": "get",
    "XKCDCRAWL_ARCHIVE": "getbool",
}


def announce(message: str, name: str = __name__) -> None:
    """Log at INFO whatever LOG_LEVEL says: the summary is the result of the run."""
    record = logger.makeRecord(name, logging.INFO, __file__, 0, message, (), None)
    handlers = [h for h in logging.root.handlers if not isinstance(h, logging.NullHandler)]
    if not handlers:
        sys.stderr.write(message + "\n")
    for handler in handlers:
        # Handler.handle() applies the handler's filters and formatter, not its level.
        handler.handle(record)


def latest_report(root: Path, spider: str) -> Path:
    return root / ".xkcdcrawl" / f"report-{spider}.json"


def report_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The file rows of a report, one line at a time."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            text = line.strip().rstrip(",")
            if text.startswith('{"url"'):
                yield json.loads(text)


def spider_args(spider: Spider | None) -> dict[str, Any]:
    args = getattr(spider, "args", None)
    return args.as_json() if isinstance(args, SpiderArgs) else {}


class RunReport(CoreStats):
    """Every file's outcome, streamed to disk as it comes; the report and the summary at the end.

    Scrapy's CoreStats (item and response counts, start and finish times) and more, in its place
    (EXTENSIONS_BASE): one receiver of item_scraped, not two. Scrapy runs each receiver of it as a
    task of its own, for every item; the second was a fifth of a re-run's CPU.
    """

    # Set by from_crawler(): CoreStats is made from the stats alone.
    crawler: Crawler
    root: Path | None

    def __init__(self, stats: StatsCollector) -> None:
        super().__init__(stats)
        self.started = datetime.now(UTC)
        self.clock = time.monotonic()
        self.elapsed = 0.0
        self.reason = "finished"
        self.path: Path | None = None
        self.rows: Any = None
        self.first_rows = True
        self.failed: list[tuple[str, str]] = []
        self.failed_count = 0
        # The sizes on disk of the files downloaded in this run.
        self.bytes = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        # CoreStats' receivers, these methods among them.
        ext = super().from_crawler(crawler)
        ext.crawler = crawler
        ext.root = local_store(crawler)
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    def spider_opened(self, spider: Spider) -> None:
        super().spider_opened(spider)
        self.started = datetime.now(UTC)
        self.clock = time.monotonic()
        if self.root is None:
            # s3://, gs:// and ftp:// stores have nowhere next to the files to write it.
            return
        try:
            self.open_rows(spider, self.root / ".xkcdcrawl" / "reports")
        except OSError as error:
            logger.error("Cannot write a run report in %s: %s", self.root, error.strerror)
            self.path = self.rows = None

    def open_rows(self, spider: Spider, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # The rows of a killed run, never made into a report.
        for stale in folder.glob("*.rows"):
            if stale.stat().st_mtime < time.time() - STALE_ROWS:
                stale.unlink(missing_ok=True)
        stamp = self.started.strftime("%Y%m%dT%H%M%SZ")
        self.path = folder / f"{spider.name}-{stamp}.json"
        # Two runs can start in one second.
        for n in range(2, 1000):
            if not self.path.exists() and not self.path.with_suffix(".rows").exists():
                break
            self.path = folder / f"{spider.name}-{stamp}-{n}.json"
        self.rows = self.path.with_suffix(".rows").open("w", encoding="utf-8")

    def item_scraped(self, item: Any, spider: Spider) -> None:
        super().item_scraped(item, spider)
        for file in field(item, "files") or []:
            self.record(file, item)

    def record(self, file: dict[str, Any], item: Any) -> None:
        status, path = file.get("status"), file.get("path")
        size_on_disk = None
        if status in COMPLETE:
            # The pipeline says how big a stored file is; the store is asked only when it did not.
            size_on_disk = file.get("size")
            if size_on_disk is None and self.root is not None and path:
                with contextlib.suppress(OSError):
                    size_on_disk = (self.root / path).stat().st_size
        if status in FETCHED:
            self.bytes += size_on_disk or 0
        elif status == FAILED:
            self.failed_count += 1
            if len(self.failed) < FIRST_FAILURES:
                self.failed.append((file["url"], file.get("reason") or "unknown"))
        if self.rows is None:
            return
        row = {
            "url": file["url"],
            "path": path,
            "size": size_on_disk,
            "checksum": file.get("checksum"),
            "outcome": status,
            "reason": file.get("reason"),
            # Checked against what the server published: ["sha256"], or None.
            "verified": file.get("verified"),
            # What the item said, so that retry_failed asks the pipeline for the same path.
            "folder": field(item, "folder"),
            "name": field(item, "name"),
            "draw": field(item, "draw"),
        }
        self.rows.write(("" if self.first_rows else ",\n") + json.dumps(row, ensure_ascii=False))
        self.first_rows = False

    def spider_closed(self, spider: Spider, reason: str) -> None:
        super().spider_closed(spider, reason)
        self.reason = reason
        self.elapsed = time.monotonic() - self.clock
        if self.rows is None or self.path is None:
            return
        self.rows.close()
        try:
            self.write(spider)
        except OSError as error:
            logger.error("Cannot write the run report %s: %s", self.path, error.strerror)
            self.path = None

    def write(self, spider: Spider) -> None:
        assert self.path is not None
        assert self.root is not None
        assert self.crawler.stats is not None
        stats = self.crawler.stats
        rows = self.path.with_suffix(".rows")
        dry_run = bool(spider_args(spider).get("dry_run"))
        head = {
            "spider": spider.name,
            "arguments": spider_args(spider),
            "started": self.started.isoformat(timespec="seconds"),
            "ended": datetime.now(UTC).isoformat(timespec="seconds"),
            "close_reason": self.reason,
            "dry_run": dry_run,
            "settings": {name: getattr(self.crawler.settings, get)(name) for name, get in SETTINGS.items()},
            "counts": {
                **counts(stats),
                **{key: stats.get_value(key) for key in COUNTED if stats.get_value(key) is not None},
            },
            "bytes_downloaded": self.bytes,
        }
        part = self.path.with_suffix(".part")
        with part.open("w", encoding="utf-8") as out, rows.open(encoding="utf-8") as body:
            out.write(json.dumps(head, ensure_ascii=False, indent=1, default=str)[:-2] + ',\n "files": [\n')
            # The rows are streamed: memory stays flat whatever the mirror's size.
            for line in body:
                out.write(line)
            out.write("\n ]\n}\n")
        part.replace(self.path)
        rows.unlink()
        # A dry run must not hide the failures that retry_failed is for.
        if not dry_run:
            latest = latest_report(self.root, spider.name)
            link = latest.with_suffix(".part")
            link.unlink(missing_ok=True)
            os.link(self.path, link)
            # Atomic: a reader sees the old report or the new one.
            link.replace(latest)

    def engine_stopped(self) -> None:
        # After Scrapy's stats dump and "Spider closed": the last thing on the screen.
        assert self.crawler.stats is not None
        announce("\n".join(self.summary_lines()))

    def summary_lines(self) -> list[str]:
        assert self.crawler.stats is not None
        stats = self.crawler.stats
        rate = self.bytes / self.elapsed if self.elapsed else 0.0
        lines = [summary(stats)]
        if spider_args(self.crawler.spider).get("dry_run"):
            would = stats.get_value(DRY_RUN_WOULD_FETCH, 0)
            sized, known = stats.get_value(DRY_RUN_SIZED, 0), stats.get_value(DRY_RUN_BYTES, 0)
            lines.append(
                f"Dry run: {would} files to fetch, {size(known)} for the {sized} of known size; nothing fetched"
            )
        else:
            lines.append(f"Downloaded {size(self.bytes)} in {duration(self.elapsed)}, {size(rate)}/s")
        if self.failed_count:
            lines.append(f"Failed ({self.failed_count}):")
            lines += [f"  {url}: {why}" for url, why in self.failed]
            if more := self.failed_count - len(self.failed):
                lines.append(f"  and {more} more, see {self.path}")
        if self.reason == "shutdown":
            lines.append(f"interrupted: {not_fetched(stats)} files not fetched")
        if self.path is not None:
            lines.append(f"Report: {self.path}")
        return lines


def failed_items(crawler: Crawler) -> Iterator[FileItem]:
    """The files the latest report of this spider lists as failed, as the same paths' items."""
    spider = crawler.spider
    assert spider is not None
    root = local_store(crawler)
    report = latest_report(root, spider.name) if root else None
    if report is None or not report.is_file():
        log_error(spider, "retry_failed=true: no report of an earlier %s run (%s)", spider.name, report)
        return
    retried = 0
    for row in report_rows(report):
        if row.get("outcome") == "failed":
            retried += 1
            yield FileItem(
                url=row["url"],
                folder=row.get("folder") or "unsorted",
                name=row.get("name"),
                draw=row.get("draw"),
                file_urls=[row["url"]],
            )
    logger.info("retry_failed=true: %d files failed in the run of %s", retried, report)


class RetryFailed:
    """Spider middleware: with -a retry_failed=true, the start is the last run's failed files."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        if not spider_args(self.crawler.spider).get("retry_failed"):
            async for item_or_request in start:
                yield item_or_request
            return
        # The spider's own start() is never iterated: no listing, API or page is read again.
        for item in failed_items(self.crawler):
            yield item
