"""The files pipeline in process, built as Scrapy builds it: names, what is stored, what is fetched again."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

import pytest
from conftest import in_asyncio
from scrapy import Request, Spider
from scrapy.http import Response
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.test import get_crawler

from xkcdcrawl import settings as project_settings
from xkcdcrawl.items import FileItem
from xkcdcrawl.pipelines import NamedFilesPipeline

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


# The project's settings: get_crawler() reads Scrapy's defaults only.
PROJECT = {name: value for name, value in vars(project_settings).items() if name.isupper()}


def open_pipeline(store: Path, **settings: Any) -> NamedFilesPipeline:
    crawler = get_crawler(Spider, settings_dict={**PROJECT, "FILES_STORE": str(store), **settings})
    crawler.spider = Spider("test")
    pipeline = NamedFilesPipeline.from_crawler(crawler)
    pipeline.open_spider()
    return pipeline


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[NamedFilesPipeline]:
    opened = open_pipeline(tmp_path / "store")
    yield opened
    opened.close_spider()


def file_request(item: FileItem) -> Request:
    return Request(item.url, callback=NO_CALLBACK, meta={"allow_offsite": True})


def listed(name: str, **listed: str) -> FileItem:
    url = f"http://mirror.test/pub/{name}"
    return FileItem(url=url, folder="mirror.test/pub", name=name, path=name, listed=listed, file_urls=[url])


async def store(
    pipeline: NamedFilesPipeline,
    item: FileItem,
    body: bytes,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the pipeline makes of a 200 response with this body: stored, and its outcome."""
    request = request or file_request(item)
    response = Response(item.url, status=200, body=body, headers=headers, request=request)
    return dict(await pipeline.media_downloaded(response, request, pipeline.spiderinfo, item=item))


def test_file_path_is_where_the_item_says_and_writes_nothing(pipeline: NamedFilesPipeline) -> None:
    item = listed("a.bin")
    request = file_request(item)
    assert pipeline.file_path(request, item=item) == "mirror.test/pub/a.bin"
    assert pipeline.file_path(request, item=item) == "mirror.test/pub/a.bin"
    assert pipeline.names.book.data == {}


@in_asyncio
async def test_a_name_the_response_gives_is_kept_for_the_next_run(tmp_path: Path) -> None:
    first = open_pipeline(tmp_path / "store")
    items = [FileItem(url=f"http://h.test/get?id={n}", folder="h.test", file_urls=[]) for n in (1, 2)]
    # Before the response, the URL's own name; after it, Content-Disposition's, once per folder.
    assert first.file_path(file_request(items[0]), item=items[0]) == "h.test/get"
    disposition = {"Content-Disposition": 'attachment; filename="report.pdf"'}
    stored = [await store(first, item, b"%d" % n, headers=disposition) for n, item in enumerate(items)]
    first.close_spider()
    assert stored[0]["path"] == "h.test/report.pdf"
    other = hashlib.sha1(items[1].url.encode()).hexdigest()[:8]
    assert stored[1]["path"] == f"h.test/report-{other}.pdf"
    again = open_pipeline(tmp_path / "store")
    assert [again.file_path(file_request(item), item=item) for item in items] == [s["path"] for s in stored]
    again.close_spider()


@in_asyncio
async def test_a_stored_file_is_uptodate_while_the_listing_shows_it_unchanged(pipeline: NamedFilesPipeline) -> None:
    shown = {"size": "5", "date": "01-Dec-2026 21:00"}
    outcome = await store(pipeline, listed("a.bin", **shown), b"hello")
    assert outcome["status"] == "downloaded"
    assert outcome["checksum"] == hashlib.sha256(b"hello").hexdigest()
    assert pipeline._all_stored(listed("a.bin", **shown)) == [{**outcome, "status": "uptodate"}]
    # Another size, or another date than the one shown when it was stored: fetched again.
    assert pipeline._all_stored(listed("a.bin", size="6", date=shown["date"])) is None
    assert pipeline._all_stored(listed("a.bin", size="5", date="02-Dec-2026 08:00")) is None
    changed = listed("a.bin", size="6", date=shown["date"])
    request = file_request(changed)
    assert await pipeline.media_to_download(request, pipeline.spiderinfo, item=changed) is None
    assert request.meta["replaces"] == outcome["checksum"]
    replaced = await store(pipeline, changed, b"hello!", request=request)
    assert replaced["status"] == "updated"


@in_asyncio
async def test_a_file_stored_before_dates_were_kept_adopts_the_listings_date(pipeline: NamedFilesPipeline) -> None:
    await store(pipeline, listed("a.bin"), b"hello")
    shown = listed("a.bin", size="5", date="01-Dec-2026 21:00")
    assert pipeline._all_stored(shown) is not None
    assert pipeline._all_stored(listed("a.bin", size="5", date="02-Dec-2026 08:00")) is None


@in_asyncio
async def test_revalidate_asks_the_server_and_a_304_keeps_the_file(tmp_path: Path) -> None:
    pipeline = open_pipeline(tmp_path / "store", XKCDCRAWL_REVALIDATE=True)
    item = FileItem(url="http://h.test/a.txt", folder="h.test", file_urls=["http://h.test/a.txt"])
    stored = await store(
        pipeline, item, b"one", headers={"ETag": '"v1"', "Last-Modified": "Tue, 01 Dec 2026 20:00:00 GMT"}
    )
    assert pipeline._all_stored(item) is None
    request = file_request(item)
    assert await pipeline.media_to_download(request, pipeline.spiderinfo, item=item) is None
    assert request.headers[b"If-None-Match"] == b'"v1"'
    assert request.headers[b"If-Modified-Since"] == b"Tue, 01 Dec 2026 20:00:00 GMT"
    not_modified = Response(item.url, status=304, request=request)
    outcome = await pipeline.media_downloaded(not_modified, request, pipeline.spiderinfo, item=item)
    assert dict(outcome) == {**stored, "status": "uptodate"}
    assert (tmp_path / "store" / "h.test" / "a.txt").read_bytes() == b"one"
    pipeline.close_spider()


def test_a_store_that_gives_no_size_is_judged_by_age_alone(pipeline: NamedFilesPipeline) -> None:
    """gs:// and ftp:// stores say when, not how big: a listed size cannot tell there."""
    item = listed("a.bin", size="6")
    assert pipeline._changed(item.url, {"last_modified": time.time(), "checksum": "x"}, item) is None
    sized: Any = {"last_modified": time.time(), "checksum": "x", "size": 5}
    assert pipeline._changed(item.url, sized, item) is not None
