"""The spiders for workers that share one frontier on scrapy-redis: -s SPIDER_MODULES=xkcdcrawl.scaleout

Each is the project's spider plus scrapy-redis's RedisMixin, whose spider_idle handler keeps a worker
that has run out of work open, polling the shared queue on Scrapy's engine heartbeat (every 5 s),
until it has been open MAX_IDLE_TIME_BEFORE_CLOSE seconds (0: forever). Without the mixin a worker
closes the moment the shared queue is empty, even while the others are parsing pages that will add
more. Only with scrapy-redis's scheduler: with Scrapy's own, these spiders behave as the originals.
See README, "Scaling out with scrapy-redis".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Self

from scrapy import signals
from scrapy_redis.spiders import RedisMixin  # type: ignore[import-untyped]

from xkcdcrawl.spiders import listing, xkcd

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


class SharedFrontier(RedisMixin):  # type: ignore[misc]  # scrapy-redis has no type hints
    """scrapy-redis's idle handling, only when its scheduler is on (RedisMixin would never let a crawl end)."""

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider: Self = super().from_crawler(crawler, *args, **kwargs)
        if str(crawler.settings.get("SCHEDULER") or "").startswith("scrapy_redis."):
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
