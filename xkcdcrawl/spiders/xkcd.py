"""xkcd comics through the JSON API; a comic page only for the 2x image or a missing image."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urljoin, urlsplit

import scrapy
from scrapy.http import TextResponse

from xkcdcrawl.archive import DownloadArchive
from xkcdcrawl.args import XkcdArgs
from xkcdcrawl.items import ComicItem
from xkcdcrawl.outcomes import ARCHIVE_SKIPPED, COMICS_MISSING, COMICS_WITHOUT_IMAGE, log_error, reason
from xkcdcrawl.spiders import ArgsSpider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.python.failure import Failure


@dataclass(frozen=True)
class PageComic:
    """What a comic page adds to the API: the 2x image and the large-version link."""

    image_url: str | None
    image_2x_url: str | None
    link: str | None


NO_PAGE = PageComic(None, None, None)


def image_or_none(url: str) -> str | None:
    """The URL if it names a file: 1608 and 1663 give just the comics folder."""
    path = urlsplit(url).path
    return url if url and not path.endswith("/") and "." in path.rsplit("/", 1)[-1] else None


def comic_from_info(info: Mapping[str, Any], page_url: str) -> ComicItem:
    """A comic from its info.0.json record (values as the API gives them)."""
    date = "{:04d}-{:02d}-{:02d}".format(*(int(info[k]) for k in ("year", "month", "day")))
    img = str(info.get("img") or "")
    return ComicItem(
        num=int(info["num"]),
        title=info["title"],
        safe_title=info["safe_title"],
        alt=info["alt"],
        date=date,
        page_url=page_url,
        image_url=image_or_none(urljoin(page_url, img)) if img else None,
        link=info.get("link") or "",
    )


def comic_from_page(response: TextResponse) -> PageComic:
    """The comic image of a page of any era: #comic img (maybe wrapped in a link), or 2011's."""
    img = response.css("#comic img") or response.xpath("//img[contains(@src, '/comics/')]")
    if not img:
        return NO_PAGE
    first = img[0]
    src = first.attrib.get("src")
    link = first.xpath("ancestor::a[1]/@href").get()
    return PageComic(
        image_url=image_or_none(response.urljoin(src)) if src else None,
        image_2x_url=_srcset_2x(response, first.attrib.get("srcset", "")),
        link=response.urljoin(link) if link else None,
    )


def _srcset_2x(response: TextResponse, srcset: str) -> str | None:
    for candidate in srcset.split(","):
        url, _, descriptor = candidate.strip().partition(" ")
        if url and descriptor.strip() == "2x":
            return image_or_none(response.urljoin(url))
    return None


def with_page(item: ComicItem, page: PageComic, hires: bool) -> ComicItem:
    """The item completed by its page, with the image to store in file_urls."""
    image = item.image_url or page.image_url
    large = item.link or page.link or ""
    wanted = (page.image_2x_url or image) if hires else image
    return dataclasses.replace(
        item,
        image_url=image,
        image_2x_url=page.image_2x_url,
        link=large,
        file_urls=[wanted] if wanted else [],
    )


