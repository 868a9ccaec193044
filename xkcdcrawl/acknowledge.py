"""A request taken from the shared queue is done once its output is handled (xkcdcrawl.redisqueue)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from itemadapter import ItemAdapter
from scrapy import Request, signals
from scrapy.exceptions import NotConfigured

from xkcdcrawl.outcomes import INTERRUPTED

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from scrapy.crawler import Crawler
    from scrapy.http import Response

# request.meta key: (processing key, entry id) of a request taken from the shared queue.
TAKEN = "xkcdcrawl_taken"


def scores_key(processing: str) -> str:
    queue, _, worker = processing.rpartition(":processing:")
    return f"{queue}:processing-scores:{worker}"


def acknowledge(server: Any, taken: tuple[str, str]) -> None:
    processing, entry = taken
    server.pipeline().hdel(processing, entry).hdel(scores_key(processing), entry).execute()


class Acknowledge:
    """Spider middleware: a request taken from the shared queue is done once its output is handled.

    Done means the callback's output has been consumed and each item it gave has left the item
    pipelines (its files stored, or failed), as the item_scraped/item_dropped/item_error signals say.
    A request whose item has a file a Ctrl-C left unfetched (interrupted) is not done: it stays
    taken, and is handed back to the queue when the worker closes, for another worker to finish.
    """

    def __init__(self, crawler: Crawler, server: Any) -> None:
        self.server = server
        # Per request taken: its items not yet out of the pipelines, plus one while its output is read.
        self.open: dict[tuple[str, str], int] = {}
        # id(item) -> the request taken that gave it.
        self.items: dict[int, tuple[str, str]] = {}
        # Requests taken whose output left a file unfetched.
        self.unfinished: set[tuple[str, str]] = set()
        for signal in (signals.item_scraped, signals.item_dropped, signals.item_error):
            crawler.signals.connect(self.item_done, signal=signal)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if (
            not str(settings.get("SCHEDULER") or "").startswith("scrapy_redis.")
            or settings.get("SCHEDULER_QUEUE_CLASS") != "xkcdcrawl.redisqueue.ReliableQueue"
        ):
            raise NotConfigured
        # Imported only for a scale-out crawl: the others need no Redis client.
        from scrapy_redis.connection import get_redis_from_settings  # type: ignore[import-untyped]

        return cls(crawler, get_redis_from_settings(crawler.settings))

    async def process_spider_output(self, response: Response, result: AsyncIterator[Any]) -> AsyncIterator[Any]:
        taken = response.meta.get(TAKEN)
        if taken is None:
            async for out in result:
                yield out
            return
        self.open[taken] = self.open.get(taken, 0) + 1
        try:
            async for out in result:
                if not isinstance(out, Request):
                    self.items[id(out)] = taken
                    self.open[taken] += 1
                yield out
        finally:
            self._settle(taken)

    def item_done(self, item: Any) -> None:
        if (taken := self.items.pop(id(item), None)) is not None:
            if any(file.get("status") == INTERRUPTED for file in ItemAdapter(item).get("files") or []):
                self.unfinished.add(taken)
            self._settle(taken)

    def _settle(self, taken: tuple[str, str]) -> None:
        self.open[taken] -= 1
        if self.open[taken] == 0:
            del self.open[taken]
            if taken in self.unfinished:
                self.unfinished.discard(taken)
                return
            acknowledge(self.server, taken)
