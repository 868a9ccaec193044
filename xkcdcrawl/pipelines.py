"""The one files pipeline: real file names, atomic writes, every outcome reported."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import posixpath
import time
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import urlsplit

from itemadapter import ItemAdapter
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.http.request import NO_CALLBACK, Request
from scrapy.pipelines.files import FilesPipeline, FilesStoreProtocol
from scrapy.pipelines.media import FileException, _MediaRequestFiltered
from scrapy.utils.defer import ensure_awaitable, maybe_deferred_to_future
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

from xkcdcrawl.archive import ledger
from xkcdcrawl.bodyfile import DiskError, PartialState
from xkcdcrawl.checksums import header_digests, mismatches
from xkcdcrawl.errors import reason
from xkcdcrawl.handlers import BodyResult, RangeRefused
from xkcdcrawl.paths import disposition_name, has_extension, safe_relpath, safe_segment, type_extension, url_file_name
from xkcdcrawl.s3store import StreamingS3FilesStore, configure
from xkcdcrawl.stores import AtomicFSFilesStore, ChecksumError, IncompleteFileError, digests_of, hash_range

if TYPE_CHECKING:
    from scrapy.pipelines.media import FileInfo, FileInfoOrError, MediaPipeline
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)


def store_path(url: str, item: Any) -> str:
    """<item folder>/<file name>: from the URL and stable item fields only."""
    name = field(item, "name") or url_file_name(url)
    return safe_relpath(field(item, "folder") or "unsorted", safe_segment(name))


def field(item: Any, name: str) -> Any:
    """An item's field, or None: ItemAdapter's answer, without building one (a few a file add up)."""
    if isinstance(item, Mapping):  # dict, scrapy.Item
        return item.get(name)
    return getattr(item, name, None)  # dataclass, attrs, pydantic


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


def _hash_range(path: Path, first: int, last: int, hashers: dict[str, Any]) -> None:
    with path.open("rb") as f:
        hash_range(f, hashers, first, last)


class _RangesRefused(FileException):
    """The ranges of a split file cannot be had any more: its partial file is gone."""


class NamedFilesPipeline(FilesPipeline):
    """Store each file as <item folder>/<file name from the URL>."""

    STORE_SCHEMES: ClassVar[dict[str, type[FilesStoreProtocol]]] = {
        **FilesPipeline.STORE_SCHEMES,
        "": AtomicFSFilesStore,
        "file": AtomicFSFilesStore,
        "s3": StreamingS3FilesStore,
    }

    @classmethod
    def _update_stores(cls, settings: BaseSettings) -> None:
        super()._update_stores(settings)
        configure(settings)  # s3://: its work folder too

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: MediaPipeline.SpiderInfo | None = None,
        *,
        item: Any = None,
    ) -> str:
        # Asked four times a file (before, while and after the download): worked out once.
        if (known_path := request.meta.get("store_path")) is not None:
            return str(known_path)
        path = store_path(request.url, item)
        named = field(item, "name") is not None
        if not needs_response_name(request.url, path, named, field(item, "draw")):
            request.meta["store_path"] = path
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
        settings = self.crawler.settings
        # Bodies stream to disk into a local store, and into the local work folder of an s3://
        # one (uploaded from there in parts); gs:// and ftp:// take them whole.
        streaming = (AtomicFSFilesStore, StreamingS3FilesStore)
        self.fs = self.store if isinstance(self.store, streaming) else None
        self.streams = self.fs is not None and bool(
            settings.getdict("DOWNLOAD_HANDLERS").get("http", "").endswith("StreamingDownloadHandler")
        )
        self.files_maxsize = settings.getint("XKCDCRAWL_FILES_MAXSIZE")
        parts = settings.getint("XKCDCRAWL_SPLIT_PARTS")
        self.split = (settings.getint("XKCDCRAWL_SPLIT_SIZE"), parts) if parts > 1 else None
        self.started = time.time()
        self.unfinished: set[Path] = set()  # partial files of failed files, kept for the next run
        self.resumable = self.fs.resumable() if self.fs is not None else set()  # left by earlier runs

    def close_spider(self, spider: Any = None) -> None:
        self.names.close()
        if self.fs is not None:
            # Nothing of this run, or of the runs it resumed, stays but what the next one resumes.
            self.fs.sweep(self.started, self.unfinished)

    async def process_item(self, item: Any, spider: Any = None) -> Any:
        # A re-run of a big mirror finds most files stored: answered here, without the media
        # pipeline's requests, fingerprints and waits for each (half a re-run's CPU).
        if (files := self._all_stored(item)) is not None:
            self.crawler.stats.inc_value("xkcdcrawl/expected_files", len(files))
            for _ in files:
                self.inc_stats("uptodate")
            ItemAdapter(item)[self.files_result_field] = files
            return item
        return await super().process_item(item)

    def _all_stored(self, item: Any) -> list[FileInfo] | None:
        """The outcomes of an item whose files are all stored (and not expired), else None."""
        if self.fs is None:
            return None
        files: list[FileInfo] = []
        for url in field(item, self.files_urls_field) or []:
            request = Request(url, callback=NO_CALLBACK, meta={"draw": field(item, "draw")})
            path = self.file_path(request, item=item)
            stat = self.fs.stat_now(path)
            if not stat or time.time() - stat["last_modified"] > self.expires * 86400:
                return None
            files.append({"url": url, "path": path, "checksum": stat["checksum"], "status": "uptodate"})
        return files

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        urls = field(item, self.files_urls_field) or []
        draw = field(item, "draw")  # repeats of one URL: xkcdcrawl.fingerprint keeps them apart
        self.crawler.stats.inc_value("xkcdcrawl/expected_files", len(urls))  # the progress bar's total
        # A listed file is fetched wherever its redirects lead: the start host bounds pages only.
        meta = {"draw": draw, "allow_offsite": True} if draw else {"allow_offsite": True}
        return [Request(url, callback=NO_CALLBACK, meta=meta) for url in urls]

    def _stream_to_partial(self, request: Request, item: Any) -> None:
        """Mark a file request so that StreamingDownloadHandler writes its body to its partial file."""
        assert self.fs is not None
        part, state = self.fs.partial_for(self.file_path(request, item=item))
        request.meta.update(
            body_file=str(part),
            body_file_state=str(state),
            body_file_resumable=state.name in self.resumable,
            body_file_split=self.split,
            download_maxsize=self.files_maxsize,  # DOWNLOAD_MAXSIZE caps pages, not files
            download_warnsize=0,
        )
        # What reaches the file must be the file: no transfer compression to undo.
        request.headers.setdefault(b"Accept-Encoding", b"identity")

    async def media_downloaded(
        self,
        response: Response,
        request: Request,
        info: MediaPipeline.SpiderInfo,
        *,
        item: Any = None,
    ) -> FileInfo:
        if "streamed" in response.flags:
            return await self._streamed(response, request, info, item)
        if response.status == 416 and self.fs is not None and "body_file" in request.meta:
            self.fs.discard(Path(request.meta["body_file"]))  # the next try starts over
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
        return self._stored(request, path, checksum, status, self._expected(item, header_digests(response.headers)))

    def _expected(self, item: Any, published: dict[str, str]) -> dict[str, str]:
        """What the file must be: the listing's checksum files, then the server's digest headers."""
        return {**published, **(field(item, "digests") or {})}

    def _stored(self, request: Request, path: str, checksum: str, status: str, verified: dict[str, str]) -> FileInfo:
        info: dict[str, Any] = {"url": request.url, "path": path, "checksum": checksum, "status": status}
        if verified:
            info["verified"] = sorted(verified)  # checked against what the server published
        return cast("FileInfo", info)

    async def _streamed(
        self, response: Response, request: Request, info: MediaPipeline.SpiderInfo, item: Any
    ) -> FileInfo:
        """A body StreamingDownloadHandler wrote to the partial file: completed, verified, moved into place."""
        part = Path(request.meta["body_file"])
        # On the request that was sent last: a redirect or a retry is a copy of this one.
        result: BodyResult = response.meta["body_file_result"]
        expected = self._expected(item, result.expected)
        # Hashed on the way when written in one go from its first byte; in ranges, range by range.
        digests = result.digests
        if "segment" in response.flags:
            digests = await self._fetch_ranges(request, result, {"sha256", *expected})
        path = self.file_path(request, response=response, info=info, item=item)
        assert self.fs is not None
        try:
            checksum = await maybe_deferred_to_future(self.fs.finalize(part, path, result.length, digests, expected))
        except IncompleteFileError as error:
            raise FileException(str(error)) from None
        status = "downloaded"
        self.inc_stats(status)
        return self._stored(request, path, checksum, status, expected)

    async def _fetch_ranges(self, request: Request, result: BodyResult, algorithms: set[str]) -> dict[str, str]:
        """The other ranges of a split file, and the digests of the whole file.

        Each range is a request of its own, so the per-host limit counts it; at most
        XKCDCRAWL_SPLIT_PARTS at a time, asked for in file order, and each hashed (read back
        while it is still in the page cache) as soon as it and those before it are there: the
        digest is ready when the last range is, not a read of the whole file later.
        """
        state = result.state
        assert state is not None
        assert self.crawler.engine is not None
        engine = self.crawler.engine
        gate = asyncio.Semaphore(self.split[1] if self.split else 1)
        part = Path(request.meta["body_file"])

        async def fetch(segment: list[int]) -> Response | None:
            if segment[2] >= segment[1] - segment[0] + 1:
                return None  # on disk already (the first range, or a resumed file's)
            async with gate:
                return await engine.download_async(self._range_request(request, state, segment))

        # (asyncio's semaphore wakes its waiters in turn: ranges come in file order)
        fetches = [asyncio.ensure_future(fetch(segment)) for segment in state.segments]
        hashers = {name: hashlib.new(name) for name in algorithms}
        try:
            for fetched, segment in zip(fetches, state.segments, strict=True):
                self._check_range(request, (await asyncio.gather(fetched, return_exceptions=True))[0])
                await maybe_deferred_to_future(deferToThread(_hash_range, part, segment[0], segment[1], hashers))
        finally:
            for fetched in fetches:
                fetched.cancel()
        return {name: hasher.hexdigest() for name, hasher in hashers.items()}

    def _check_range(self, request: Request, outcome: Response | BaseException | None) -> None:
        assert self.fs is not None
        if isinstance(outcome, BaseException) and not isinstance(outcome, RangeRefused):
            # Kept, with what it has: the next run asks for what is missing.
            raise FileException(reason(outcome)) from outcome
        if isinstance(outcome, RangeRefused) or (outcome is not None and "streamed" not in outcome.flags):
            # Another version of the file now, or no ranges any more: fetched whole next time.
            self.fs.discard(Path(request.meta["body_file"]))
            problem = outcome if isinstance(outcome, RangeRefused) else f"HTTP {outcome.status}"
            raise _RangesRefused(f"range request failed ({problem})")

    def _range_request(self, request: Request, state: PartialState, segment: list[int]) -> Request:
        meta = {
            key: value
            for key, value in request.meta.items()
            if key.startswith(("body_file", "download_", "handle_httpstatus", "allow_offsite"))
        }
        meta.pop("body_file_split", None)
        meta.update(
            body_file_range=[segment[0] + segment[2], segment[1]],
            body_file_validator=state.validator,
            body_file_shared_state=state,
        )
        headers = {"Accept-Encoding": "identity"}
        return Request(state.url, callback=NO_CALLBACK, headers=headers, meta=meta, dont_filter=True)

    async def file_downloaded(
        self, response: Response, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None
    ) -> str:
        path = self.file_path(request, response=response, info=info, item=item)
        expected = self._expected(item, header_digests(response.headers))
        if self.fs is None:  # s3://, gs://, ftp://: Scrapy's way, with our checksum
            if problems := list(mismatches(expected, digests_of(response.body, expected))):
                raise ChecksumError("checksum mismatch: " + "; ".join(problems))
            await ensure_awaitable(self.store.persist_file(path, BytesIO(response.body), info))
            return hashlib.sha256(response.body).hexdigest()
        # Scrapy would hash the body in the reactor thread, then the store again: once, in a thread.
        return await maybe_deferred_to_future(self.fs.persist_verified(path, BytesIO(response.body), expected))

    def media_failed(self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo) -> Any:
        # Not super(): its warning says "unknown-error"; _outcome() logs the real reason once.
        if isinstance(failure.value, DiskError) and self.fs is not None:
            self.fs.discard(Path(request.meta["body_file"]))  # a full disk: give the space back
        if isinstance(failure.value, IgnoreRequest):
            raise _MediaRequestFiltered(str(failure.value)) from failure.value
        raise FileException(reason(failure.value)) from failure.value

    async def _check_media_to_download(self, request: Request, info: MediaPipeline.SpiderInfo, item: Any) -> FileInfo:
        # A failed file is a result, not an exception: Scrapy would log a traceback for
        # it and drop it from the item; here it stays there with its reason.
        if self.streams:
            self._stream_to_partial(request, item)
        try:
            if (resumed := await self._resume_ranges(request, info, item)) is not None:
                return resumed
            try:
                return await super()._check_media_to_download(request, info, item)
            except FileException as exc:
                if not isinstance(exc.__cause__, ChecksumError):
                    raise
                # Corrupted on the way, or a stale copy on a mirror: once more, from scratch.
                logger.warning("%s: %s, fetched again", request.url, exc.__cause__, extra={"spider": info.spider})
                return await super()._check_media_to_download(request, info, item)
        except FileException as exc:
            # IgnoreRequest is policy (offsite, robots.txt) but also a redirect loop: a failure
            policy = isinstance(exc, _MediaRequestFiltered) and "redirect" not in str(exc).lower()
            status = "filtered" if policy else "failed"
            if "body_file" in request.meta:
                # What it has so far stays for the next run, even if nothing came this time.
                self.unfinished.add(Path(request.meta["body_file"]))
            return self._outcome(request.url, item, status, str(exc), info)

    async def _resume_ranges(self, request: Request, info: MediaPipeline.SpiderInfo, item: Any) -> FileInfo | None:
        """A file an earlier run fetched in ranges, and left unfinished: only its missing ranges."""
        # (a small read of a file that is seldom there: not worth a thread)
        resumable = request.meta.get("body_file_resumable")
        state = PartialState.load(Path(request.meta["body_file_state"])) if resumable else None
        if state is None or not state.segments or not state.validator:
            return None
        self._modify_media_request(request)
        result = BodyResult(state.length, {}, state)
        try:
            response = Response(state.url, flags=["streamed", "segment"], request=request)
            request.meta["body_file_result"] = result
            return await self._streamed(response, request, info, item)
        except _RangesRefused:
            return None  # another version: fetched whole, now
        except FileException:
            raise
        except Exception:
            self.media_failed(Failure(), request, info)  # type: ignore[no-untyped-call]  # raises
            raise

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
        # Scrapy keeps every file's result for the whole crawl, to answer a URL asked for twice
        # (scrapy/scrapy#939): memory that grows with the mirror. A URL asked for again later
        # is found in the store instead.
        for url in urls:
            request = Request(url, callback=NO_CALLBACK, meta={"draw": field(item, "draw")})
            info.downloaded.pop(self._fingerprinter.fingerprint(request), None)
        return item

    def _outcome(self, url: str, item: Any, status: str, reason: str, info: MediaPipeline.SpiderInfo) -> FileInfo:
        self.inc_stats(status)
        log = logger.info if status == "filtered" else logger.error
        log("File %s: %s (%s)", status, url, reason, extra={"spider": info.spider})
        path = self.file_path(Request(url), item=item)
        return cast("FileInfo", {"url": url, "path": path, "checksum": None, "status": status, "reason": reason})
