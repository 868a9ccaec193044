"""The one files pipeline: real file names, atomic writes, every outcome reported."""

from __future__ import annotations

import hashlib
import logging
import posixpath
from io import BytesIO
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import urlsplit

from itemadapter import ItemAdapter
from scrapy.exceptions import IgnoreRequest
from scrapy.http.request import NO_CALLBACK, Request
from scrapy.pipelines.files import FilesPipeline, FilesStoreProtocol
from scrapy.pipelines.media import FileException, _MediaRequestFiltered
from scrapy.utils.defer import ensure_awaitable, maybe_deferred_to_future
from twisted.python.failure import Failure

from xkcdcrawl.archive import ledger
from xkcdcrawl.errors import reason
from xkcdcrawl.paths import disposition_name, has_extension, safe_relpath, safe_segment, type_extension, url_file_name
from xkcdcrawl.stores import AtomicFSFilesStore

if TYPE_CHECKING:
    from scrapy.http import Response
    from scrapy.pipelines.media import FileInfo, FileInfoOrError, MediaPipeline

logger = logging.getLogger(__name__)


def store_path(url: str, item: Any) -> str:
    """<item folder>/<file name>: from the URL and stable item fields only."""
    adapter = ItemAdapter(item)
    name = adapter.get("name") or url_file_name(url)
    return safe_relpath(adapter.get("folder") or "unsorted", safe_segment(name))


def needs_response_name(url: str, path: str, named: bool, draw: int | None) -> bool:
    """A URL whose name has no extension, or whose query may name another file each time.

    A name the spider gave is kept as it is (a listed Makefile stays Makefile), but for the
    numbered draws of a random endpoint, which take the extension of their Content-Type.
    """
    if named:
        return draw is not None and not has_extension(path.rpartition("/")[2])
    return not has_extension(path.rpartition("/")[2]) or bool(urlsplit(url).query)


def response_path(path: str, response: Response, named: bool) -> str:
    """The store path completed by the response: Content-Disposition, then Content-Type."""
    folder, _, name = path.rpartition("/")
    if not named and (given := disposition_name(response.headers.get("Content-Disposition"))):
        name = safe_segment(given)
    if not has_extension(name):
        name = safe_segment(name + type_extension(response.headers.get("Content-Type")))  # CON + .bin
    return f"{folder}/{name}"


