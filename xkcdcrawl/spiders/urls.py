"""Files from a list of URLs, each stored under its host with the name from its URL."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from itemadapter import ItemAdapter
from scrapy import signals
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred

from xkcdcrawl.args import UrlsArgs
from xkcdcrawl.items import FileItem
from xkcdcrawl.naming import distinct_name, host_folder, numbered, url_file_name
from xkcdcrawl.outcomes import BAD_URLS, IDENTICAL_DRAWS
from xkcdcrawl.spiders import ArgsSpider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from scrapy.crawler import Crawler


def file_items(url: str, repeat: int = 1) -> Iterator[FileItem]:
    """The items for one URL: <host>[_port]/<file name>, numbered <stem>-01<ext>... for repeats."""
    folder = host_folder(url)
    if repeat == 1:
        yield FileItem(url=url, folder=folder, file_urls=[url])
        return
    for draw in range(1, repeat + 1):
        yield FileItem(
            url=url, folder=folder, name=numbered(url_file_name(url), draw, repeat), draw=draw, file_urls=[url]
        )


class UrlsSpider(ArgsSpider[UrlsArgs]):
    """A list of file URLs: scrapy crawl urls -a file=urls.txt (or -a urls=URL1,URL2 -a repeat=10)"""

    name = "urls"
    args_model = UrlsArgs

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The first path stored for each (URL, checksum).
        self.draws: dict[tuple[str, str], str] = {}
        # Items yielded whose files are not all done yet.
        self.pending = 0
        self.waiter: Deferred[None] | None = None
        # True once every file of the list is yielded.
        self.all_listed = False

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        if spider.args.repeat > 1:
            crawler.signals.connect(spider.report_identical, signal=signals.item_scraped)
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(spider.item_done, signal=signal)
        return spider

    async def start(self) -> AsyncIterator[FileItem]:
        # Items in the pipeline at once: enough to keep every connection busy, few enough that
        # a Ctrl-C (which stops start() and lets the pipeline finish) is over in seconds.
        window = 2 * self.settings.getint("CONCURRENT_REQUESTS")
        for item in self.listed():
            await self.until(lambda: self.pending < window)
            self.pending += 1
            yield item
        # Every file is known now (the progress ETA), though start() is not over yet.
        self.all_listed = True
        # Scrapy's engine notices that items from start() are done only on its 5 s heartbeat:
        # start() ends when they are, and the engine looks at once (a 1-file run took 5 s more).
        await self.until(lambda: self.pending == 0)

    def listed(self) -> Iterator[FileItem]:
        """The list's items, in its order; a file name a folder already has is made distinct."""
        good, bad = self.args.entries()
        for number, problem in bad:
            self.logger.error("%s line %d: %s, skipped", self.args.source(), number, problem)
        self.crawler.stats.set_value(BAD_URLS, len(bad))
        # The names taken in each folder.
        taken: defaultdict[str, set[str]] = defaultdict(set)
        for _, url in good:
            for item in file_items(url, self.args.repeat):
                name = item.name or url_file_name(url)
                # A URL with a query is named by its response (Content-Disposition) or by its query.
                if not urlsplit(url).query and (unique := distinct_name(name, url, taken[item.folder])) != name:
                    # Another URL of this host has the same file name.
                    item.name = unique
                yield item

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait until done() is true; checked each time an item is done."""
        while not done():
            self.waiter = Deferred()
            await maybe_deferred_to_future(self.waiter)

    def item_done(self) -> None:
        self.pending -= 1
        if self.waiter is not None and not self.waiter.called:
            self.waiter.callback(None)
        # Looked at once Scrapy has counted the item as done.
        call_later(0, self.finish_closing)

    def finish_closing(self) -> None:
        """Let a stopping crawl (Ctrl-C) close once the pipeline is empty.

        Scrapy 2.19 checks whether its scraper may close only after the items of a response:
        items from start() that finish while the spider closes left the crawl open forever.
        """
        engine = self.crawler.engine
        if engine is None or engine.running:
            # Not stopping: the engine closes an idle spider itself.
            return
        slot = engine.scraper.slot
        if slot is None or (slot.closing is not None and slot.closing.called):
            return
        if slot.closing is not None and slot.is_idle():
            engine.scraper._check_if_closing()
        else:
            # The item is counted as done a moment after its signal.
            call_later(0.05, self.finish_closing)

    def report_identical(self, item: Any) -> None:
        """An endpoint meant to be random that served the same file twice."""
        adapter = ItemAdapter(item)
        for file in adapter.get("files") or []:
            if not file.get("checksum"):
                continue
            first = self.draws.setdefault((adapter["url"], file["checksum"]), file["path"])
            if first != file["path"]:
                self.crawler.stats.inc_value(IDENTICAL_DRAWS)
                self.logger.warning("%s is identical to %s (same content from %s)", file["path"], first, adapter["url"])
