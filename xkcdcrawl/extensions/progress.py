"""Progress while files download: a rich bar on a terminal, else one compact log line per interval."""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.exceptions import NotConfigured
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.asyncio import create_looping_call

from xkcdcrawl.outcomes import EXPECTED_FILES, FAILED, counts

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

# A file shows on the bar while in flight once this much of it has arrived.
BIG_FILE = 1 << 20
# The seconds the current rate is measured over.
RATE_WINDOW = 5.0


def size(n: float) -> str:
    """Bytes as a person reads them: 812 B, 41.2 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    # Unreachable: the loop returns at GiB.
    raise AssertionError


def duration(seconds: float) -> str:
    """0:01:05"""
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def is_file_request(request: Request) -> bool:
    """A request of the files pipeline: no callback, and not robots.txt (no callback either)."""
    return request.callback is NO_CALLBACK and "dont_obey_robotstxt" not in request.meta


def listing_done(crawler: Crawler) -> bool:
    """No page is left to read, so no more files will be found: the total is final."""
    # A spider that knows when it has listed every file (urls) says so.
    if getattr(crawler.spider, "all_listed", False):
        return True
    engine = crawler.engine
    # Scrapy has no public "start() is exhausted and the scheduler is empty"; these two are
    # what ExecutionEngine.spider_is_idle() reads (a missing one reads as "not done").
    slot = getattr(engine, "_slot", None)
    if getattr(engine, "_start", True) is not None or slot is None or slot.scheduler.has_pending_requests():
        return False
    return all(request.callback is NO_CALLBACK for request in engine.downloader.active)


class _AboveBar:
    """A stream for Scrapy's log handler while the bar is live: whole lines, printed above the bar."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.buffer = ""

    def write(self, text: str) -> int:
        from rich.text import Text

        *lines, self.buffer = (self.buffer + text).split("\n")
        if lines:
            # Text, not a str: a log line is no markup. soft_wrap: the terminal wraps it, so a long
            # URL stays one line to copy.
            self.console.print(Text("\n".join(lines)), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


class Progress:
    """Files done of files known, bytes, rate, failures and ETA, every XKCDCRAWL_PROGRESS_INTERVAL."""

    def __init__(self, crawler: Crawler, interval: float) -> None:
        self.crawler = crawler
        self.interval = interval
        # The bytes of file bodies received, chunk by chunk.
        self.bytes = 0
        # The file requests in the downloader, and the bytes each has received so far.
        self.flight: dict[Request, int] = {}
        self.samples: deque[tuple[float, int]] = deque()
        self.started = time.monotonic()
        self.bar: Any = None
        self.task: Any = None
        self.loop: Any = None
        self.streams: list[tuple[logging.StreamHandler[Any], Any]] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        interval = crawler.settings.getfloat("XKCDCRAWL_PROGRESS_INTERVAL")
        if interval <= 0:
            raise NotConfigured
        ext = cls(crawler, interval)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.bytes_received, signal=signals.bytes_received)
        crawler.signals.connect(ext.request_left_downloader, signal=signals.request_left_downloader)
        return ext

    def bytes_received(self, data: bytes, request: Request) -> None:
        # Sent for every chunk of every body: an addition, nothing more.
        # is_file_request(), inlined: this runs for every chunk.
        if request.callback is NO_CALLBACK and "dont_obey_robotstxt" not in request.meta:
            self.bytes += len(data)
            self.flight[request] = self.flight.get(request, 0) + len(data)

    def request_left_downloader(self, request: Request) -> None:
        self.flight.pop(request, None)

    def spider_opened(self) -> None:
        self.started = time.monotonic()
        # The first tick's rate covers the first interval.
        self.samples.append((self.started, 0))
        if sys.stderr.isatty():
            self._start_bar()
        # The bar redraws often enough to look alive; plain lines come once per interval.
        self.loop = create_looping_call(self.tick)
        self.loop.start(min(self.interval, 0.5) if self.bar is not None else self.interval, now=False)

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as Bar

        console = Console(stderr=True)
        self.bar = Bar(
            TextColumn("files"),
            BarColumn(),
            TextColumn("{task.fields[line]}"),
            console=console,
            transient=True,
            redirect_stderr=True,
            redirect_stdout=False,
            refresh_per_second=4,
        )
        # Scrapy's handler keeps the stream it was given: while the bar is live it writes through
        # the bar's console, which prints each whole line above the bar, never onto it.
        terminal = sys.stderr
        handlers = [h for h in logging.root.handlers if type(h) is logging.StreamHandler and h.stream is terminal]
        self.bar.start()
        self.task = self.bar.add_task("files", total=None, line="starting")
        above = _AboveBar(self.bar.console)
        for handler in handlers:
            self.streams.append((handler, handler.setStream(above)))

    def figures(self) -> dict[str, Any]:
        """What the bar and the lines show."""
        assert self.crawler.stats is not None
        stats = self.crawler.stats
        done = counts(stats)
        finished = sum(done.values())
        known = max(int(stats.get_value(EXPECTED_FILES, 0)), finished)
        now = time.monotonic()
        self.samples.append((now, self.bytes))
        while now - self.samples[0][0] > RATE_WINDOW and len(self.samples) > 2:
            self.samples.popleft()
        then, before = self.samples[0]
        rate = (self.bytes - before) / (now - then) if now > then else 0.0
        final = listing_done(self.crawler)
        eta = (now - self.started) * (known - finished) / finished if final and finished else None
        return {"done": finished, "known": known, "final": final, "rate": rate, "eta": eta, "failed": done[FAILED]}

    def line(self, f: dict[str, Any]) -> str:
        """312/1000 files, 41.2 MiB, 8.3 MiB/s, 2 failed, ETA 0:01:05"""
        text = f"{f['done']}/{f['known']} files, {size(self.bytes)}, {size(f['rate'])}/s, {f['failed']} failed"
        return text + (f", ETA {duration(f['eta'])}" if f["eta"] is not None else "")

    def in_flight(self) -> str:
        big = sorted(((n, r) for r, n in self.flight.items() if n >= BIG_FILE), key=lambda x: -x[0])[:3]
        return "".join(f" | {urlsplit(r.url).path.rpartition('/')[2][:30]} {size(n)}" for n, r in big)

    def tick(self) -> None:
        f = self.figures()
        if self.bar is None:
            logger.info("Progress: %s", self.line(f))
            return
        total = f["known"] if f["final"] else None
        self.bar.update(self.task, total=total, completed=f["done"], line=self.line(f) + self.in_flight())

    def spider_closed(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.bar is not None:
            # The last figures, however short the crawl was.
            self.tick()
            self.bar.stop()
            for handler, stream in self.streams:
                handler.setStream(stream)
            self.streams.clear()
            self.bar = None