class NamedFilesPipeline(FilesPipeline):
    """Store each file as <item folder>/<file name from the URL>."""

    STORE_SCHEMES: ClassVar[dict[str, type[FilesStoreProtocol]]] = {
        **FilesPipeline.STORE_SCHEMES,
        "": AtomicFSFilesStore,
        "file": AtomicFSFilesStore,
    }

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: MediaPipeline.SpiderInfo | None = None,
        *,
        item: Any = None,
    ) -> str:
        path = store_path(request.url, item)
        adapter = ItemAdapter(item)
        named = adapter.get("name") is not None
        if not needs_response_name(request.url, path, named, adapter.get("draw")):
            return path
        # Scrapy asks for the path before downloading, to skip stored files: the name
        # the response gave last time is in the name book, and stays the name.
        key = f"{request.url}#draw={request.meta.get('draw')}"
        if (known := self.names.get(key)) is not None:
            return str(known)
        if response is None:
            return path  # not downloaded yet: no file will be found there
        chosen = response_path(path, response, named)
        if chosen in self.taken:  # download.php?id=1, download.php?id=2, ...
            stem, ext = posixpath.splitext(chosen)
            chosen = f"{stem}-{hashlib.sha1(request.url.encode()).hexdigest()[:8]}{ext}"
        self.names.record(key, chosen)
        self.taken.add(chosen)
        return chosen

    def open_spider(self, spider: Any = None) -> None:
        super().open_spider()
        self.names = ledger(self.crawler, "names")
        self.taken = set(self.names.data.values())  # paths already given to a response

    def close_spider(self, spider: Any = None) -> None:
        self.names.close()

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        adapter = ItemAdapter(item)
        urls = adapter.get(self.files_urls_field) or []
        draw = adapter.get("draw")  # repeats of one URL: xkcdcrawl.fingerprint keeps them apart
        self.crawler.stats.inc_value("xkcdcrawl/expected_files", len(urls))  # the progress bar's total
        return [Request(url, callback=NO_CALLBACK, meta={"draw": draw} if draw else {}) for url in urls]

    async def media_downloaded(
        self,
        response: Response,
        request: Request,
        info: MediaPipeline.SpiderInfo,
        *,
        item: Any = None,
    ) -> FileInfo:
        if response.status != 200:  # Scrapy's message says only "download-error"
            raise FileException(f"HTTP {response.status}")
        expected = response.headers.get("Content-Length")
        if expected and expected.isdigit() and len(response.body) < int(expected):
            # (decompression only makes bodies longer: shorter is always a cut)
            raise FileException(f"short body: {len(response.body)} of {int(expected)} bytes")
        # Not super(): it refuses empty files, which a mirror must keep.
        status = "cached" if "cached" in response.flags else "downloaded"
        checksum: str = await ensure_awaitable(self.file_downloaded(response, request, info, item=item))
        self.inc_stats(status)
        path = self.file_path(request, response=response, info=info, item=item)
        return {"url": request.url, "path": path, "checksum": checksum, "status": status}

    async def file_downloaded(
        self, response: Response, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None
    ) -> str:
        if not isinstance(self.store, AtomicFSFilesStore):  # s3://, gs://, ftp://: Scrapy's way
            return await ensure_awaitable(super().file_downloaded(response, request, info, item=item))
        path = self.file_path(request, response=response, info=info, item=item)
        # Scrapy would hash the body in the reactor thread, then the store again: once, in a thread.
        return await maybe_deferred_to_future(self.store.persist_file(path, BytesIO(response.body), info))

    def media_failed(self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo) -> Any:
        # Not super(): its warning says "unknown-error"; _outcome() logs the real reason once.
        if isinstance(failure.value, IgnoreRequest):
            raise _MediaRequestFiltered(str(failure.value)) from failure.value
        raise FileException(reason(failure.value)) from failure.value

    async def _check_media_to_download(self, request: Request, info: MediaPipeline.SpiderInfo, item: Any) -> FileInfo:
        # A failed file is a result, not an exception: Scrapy would log a traceback for
        # it and drop it from the item; here it stays there with its reason.
        try:
            return await super()._check_media_to_download(request, info, item)
        except FileException as exc:
            # IgnoreRequest is policy (offsite, robots.txt) but also a redirect loop: a failure
            policy = isinstance(exc, _MediaRequestFiltered) and "redirect" not in str(exc).lower()
            status = "filtered" if policy else "failed"
            return self._outcome(request.url, item, status, str(exc), info)

    def item_completed(self, results: list[FileInfoOrError], item: Any, info: MediaPipeline.SpiderInfo) -> Any:
        adapter = ItemAdapter(item)
        urls = adapter.get(self.files_urls_field) or []
        files: list[FileInfo] = []
        for url, (_, result) in zip(urls, results, strict=True):
            if isinstance(result, Failure):  # an error outside the download itself
                files.append(self._outcome(url, item, "failed", reason(result.value), info))
            else:
                files.append(result)
        adapter[self.files_result_field] = files
        return item

    def _outcome(self, url: str, item: Any, status: str, reason: str, info: MediaPipeline.SpiderInfo) -> FileInfo:
        self.inc_stats(status)
        log = logger.info if status == "filtered" else logger.error
        log("File %s: %s (%s)", status, url, reason, extra={"spider": info.spider})
        path = self.file_path(Request(url), item=item)
        return cast("FileInfo", {"url": url, "path": path, "checksum": None, "status": status, "reason": reason})