class XkcdSpider(ArgsSpider[XkcdArgs]):
    """Comics START..END: scrapy crawl xkcd -a start=1 -a end=1400"""

    name = "xkcd"
    args_model = XkcdArgs
    # Each API answer gives one request or one item, and Scrapy starts CONCURRENT_ITEMS (100)
    # asyncio tasks for every response's output: a fifth of the 1400-comic crawl's CPU.
    custom_settings = {"CONCURRENT_ITEMS": 1}
    archive: DownloadArchive | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed_domains = [urlsplit(self.args.base_url).hostname or ""]
        # The numbers that answered 404, until a later one exists.
        self.missing: set[int] = set()
        # The highest number that answered with a record.
        self.highest = 0

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.archive = DownloadArchive.from_crawler(crawler, key=spider.archive_key)
        return spider

    def archive_key(self, item: Any) -> str | None:
        # -a retry_failed=true yields plain FileItems: no comic number to record.
        return self.archive_key_for(item.num) if isinstance(item, ComicItem) else None

    async def start(self) -> AsyncIterator[scrapy.Request]:
        # Without an end, learn the newest number: parse_latest() yields the range.
        if self.args.end is None:
            yield scrapy.Request(f"{self.args.base_url}/info.0.json", self.parse_latest, errback=self.api_failed)
            return
        for request in self.comic_requests(self.args.start, self.args.end):
            yield request

    def parse_latest(self, response: Response) -> Iterator[scrapy.Request]:
        try:
            newest = int(json.loads(response.body)["num"])
        except (ValueError, KeyError, TypeError) as error:
            log_error(self, "Unreadable answer from %s: %s", response.url, reason(error))
            return
        self.logger.info("Newest comic is %d", newest)
        yield from self.comic_requests(self.args.start, newest)

    def archive_key_for(self, num: int) -> str:
        return f"{num}@2x" if self.args.hires else str(num)

    def comic_requests(self, start: int, end: int) -> Iterator[scrapy.Request]:
        skipped = 0
        for num in range(start, end + 1):
            if self.archive is not None and self.archive_key_for(num) in self.archive:
                skipped += 1
                continue
            yield scrapy.Request(
                f"{self.args.base_url}/{num}/info.0.json",
                callback=self.parse_info,
                errback=self.api_failed,
                meta={"handle_httpstatus_list": [404]},
                cb_kwargs={"num": num},
            )
        if skipped and self.archive is not None:
            self.crawler.stats.inc_value(ARCHIVE_SKIPPED, skipped)
            self.logger.info("Skipped %d comics already complete (download archive %s)", skipped, self.archive.path)

    def parse_info(self, response: Response, num: int) -> Iterator[scrapy.Request | ComicItem]:
        # 404 ("Not Found") is the one number xkcd skipped.
        if response.status == 404:
            self.crawler.stats.inc_value(COMICS_MISSING)
            self.logger.info("Comic %d does not exist (HTTP 404)", num)
            self.missing.add(num)
            self.settle_missing()
            return
        try:
            item = comic_from_info(json.loads(response.body), f"{self.args.base_url}/{num}/")
        except (ValueError, KeyError, TypeError) as error:
            log_error(self, "Comic %d: unreadable answer from %s: %s", num, response.url, reason(error))
            return
        self.highest = max(self.highest, num)
        self.settle_missing()
        if self.needs_page(item):
            yield scrapy.Request(
                item.page_url, callback=self.parse_page, errback=self.page_failed, cb_kwargs={"item": item}
            )
        else:
            yield self.finish(with_page(item, NO_PAGE, hires=False))

    def settle_missing(self) -> None:
        """A 404 below a comic that exists is gone for good (xkcd 404): the download archive skips it next time."""
        gone = {num for num in self.missing if num < self.highest}
        self.missing -= gone
        if self.archive is not None:
            for num in gone:
                self.archive.ledger.record(self.archive_key_for(num), [])

    def needs_page(self, item: ComicItem) -> bool:
        """Only the page has the 2x image, and the image the API does not name (1608, 1663)."""
        return self.args.hires or item.image_url is None

    def api_failed(self, failure: Failure) -> None:
        log_error(self, "Cannot read %s: %s", failure.request.url, reason(failure.value))  # type: ignore[attr-defined]

    def parse_page(self, response: Response, item: ComicItem) -> Iterator[ComicItem]:
        page = comic_from_page(response) if isinstance(response, TextResponse) else NO_PAGE
        yield self.finish(with_page(item, page, self.args.hires))

    def page_failed(self, failure: Failure) -> Iterator[ComicItem]:
        item: ComicItem = failure.request.cb_kwargs["item"]  # type: ignore[attr-defined]
        self.logger.warning("Comic %d: page unavailable (%s); using the API only", item.num, reason(failure.value))
        yield self.finish(with_page(item, NO_PAGE, self.args.hires))

    def finish(self, item: ComicItem) -> ComicItem:
        if not item.file_urls:
            self.crawler.stats.inc_value(COMICS_WITHOUT_IMAGE)
            self.logger.warning("Comic %d (%s): no image (interactive comic), skipped", item.num, item.safe_title)
        return item
