"""Scrapy's HTTP/1.1 download handler, writing file bodies to disk as they arrive.

The shape of upstream's open ``body_file`` request meta key (scrapy/scrapy#7987): a
request whose meta has ``body_file`` (a path) gets its body written there and an empty
``response.body``. Pages have no such key and stay in memory, as in Scrapy. On top:

- A body of a file request is streamed when it is worth it: at least ``STREAM_MIN``
  bytes, or of unknown length, or the rest of a file. A smaller one is read into memory
  as Scrapy does, and the pipeline writes it in one go.
- Resume: when ``body_file_resumable`` is set, the partial file has data and
  ``body_file_state`` says which version of the file it holds, the request asks for the rest (``Range``) of that version only
  (``If-Range``). 206 appends; 200 (another version, or no range support) starts over.
  Every retry of a cut download resumes the same way.
- Parallel ranges: with ``body_file_split = (threshold, parts)``, a body of at least
  ``threshold`` bytes from a server that accepts ranges is cut into ranges of
  ``threshold / parts`` bytes;
  this response writes the first one and stops, the pipeline asks for the others
  (``body_file_range``), each a request of its own through the downloader, so each
  counts against the per-host limit.
- ``DOWNLOAD_TIMEOUT`` bounds a streamed body's silences, not its length: a 3 GiB file
  may take minutes, a connection that sends nothing for that long still fails.

The result is in ``request.meta["body_file_result"]`` (a ``BodyResult``).
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any, cast

from scrapy import signals
from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler, _ScrapyAgent
from scrapy.exceptions import DownloadCancelledError, ResponseDataLossError
from scrapy.utils._download_handlers import get_maxsize_msg, wrap_twisted_exceptions
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from xkcdcrawl.bodyfile import HIGH_WATER, BodyFile, DiskError, DiskWriter, PartialState
from xkcdcrawl.checksums import header_digests
from xkcdcrawl.extensions.progress import is_file_request
from xkcdcrawl.outcomes import Interrupted

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.web.client import Response as TxResponse

# Smaller bodies are read into memory and written in one go.
STREAM_MIN = 1 << 20
# Bytes a socket read of a streamed body asks for (Twisted: 64 KiB).
READ_SIZE = 1 << 18
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class RangeRefused(Exception):
    """A server that answered a range request with something else than that range."""


@dataclass
class BodyResult:
    """What a streamed response wrote into the partial file."""

    # The whole file's, when the server said it.
    length: int | None
    # {algorithm: hex} of the whole file, when this response wrote all of it from 0.
    digests: dict[str, str]
    # The file's resume record (with its ranges, when split).
    state: PartialState | None
    # What the server's digest headers say.
    expected: dict[str, str] = field(default_factory=dict)


def validator(headers: Any) -> str | None:
    """What If-Range may name: a strong ETag, else Last-Modified."""
    etag = (headers.get(b"ETag") or b"").decode("latin-1").strip()
    if etag and not etag.startswith("W/"):
        return etag
    modified = (headers.get(b"Last-Modified") or b"").decode("latin-1").strip()
    return modified or None


def content_range(value: bytes | None) -> tuple[int, int, int | None] | None:
    """(first, last, full length) of a Content-Range header."""
    match = _CONTENT_RANGE.fullmatch((value or b"").decode("latin-1").strip())
    if match is None:
        return None
    total = match[3]
    return int(match[1]), int(match[2]), None if total == "*" else int(total)


def resume_from(request: Request) -> None:
    """Ask for the rest of the partial file (Range + If-Range), or for the whole file."""
    request.headers.pop(b"Range", None)
    request.headers.pop(b"If-Range", None)
    if (span := request.meta.get("body_file_range")) is not None:
        request.headers[b"Range"] = f"bytes={span[0]}-{span[1]}".encode()
        if request.meta.get("body_file_validator"):
            request.headers[b"If-Range"] = request.meta["body_file_validator"].encode("latin-1")
        return
    state_path = request.meta.get("body_file_state")
    if not state_path or not request.meta.get("body_file_resumable"):
        # No partial file to look for: no system call for it in the reactor thread.
        return
    try:
        size = Path(request.meta["body_file"]).stat().st_size
    except OSError:
        return
    state = PartialState.load(Path(state_path))
    if not size or state is None or state.segments or not state.validator or state.url != request.url:
        return
    if state.length is not None and size >= state.length:
        # A partial file as long as the file: killed before its rename, fetched again.
        return
    request.headers[b"Range"] = f"bytes={size}-".encode()
    request.headers[b"If-Range"] = state.validator.encode("latin-1")


class StreamingDownloadHandler(HTTP11DownloadHandler):
    """HTTP11DownloadHandler that writes the bodies of file requests to their partial file."""

    def __init__(self, crawler: Crawler):
        super().__init__(crawler)
        from twisted.internet import reactor

        self.writer = DiskWriter(reactor.callFromThread)

    async def download_request(self, request: Request) -> Response:
        if not self._crawler.crawling and is_file_request(request):
            # Ctrl-C: the transfers under way finish, the files still queued are not begun
            # (their partial files stay for the next run). Scrapy would send every one of them.
            raise Interrupted("not fetched: the run was stopped")
        if "body_file" not in request.meta:
            return await super().download_request(request)
        resume_from(request)
        agent = _StreamingAgent(
            writer=self.writer,
            contextFactory=self._contextFactory,
            bindAddress=self._bind_address,
            pool=self._pool,
            maxsize=self._default_maxsize,
            warnsize=self._default_warnsize,
            fail_on_dataloss=self._fail_on_dataloss,
            crawler=self._crawler,
            tls_verbose_logging=self._tls_verbose_logging,
        )
        with wrap_twisted_exceptions():
            return await maybe_deferred_to_future(agent.download_request(request))

    async def close(self) -> None:
        await super().close()
        self.writer.stop()


class _StreamingAgent(_ScrapyAgent):
    def __init__(self, *, writer: DiskWriter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._writer = writer

    def _cb_bodyready(self, txresponse: TxResponse, request: Request) -> Any:
        status = int(txresponse.code)
        span = request.meta.get("body_file_range")
        if span is not None and status == 200:
            self._abort(txresponse)
            raise RangeRefused(f"HTTP {status} to a range request")
        length = None if txresponse.length == UNKNOWN_LENGTH else cast("int", txresponse.length)
        ranged = b"Range" in request.headers
        if txresponse.headers.hasHeader(b"Content-Encoding"):
            # Compressed in spite of Accept-Encoding: identity: decompressed in memory by
            # HttpCompressionMiddleware, so within the pages' DOWNLOAD_MAXSIZE.
            request.meta["download_maxsize"] = self._maxsize
            return super()._cb_bodyready(txresponse, request)
        small = length is not None and length < STREAM_MIN
        if status not in (200, 206) or (status == 206 and not ranged) or (small and not ranged):
            return super()._cb_bodyready(txresponse, request)
        headers = self._headers_from_twisted_response(txresponse)
        start, total = 0, length
        if status == 206:
            found = content_range(headers.get(b"Content-Range"))
            asked = span[0] if span is not None else int((request.headers[b"Range"] or b"")[6:].split(b"-")[0])
            if found is None or found[0] != asked:
                self._abort(txresponse)
                raise RangeRefused(f"Content-Range {headers.get(b'Content-Range')!r} for bytes from {asked}")
            start, total = found[0], found[2]
        maxsize = request.meta.get("download_maxsize", 0)
        if maxsize and total is not None and total > maxsize:
            message = get_maxsize_msg(total, maxsize, request, expected=True)
            self._abort(txresponse)
            raise DownloadCancelledError(message)
        body, limit = self._body_file(request, headers, status, start, total)
        finished: Deferred[Any] = Deferred(lambda _: self._abort(txresponse))
        reader = _BodyFileReader(finished, txresponse, request, body, limit, self)
        # Big reads for a big body: a quarter as many trips through Twisted and the reader.
        txresponse._transport._producer.bufferSize = READ_SIZE
        txresponse.deliverBody(reader)  # type: ignore[no-untyped-call]
        self._txresponse = txresponse
        return finished

    def _body_file(
        self, request: Request, headers: Any, status: int, start: int, total: int | None
    ) -> tuple[BodyFile, int | None]:
        """The partial file this response writes, and how many bytes of the body go there."""
        path = Path(request.meta["body_file"])
        state_path = request.meta.get("body_file_state")
        shared: PartialState | None = request.meta.get("body_file_shared_state")
        span = request.meta.get("body_file_range")
        if span is not None:
            # One range of a split file: into its place, recorded in the file's shared state.
            body = BodyFile(path, start, truncate=False)
            if shared is not None and state_path:
                segment = next(s for s in shared.segments if s[0] <= start <= s[1])
                body.state, body.state_path, body.segment = shared, Path(state_path), segment
            request.meta["body_file_result"] = BodyResult(total, {}, shared, header_digests(headers))
            return body, span[1] - start + 1
        expected = header_digests(headers)
        # Hashed on the way when written from its first byte: sha256, and what the server publishes.
        algorithms = ("sha256", *(a for a in expected if a != "sha256")) if status == 200 else ()
        body = BodyFile(path, start, truncate=status == 200, algorithms=algorithms)
        state = PartialState(request.url, validator(headers), total)
        limit = None
        split = request.meta.get("body_file_split")
        ranges = (headers.get(b"Accept-Ranges") or b"").strip().lower() == b"bytes"
        if status == 200 and split and total is not None and total >= split[0] and state.validator and ranges:
            # Ranges of threshold / parts bytes: a file at the threshold is fetched `parts` at once,
            # a bigger one in more ranges, still `parts` at a time (the pipeline), in file order.
            size = math.ceil(split[0] / split[1])
            state.segments = [[a, min(total, a + size) - 1, 0] for a in range(0, total, size)]
            body.hashers = {}
            body.state, body.segment = state, state.segments[0]
            body.state_path = Path(state_path) if state_path else None
            limit = size
        if state_path:
            state.save(Path(state_path))
            # For its retries.
            request.meta["body_file_resumable"] = True
        request.meta["body_file_result"] = BodyResult(total, {}, state, expected)
        return body, limit

    @staticmethod
    def _abort(txresponse: TxResponse) -> None:
        txresponse._transport._producer.abortConnection()

    def keep_alive(self, request: Request) -> None:
        """Push the download timeout back: a streamed body fails on silence, not length."""
        timeout = request.meta.get("download_timeout") or self._connectTimeout
        call = getattr(self, "_timeout_cl", None)
        if call is not None and call.active():
            call.reset(timeout)


class _BodyFileReader(Protocol):
    """Hands each chunk of a body to the writer thread; ends when it has written them all."""

    def __init__(
        self,
        finished: Deferred[Any],
        txresponse: TxResponse,
        request: Request,
        body: BodyFile,
        limit: int | None,
        agent: _StreamingAgent,
    ) -> None:
        self._finished = finished
        self._txresponse = txresponse
        self._request = request
        self._body = body
        self._limit = limit
        self._agent = agent
        self._writer = agent._writer
        self._crawler = agent._crawler
        self._done = False
        self._kept_alive = monotonic()

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        assert self.transport is not None
        if self._body.error is not None:
            self.transport.stopProducing()
            self._end(DiskError(self._body.error))
            return
        full = False
        if self._limit is not None and len(data) >= self._limit - self._body.queued:
            data, full = data[: self._limit - self._body.queued], True
        self._writer.write(self._body, data)
        self._crawler.signals.send_catch_log(
            signal=signals.bytes_received, data=data, request=self._request, spider=self._crawler.spider
        )
        if (now := monotonic()) - self._kept_alive > 1:
            self._kept_alive = now
            self._agent.keep_alive(self._request)
        if full:
            # The first range of a split file: the others come on connections of their own.
            # Closed at once, before they are asked for, so that the server never sees more
            # requests at a time than the per-host limit.
            self._agent._abort(self._txresponse)
            self._end(None, ["segment"])
        elif self._writer.backlog > HIGH_WATER:
            self.transport.pauseProducing()
            self._writer.pause_until_drained(self.transport.resumeProducing)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done:
            return
        if isinstance(reason.value, ResponseDone):
            self._end(None)
        elif isinstance(reason.value, PotentialDataLoss):
            self._end(None, ["partial"])
        elif not self._request.meta.get("download_fail_on_dataloss", self._agent._fail_on_dataloss):
            self._end(None, ["dataloss"])
        else:
            # What arrived stays in the partial file: the retry asks for the rest.
            error = ResponseDataLossError()
            error.__cause__ = reason.value
            self._end(error)

    def _end(self, error: Exception | None, flags: list[str] | None = None) -> None:
        """Once the writer thread has written (and closed) all of it, fire the download."""
        self._done = True
        # The connection may serve small answers next: back to Twisted's read size.
        with contextlib.suppress(AttributeError):
            del self._txresponse._transport._producer.bufferSize

        def written() -> None:
            if self._finished.called:
                # Cancelled meanwhile (the download timeout).
                return
            if error is None and self._body.error is not None:
                self._finished.errback(DiskError(self._body.error))
            elif error is not None:
                self._finished.errback(error)
            else:
                result: BodyResult = self._request.meta["body_file_result"]
                result.digests = self._body.digests
                self._finished.callback(
                    {"txresponse": self._txresponse, "body": b"", "flags": ["streamed", *(flags or [])]}
                )

        self._writer.close(self._body, written)
