"""The one files pipeline: real file names, atomic writes, every outcome reported."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from email.utils import formatdate
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from scrapy.http import Response
from scrapy.http.request import NO_CALLBACK, Request
from scrapy.pipelines.files import FilesPipeline, FilesStoreProtocol
from scrapy.pipelines.media import FileException
from scrapy.utils.defer import ensure_awaitable, maybe_deferred_to_future
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

from xkcdcrawl.archive import ledger
from xkcdcrawl.bodyfile import DiskError, PartialState
from xkcdcrawl.checksums import ChecksumError, check, header_digests
from xkcdcrawl.handlers import BodyResult, RangeRefused
from xkcdcrawl.listing_parse import size_range
from xkcdcrawl.naming import FileNames, field, set_field
from xkcdcrawl.outcomes import (
    CACHED,
    DOWNLOADED,
    EXPECTED_FILES,
    FAILED,
    INTERRUPTED,
    UPDATED,
    UPTODATE,
    reason,
    status_of,
)
from xkcdcrawl.s3store import StreamingS3FilesStore, configure
from xkcdcrawl.stores import AtomicFSFilesStore, IncompleteFileError, Origin, digests_of, hash_range

if TYPE_CHECKING:
    from scrapy.pipelines.files import StatInfo
    from scrapy.pipelines.media import FileInfo, FileInfoOrError, MediaPipeline
    from scrapy.settings import BaseSettings

logger = logging.getLogger(__name__)

# Why a stored file is fetched again, beside a change the listing shows.
EXPIRED = "expired"
REVALIDATE = "revalidate"
# The response headers kept with a stored file (xkcdcrawl.stores.Origin), by the name kept under.
ORIGIN_HEADERS = (("etag", b"ETag"), ("last_modified", b"Last-Modified"))


def conditional_headers(origin: Origin, stat: StatInfo) -> dict[str, str]:
    """wget -N's question: the stored version's ETag, and since when it is stored (Last-Modified, else its mtime)."""
    headers = {"If-Modified-Since": origin.get("last_modified") or formatdate(stat["last_modified"], usegmt=True)}
    if etag := origin.get("etag"):
        headers["If-None-Match"] = etag
    return headers


def _hash_range(path: Path, first: int, last: int, hashers: dict[str, Any]) -> None:
    with path.open("rb") as f:
        hash_range(f, hashers, first, last)


def _uptodate(url: str, path: str, stat: StatInfo) -> FileInfo:
    """The outcome of a file the store has, as the server has it."""
    info = {"url": url, "path": path, "checksum": stat.get("checksum"), "status": UPTODATE, "size": stat.get("size")}
    return cast("FileInfo", info)


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
        # An s3:// store needs its local work folder too.
        configure(settings)

    def file_path(
        self,
        request: Request,
        response: Response | None = None,
        info: MediaPipeline.SpiderInfo | None = None,
        *,
        item: Any = None,
    ) -> str:
        return self.names.path(request, item)

    def open_spider(self, spider: Any = None) -> None:
        super().open_spider()
        self.names = FileNames(ledger(self.crawler, "names"))
        # id(item) -> the fingerprints of its file requests, until the item is done.
        self.fingerprints: dict[int, list[bytes]] = {}
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
        self.revalidate = settings.getbool("XKCDCRAWL_REVALIDATE")
        # Enough to keep every connection busy, twice over.
        self.admitted = asyncio.Semaphore(2 * max(settings.getint("CONCURRENT_REQUESTS"), 1))
        self.started = time.time()
        # Partial files of failed files, kept for the next run.
        self.unfinished: set[Path] = set()
        # Left by earlier runs.
        self.resumable = self.fs.resumable() if self.fs is not None else set()

    def close_spider(self, spider: Any = None) -> None:
        self.names.book.close()
        if self.fs is not None:
            # Nothing of this run, or of the runs it resumed, stays but what the next one resumes.
            self.fs.sweep(self.started, self.unfinished)

    async def process_item(self, item: Any, spider: Any = None) -> Any:
        # A re-run of a big mirror finds most files stored: answered here, without the media
        # pipeline's requests, fingerprints and waits for each (half a re-run's CPU).
        if (files := self._all_stored(item)) is not None:
            self.crawler.stats.inc_value(EXPECTED_FILES, len(files))
            for _ in files:
                self.inc_stats("uptodate")
            set_field(item, self.files_result_field, files)
            return item
        # Items are let into the media pipeline's machinery (requests, waits, results) a few
        # at a time: Scrapy takes CONCURRENT_ITEMS from every page at once, and a listing's
        # pages come all together.
        async with self.admitted:
            return await super().process_item(item)

    def _all_stored(self, item: Any) -> list[FileInfo] | None:
        """The outcomes of an item whose files are all stored (and not expired), else None."""
        if self.fs is None:
            return None
        files: list[FileInfo] = []
        for url in field(item, self.files_urls_field) or []:
            path = self.names.path_of(url, item)
            stat = self.fs.stat_now(path)
            if not stat or self._changed(path, stat, item) is not None:
                return None
            files.append(_uptodate(url, path, stat))
        return files

    # (MediaPipeline awaits whatever this returns: a coroutine, not only a Deferred)
    async def media_to_download(  # type: ignore[override]
        self, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None
    ) -> FileInfo | None:
        """The outcome of a file stored and still current (uptodate), else None: it is fetched."""
        path = self.file_path(request, info=info, item=item)
        try:
            stat = cast("StatInfo", await ensure_awaitable(self.store.stat_file(path, info)))
        except Exception as error:
            logger.warning("%s: cannot look at the stored %s (%s)", request.url, path, reason(error))
            return None
        if not stat:
            return None
        if (why := self._changed(path, stat, item)) is not None:
            if why == REVALIDATE:
                assert self.fs is not None
                request.headers.update(conditional_headers(self.fs.origin(path), stat))
            elif why != EXPIRED:
                logger.info("Changed on the server: %s (%s), fetched again", request.url, why)
            # Fetched again: it replaces the stored version, atomically, and is counted updated.
            request.meta["replaces"] = stat.get("checksum")
            request.meta["replaces_size"] = stat.get("size")
            return None
        self.inc_stats(UPTODATE)
        return _uptodate(request.url, path, stat)

    def _changed(self, path: str, stat: StatInfo, item: Any) -> str | None:
        """Why a stored file may not be what the server has now; None: it is.

        Older than FILES_EXPIRES days; another size in the listing, or another date than the
        listing showed when it was stored; or, for sources that show neither, XKCDCRAWL_REVALIDATE:
        the server is asked (If-None-Match, If-Modified-Since).
        """
        listed: dict[str, str] = field(item, "listed") or {}
        # A gs:// or ftp:// store gives no size: there only the age tells.
        size = cast("int | None", stat.get("size"))
        if not stat.get("last_modified") or time.time() - stat["last_modified"] > self.expires * 86400:
            return EXPIRED
        if size is not None and (bounds := size_range(listed.get("size", ""))) and not bounds[0] <= size <= bounds[1]:
            return f"listed as {listed['size']}, stored {size} bytes"
        if self.fs is not None and (date := listed.get("date")):
            origin = self.fs.origin(path)
            if origin.get("listed") is None:
                # Stored before its date was recorded: from now on its date tells.
                self.fs.remember_origin(path, {**origin, "listed": date})
            elif origin["listed"] != date:
                return f"listed as of {date}, stored as of {origin['listed']}"
        if self.revalidate and not listed and self.fs is not None:
            return REVALIDATE
        return None

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        urls = field(item, self.files_urls_field) or []
        # Repeats of one URL: xkcdcrawl.fingerprint keeps them apart.
        draw = field(item, "draw")
        # The progress bar's total.
        self.crawler.stats.inc_value(EXPECTED_FILES, len(urls))
        # A listed file is fetched wherever its redirects lead: the start host bounds pages only.
        meta = {"draw": draw, "allow_offsite": True} if draw else {"allow_offsite": True}
        requests = [Request(url, callback=NO_CALLBACK, meta=meta) for url in urls]
        # What item_completed() forgets: the fingerprints Scrapy keeps the results under.
        self.fingerprints[id(item)] = [self._fingerprinter.fingerprint(request) for request in requests]
        return requests

    def _stream_to_partial(self, request: Request, item: Any) -> None:
        """Mark a file request so that StreamingDownloadHandler writes its body to its partial file."""
        assert self.fs is not None
        part, state = self.fs.partial_for(self.file_path(request, item=item))
        request.meta.update(
            body_file=str(part),
            body_file_state=str(state),
            body_file_resumable=state.name in self.resumable,
            body_file_split=self.split,
            # DOWNLOAD_MAXSIZE caps pages, not files.
            download_maxsize=self.files_maxsize,
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
            # The next try starts over.
            self.fs.discard(Path(request.meta["body_file"]))
        if response.status == 304 and "replaces" in request.meta:
            # Asked with If-None-Match / If-Modified-Since: the stored file is the server's.
            self.inc_stats(UPTODATE)
            path = self.file_path(request, item=item)
            stored = {"checksum": request.meta["replaces"], "size": request.meta.get("replaces_size")}
            return _uptodate(request.url, path, cast("StatInfo", stored))
        # Scrapy's message says only "download-error".
        if response.status != 200:
            raise FileException(f"HTTP {response.status}")
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and len(response.body) < int(length):
            # (decompression only makes bodies longer: shorter is always a cut)
            raise FileException(f"short body: {len(response.body)} of {int(length)} bytes")
        # Not super(): it refuses empty files, which a mirror must keep.
        status = CACHED if "cached" in response.flags else self._new_status(request)
        path = self.names.choose(request, response, item)
        expected = self._expected(item, header_digests(response.headers))
        checksum = await self.file_downloaded(response, request, info, item=item, expected=expected)
        self.inc_stats(status)
        return self._stored(request, path, checksum, status, expected, len(response.body))

    def _expected(self, item: Any, published: dict[str, str]) -> dict[str, str]:
        """What the file must be: the listing's checksum files, then the server's digest headers."""
        return {**published, **(field(item, "digests") or {})}

    def _stored(
        self, request: Request, path: str, checksum: str, status: str, verified: dict[str, str], size: int | None
    ) -> FileInfo:
        info: dict[str, Any] = {"url": request.url, "path": path, "checksum": checksum, "status": status}
        if size is not None:
            # Its bytes, as stored: the run report counts them without a look at the store.
            info["size"] = size
        if verified:
            # Checked against what the server published.
            info["verified"] = sorted(verified)
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
        path = self.names.choose(request, response, item)
        assert self.fs is not None
        try:
            checksum = await maybe_deferred_to_future(
                self.fs.finalize(part, path, result.length, digests, expected, self._origin(response, item))
            )
        except IncompleteFileError as error:
            raise FileException(str(error)) from None
        status = self._new_status(request)
        self.inc_stats(status)
        return self._stored(request, path, checksum, status, expected, result.length)

    @staticmethod
    def _new_status(request: Request) -> str:
        """downloaded, or updated when it replaced a stored version."""
        return UPDATED if "replaces" in request.meta else DOWNLOADED

    @staticmethod
    def _origin(response: Response, item: Any) -> Origin:
        """What the server says of this version: kept with the file, to tell when it changes."""
        origin = {name: value.decode("latin-1") for name, key in ORIGIN_HEADERS if (value := response.headers.get(key))}
        if date := (field(item, "listed") or {}).get("date"):
            origin["listed"] = date
        return origin

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
                # On disk already (the first range, or a resumed file's).
                return None
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
        self,
        response: Response,
        request: Request,
        info: MediaPipeline.SpiderInfo,
        *,
        item: Any = None,
        expected: dict[str, str] | None = None,
    ) -> str:
        path = self.file_path(request, response=response, info=info, item=item)
        if expected is None:
            expected = self._expected(item, header_digests(response.headers))
        # gs:// and ftp:// stores: Scrapy's way, with our checksum.
        if self.fs is None:
            check(expected, digests_of(response.body, expected))
            await ensure_awaitable(self.store.persist_file(path, BytesIO(response.body), info))
            return hashlib.sha256(response.body).hexdigest()
        # Scrapy would hash the body in the reactor thread, then the store again: once, in a thread.
        origin = self._origin(response, item)
        return await maybe_deferred_to_future(self.fs.persist_verified(path, BytesIO(response.body), expected, origin))

    def media_failed(self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo) -> Any:
        # Not super(): its warning says "unknown-error"; _outcome() logs the real reason once.
        if isinstance(failure.value, DiskError) and self.fs is not None:
            # A full disk: give the space back.
            self.fs.discard(Path(request.meta["body_file"]))
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
            # Filtered only when a policy source refused it (outcomes.POLICY): anything else failed.
            status = status_of(exc.__cause__)
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
            # Another version: fetched whole, now.
            return None
        except FileException:
            raise
        except Exception:
            self.media_failed(Failure(), request, info)  # type: ignore[no-untyped-call]  # raises
            raise

    def item_completed(self, results: list[FileInfoOrError], item: Any, info: MediaPipeline.SpiderInfo) -> Any:
        urls = field(item, self.files_urls_field) or []
        files: list[FileInfo] = []
        for url, (_, result) in zip(urls, results, strict=True):
            # An error outside the download itself.
            if isinstance(result, Failure):
                files.append(self._outcome(url, item, "failed", reason(result.value), info))
            else:
                files.append(result)
        set_field(item, self.files_result_field, files)
        # Scrapy keeps every file's result for the whole crawl, to answer a URL asked for twice
        # (scrapy/scrapy#939): memory that grows with the mirror. A URL asked for again later
        # is found in the store instead.
        for fingerprint in self.fingerprints.pop(id(item), ()):
            info.downloaded.pop(fingerprint, None)
        return item

    def _outcome(self, url: str, item: Any, status: str, reason: str, info: MediaPipeline.SpiderInfo) -> FileInfo:
        self.inc_stats(status)
        log = {FAILED: logger.error, INTERRUPTED: logger.debug}.get(status, logger.info)
        log("File %s: %s (%s)", status, url, reason, extra={"spider": info.spider})
        path = self.file_path(Request(url), item=item)
        return cast("FileInfo", {"url": url, "path": path, "checksum": None, "status": status, "reason": reason})
