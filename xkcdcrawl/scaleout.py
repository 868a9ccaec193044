"""The spiders for workers that share one frontier on scrapy-redis: -s SPIDER_MODULES=xkcdcrawl.scaleout

Each is the project's spider plus scrapy-redis's RedisMixin, whose spider_idle handler keeps a worker
that has run out of work open, polling the shared queue on Scrapy's engine heartbeat (every 5 s),
until it has been open MAX_IDLE_TIME_BEFORE_CLOSE seconds (0: forever). Without the mixin a worker
closes the moment the shared queue is empty, even while the others are parsing pages that will add
more. Only with scrapy-redis's scheduler: with Scrapy's own, these spiders behave as the originals.
The urls spider reads its whole list in every worker and offers each entry to the shared queue
(UrlsSpider below): the shared dupefilter lets each in once, so each URL is fetched by one worker.
See README, "Scaling out with scrapy-redis".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

from scrapy import Request, signals
from scrapy_redis.spiders import RedisMixin  # type: ignore[import-untyped]

from xkcdcrawl.spiders import listing, urls, xkcd

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from scrapy.crawler import Crawler
    from scrapy.http import Response

    from xkcdcrawl.items import FileItem


# scrapy-redis has no type hints, hence the type: ignore.
class SharedFrontier(RedisMixin):  # type: ignore[misc]
    """scrapy-redis's idle handling, only when its scheduler is on (RedisMixin would never let a crawl end)."""

    # True when scrapy-redis's scheduler is on: the frontier is the fleet's.
    shared = False

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider: Self = super().from_crawler(crawler, *args, **kwargs)
        if str(crawler.settings.get("SCHEDULER") or "").startswith("scrapy_redis."):
            spider.shared = True
            spider.setup_redis(crawler)
            crawler.signals.connect(spider.count_idle_from_open, signal=signals.spider_opened)
        return spider

    def count_idle_from_open(self) -> None:
        """scrapy-redis 0.9.1 counts from the import of its module (a class attribute): a slow start ate the wait."""
        self.spider_idle_start_time = int(time.time())


class ListingSpider(SharedFrontier, listing.ListingSpider):
    """listing.ListingSpider for a worker sharing a frontier."""


class XkcdSpider(SharedFrontier, xkcd.XkcdSpider):
    """xkcd.XkcdSpider for a worker sharing a frontier."""


def entry_url(item: FileItem) -> str:
    """A data: URL whose body is the entry (its URL, and its draw): fetched from nowhere, seen once by the fleet."""
    entry = item.url if item.draw is None else f"{item.url}#draw={item.draw}"
    return "data:text/plain," + quote(entry, safe="")


class UrlsSpider(SharedFrontier, urls.UrlsSpider):
    """urls.UrlsSpider for a worker sharing a frontier: each entry of the list goes to one worker.

    Every worker reads the whole list and offers each entry to the shared queue as a data: request;
    scrapy-redis's shared dupefilter lets the first offer in, and whichever worker pops it stores its
    files (acknowledged after, so a dead worker's entries go back to the queue).
    """

    async def start(self) -> AsyncIterator[Any]:
        if not self.shared:
            async for item in super().start():
                yield item
            return
        for item in self.listed():
            yield Request(entry_url(item), callback=self.parse_entry, cb_kwargs={"item": item})
        self.all_listed = True

    def parse_entry(self, response: Response, item: FileItem) -> Iterator[FileItem]:
        yield item
