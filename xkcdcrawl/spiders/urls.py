"""Files from a list of URLs, each stored under its host with the name from its URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import scrapy

from xkcdcrawl.args import UrlsArgs
from xkcdcrawl.items import FileItem

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def file_item(url: str) -> FileItem:
    """The item for one URL: stored as <host>/<file name>."""
    return FileItem(url=url, folder=urlsplit(url).hostname or "unknown-host", file_urls=[url])


class UrlsSpider(scrapy.Spider):
    """A list of file URLs: scrapy crawl urls -a file=urls.txt (or -a urls=URL1,URL2)"""

    name = "urls"
    args_model = UrlsArgs

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.args = UrlsArgs.from_kwargs(kwargs)

    async def start(self) -> AsyncIterator[FileItem]:
        good, bad = self.args.entries()
        for number, problem in bad:
            self.logger.error("%s line %d: %s, skipped", self.args.source(), number, problem)
        self.crawler.stats.set_value("xkcdcrawl/bad_urls", len(bad))
        for _, url in good:
            yield file_item(url)
