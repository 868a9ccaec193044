"""-a dry_run=true: read listings, APIs and pages, list the files a run would fetch, fetch none.

A downloader middleware answers each file request (the pipeline's: no callback) with a HEAD for
its size, then refuses it; the pipeline reports it as filtered with the reason "dry run", and no
body is ever asked for. Files already stored never reach the downloader: the pipeline finds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from itemadapter import ItemAdapter
from scrapy import signals
from scrapy.exceptions import NotConfigured

from xkcdcrawl.extensions.progress import is_file_request, size
from xkcdcrawl.extensions.report import announce, spider_args
from xkcdcrawl.outcomes import DRY_RUN, DRY_RUN_BYTES, DRY_RUN_SIZED, DRY_RUN_WOULD_FETCH, Filtered, reason

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response


class DryRunMiddleware:
    """Downloader middleware: with -a dry_run=true, file requests become a HEAD and go no further."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        # The Content-Length of each URL's HEAD, kept until its item is listed.
        self.sizes: dict[str, int | None] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        # Not in a run without -a dry_run=true: not a call per request, nor per item.
        if crawler.spider is not None and not spider_args(crawler.spider).get("dry_run"):
            raise NotConfigured
        mw = cls(crawler)
        crawler.signals.connect(mw.item_scraped, signal=signals.item_scraped)
        return mw

    def active(self) -> bool:
        return bool(spider_args(self.crawler.spider).get("dry_run"))

    async def process_request(self, request: Request, spider: Any = None) -> Response | None:
        if not is_file_request(request) or request.method != "GET" or not self.active():
            return None
        self.sizes[request.url] = await self.head(request)
        raise Filtered(DRY_RUN, DRY_RUN)

    async def head(self, request: Request) -> int | None:
        """The size the server gives for the file, without its body."""
        assert self.crawler.engine is not None
        try:
            response = await self.crawler.engine.download_async(request.replace(method="HEAD"))
        except Exception as error:
            # Any failure only means that the size is unknown.
            self.crawler.spider.logger.info("HEAD %s: %s", request.url, reason(error))  # type: ignore[union-attr]
            return None
        length = response.headers.get("Content-Length")
        return int(length) if response.status == 200 and length and length.isdigit() else None

    def item_scraped(self, item: Any) -> None:
        if not self.active():
            return
        assert self.crawler.stats is not None
        for file in ItemAdapter(item).get("files") or []:
            url, path = file["url"], file.get("path")
            if file.get("status") == "uptodate":
                announce(f"stored       {url} -> {path}", __name__)
            elif file.get("reason") == DRY_RUN:
                known = self.sizes.pop(url, None)
                self.crawler.stats.inc_value(DRY_RUN_WOULD_FETCH)
                if known is not None:
                    self.crawler.stats.inc_value(DRY_RUN_SIZED)
                    self.crawler.stats.inc_value(DRY_RUN_BYTES, known)
                shown = size(known) if known is not None else "size unknown"
                announce(f"would fetch  {url} -> {path} ({shown})", __name__)
