"""Fault-injecting HTTP/1.1 server on 127.0.0.1 for end-to-end crawl tests.

Standard library only.  One thread per connection (``socketserver``), so
slow routes really overlap and ``max_in_flight`` measures the client's
concurrency, not ours.  The behaviour is chosen by the path, so one server
can serve every case of a crawl:

======================================  =======================================
``/ok/<name>?size=N``                   200, ``file_body(name, N)`` (N=1000)
``/slow/<name>?delay=S``                sleep S before the status line, then ok
``/slowbody/<name>?delay=S``            headers, sleep S, then the body
``/reset/<name>?after=K&times=T``       full Content-Length, K bytes, then RST
``/short/<name>?after=K&times=T``       full Content-Length, K bytes, clean FIN
``/status/<code>/<name>?times=T``       that status T times, then ok
``/429/<name>?retry_after=S&date=0|1``  429 + Retry-After (seconds/HTTP-date)
``/redirect/<code>/<name>``             3xx to ``/ok/<name>`` (query kept)
``/loop/<name>``                        302 to itself, forever
``/redirect-chain/<n>/<name>``          n hops, then the file
``/disposition/<name>?filename=X``      ok + Content-Disposition naming X
``/random/<w>/<h>``                     a different random PNG every time
``/same/<w>/<h>``                       the same PNG every time
``/range/<name>?version=V&rate=B&cut=K``  Range/If-Range/ETag, throttled, cut after K;
                                        ``digest=sha256|md5|bad``: a digest header
anything else, ``/robots.txt``          404
======================================  =======================================

``times=T`` (fault routes): the first T requests to that path (query string
ignored) get the fault, later ones the file; without ``times`` the fault is
permanent.  With ``group=G`` the T faults are shared by every path that names
group G: the first T requests among them get the fault, whichever they are.  ``size=N`` works on every file route; ``after`` defaults to half
the body.  ``<name>`` is the percent-decoded rest of the path and is what
``file_body`` is keyed on (for ``/disposition`` too, not ``filename``).

Accounting: ``hits`` is keyed by the raw path without query; ``log`` holds
``(time.monotonic(), method, raw request target with query)``.  A request is
in flight from the moment its request line is read until just before its
final byte (or the RST/FIN that ends a broken one) is written, so a client
that has its response can never observe it still counted.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import functools
import hashlib
import http.server
import io
import mimetypes
import os
import select
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from types import TracebackType
from typing import cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

try:  # Unix only; used to wait for the send queue to drain before an RST
    import fcntl
    import termios

    _SIOCOUTQ: int | None = termios.TIOCOUTQ  # same number as SIOCOUTQ
except (ImportError, AttributeError):
    _SIOCOUTQ = None

__all__ = ["FaultServer", "file_body", "make_png", "same_png"]

DEFAULT_SIZE = 1000
MAX_IMAGE_SIDE = 2000
# Handler threads give up on an idle keep-alive connection after this long, so
# a client that forgets its pool cannot pin threads for the whole session.
IDLE_TIMEOUT = 30.0
# Built-in table only: the system's /etc/mime.types differs between machines.
_MIME = mimetypes.MimeTypes()


@functools.lru_cache(maxsize=64)
def file_body(name: str, size: int = DEFAULT_SIZE) -> bytes:
    """Deterministic bytes served for ``name``.

    Counter-mode sha256 instead of one repeated digest: a 32-byte period
    would hide off-by-a-block errors when a test compares bytes on disk.
    """
    blocks = -(-size // 32)
    data = b"".join(hashlib.sha256(f"{name}\0{i}".encode()).digest() for i in range(blocks))
    return data[:size]


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def make_png(width: int, height: int, rgb: bytes) -> bytes:
    """A valid 8-bit RGB PNG from ``width * height * 3`` pixel bytes."""
    stride = width * 3
    if len(rgb) != stride * height:
        raise ValueError("pixel data does not match the size")
    # Each scanline starts with filter type 0 (None).
    raw = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=16)
def same_png(width: int, height: int) -> bytes:
    """The PNG that ``/same/<w>/<h>`` serves."""
    return make_png(width, height, file_body(f"same-{width}x{height}", width * height * 3))


def random_png(width: int, height: int) -> bytes:
    return make_png(width, height, os.urandom(width * height * 3))


def content_type_for(name: str) -> str:
    guessed, _ = _MIME.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def content_disposition(filename: str) -> str:
    """``attachment`` header value, RFC 6266 style, for any file name."""
    # Strip CR/LF so a hostile test name cannot split the header.
    filename = filename.replace("\r", "").replace("\n", "")
    fallback = "".join(c if c.isascii() and c.isprintable() else "_" for c in filename)
    quoted = fallback.replace("\\", "\\\\").replace('"', '\\"')
    value = f'attachment; filename="{quoted}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


class BadRequest(ValueError):
    """A route parameter could not be parsed; answered with 400."""


@dataclass
class Request:
    method: str
    path: str  # raw path without the query string; the key of hits/times
    parts: list[str]  # raw path segments after the route segment
    query: dict[str, str]
    count: int  # how many requests this path has received, this one included

    @property
    def name(self) -> str:
        return unquote("/".join(self.parts))

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.query.get(key, default))
        except ValueError as exc:
            raise BadRequest(f"{key} must be a number") from exc

    def integer(self, key: str, default: int) -> int:
        try:
            return int(self.query.get(key, default))
        except ValueError as exc:
            raise BadRequest(f"{key} must be an integer") from exc

    @property
    def size(self) -> int:
        return max(0, self.integer("size", DEFAULT_SIZE))

    def faulty(self) -> bool:
        """True while this path is still within its ``times`` faults."""
        if "times" not in self.query:
            return True
        return self.count <= self.integer("times", 0)


def _segment_int(parts: list[str], index: int, what: str) -> int:
    try:
        return int(parts[index])
    except (IndexError, ValueError) as exc:
        raise BadRequest(f"missing or bad {what}") from exc


def _wait_until_sent(sock: socket.socket, timeout: float = 2.0) -> None:
    """Wait until the kernel has no unacknowledged bytes for ``sock``.

    A close with SO_LINGER 0 discards whatever is still queued, so without
    this the client might never see the K bytes the route promises.
    """
    if _SIOCOUTQ is None:
        time.sleep(0.1)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0" * 4))
        except OSError:
            return
        if queued[0] == 0:
            return
        time.sleep(0.002)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive on; every answer has a length
    timeout = IDLE_TIMEOUT
    server_version = "FaultServer/1"

    _counted = False  # between request line and (nearly) last byte
    _head_pending = False  # start() ran, headers not yet written

    @property
    def owner(self) -> FaultServer:
        return cast("_TCPServer", self.server).owner

    # -- accounting -------------------------------------------------------

    def handle_one_request(self) -> None:
        self._counted = False
        try:
            super().handle_one_request()
        finally:
            # Normally done() already ran just before the last byte; this
            # covers stdlib error replies and clients that hung up.
            self.done()

    def parse_request(self) -> bool:
        # Called right after the request line has been read, which is where
        # a request starts being "in flight".
        self.owner._enter()
        self._counted = True
        ok = super().parse_request()
        if ok:
            self._request = self.owner._record(self.command, self.path)
        return ok

    def done(self) -> None:
        """Stop counting this request as in flight (idempotent)."""
        if self._counted:
            self._counted = False
            self.owner._leave()

    def log_message(self, fmt: str, *args: object) -> None:
        pass  # per-request lines on stderr would drown pytest's output

    # -- methods ------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        request = self._request
        route = ROUTES.get(request.path.split("/")[1], _not_found)
        try:
            route(self, request)
        except BadRequest as exc:
            self.send_plain(400, str(exc))

    # -- response helpers ---------------------------------------------------

    def start(self, status: int, headers: dict[str, str]) -> None:
        """Status line and headers, buffered until finish() or flush_head()."""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self._head_pending = True

    def flush_head(self) -> None:
        self.end_headers()
        self._head_pending = False

    def send_body(self, data: bytes) -> None:
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def finish_with(self, body: bytes) -> None:
        """Send the buffered head (if any) and ``body`` as the final bytes."""
        if self.command == "HEAD":
            body = b""
        head = b""
        if self._head_pending:
            # Capture the head rather than reach into the private buffer.
            real, capture = self.wfile, io.BytesIO()
            self.wfile = capture
            try:
                self.end_headers()
            finally:
                self.wfile = real
            self._head_pending = False
            head = capture.getvalue()
        self._write_last(head + body)

    def _write_last(self, data: bytes) -> None:
        # A client can only see the response complete once the final byte
        # arrives, so leaving the in-flight count just before it means no
        # client ever observes a stale count (a strictly sequential crawl
        # must read max_in_flight == 1, never 2).
        if len(data) > 1:
            self.wfile.write(data[:-1])
        self.done()
        if data:
            self.wfile.write(data[-1:])

    def send_file_head(self, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.start(200, {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})})

    def send_complete(self, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_file_head(body, content_type, headers)
        self.finish_with(body)

    def send_plain(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        # 1xx/204/304 must not carry a body, not even an announced one.
        bodiless = status < 200 or status in (204, 304)
        body = b"" if bodiless else text.encode()
        length = {} if bodiless else {"Content-Length": str(len(body))}
        self.start(status, {"Content-Type": "text/plain; charset=utf-8", **length, **(headers or {})})
        self.finish_with(body)

    def send_file(self, request: Request, headers: dict[str, str] | None = None) -> None:
        self.send_complete(file_body(request.name, request.size), content_type_for(request.name), headers)

    def redirect(self, status: int, target: str) -> None:
        self.send_plain(status, "redirect", {"Location": self.owner.url + target})

    def sleep(self, seconds: float) -> None:
        # Wakes up early when the server stops, so __exit__ never waits.
        self.owner._stopping.wait(max(0.0, seconds))

    def hung_up(self, seconds: float) -> bool:
        """Wait that long, or until the client closes its end: True if it did."""
        readable, _, _ = select.select([self.connection], [], [], max(0.0, seconds))
        if not readable:
            return False
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        return peeked == b""

    def reset_connection(self) -> None:
        """Abort with RST: SO_LINGER 0, then a real close of the socket."""
        sock = self.connection
        self.close_connection = True
        _wait_until_sent(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # rfile holds a reference to the socket; both must go for the fd
        # to be closed now rather than after the handler returns.
        self.rfile.close()
        sock.close()


# -- routes -------------------------------------------------------------------


def _not_found(handler: _Handler, request: Request) -> None:
    handler.send_plain(404, "not found")


def _ok(handler: _Handler, request: Request) -> None:
    handler.send_file(request)


def _slow(handler: _Handler, request: Request) -> None:
    if request.faulty():  # with times=T only the first T answers are late
        handler.sleep(request.number("delay", 1.0))
    handler.send_file(request)


def _slowbody(handler: _Handler, request: Request) -> None:
    body = file_body(request.name, request.size)
    handler.send_file_head(body, content_type_for(request.name))
    handler.flush_head()
    handler.sleep(request.number("delay", 1.0))
    handler.finish_with(body)


def _partial(handler: _Handler, request: Request) -> None:
    """Send the full headers and the first ``after`` bytes of the body."""
    body = file_body(request.name, request.size)
    after = min(max(0, request.integer("after", len(body) // 2)), len(body))
    handler.send_file_head(body, content_type_for(request.name))
    handler.flush_head()
    handler.send_body(body[:after])
    # What follows (RST or FIN) is what ends the response for the client.
    handler.done()


def _reset(handler: _Handler, request: Request) -> None:
    if not request.faulty():
        handler.send_file(request)
        return
    _partial(handler, request)
    handler.reset_connection()


def _short(handler: _Handler, request: Request) -> None:
    if not request.faulty():
        handler.send_file(request)
        return
    _partial(handler, request)
    # socketserver then does shutdown(SHUT_WR) + close: an orderly FIN.
    handler.close_connection = True


def _status(handler: _Handler, request: Request) -> None:
    code = _segment_int(request.parts, 0, "status code")
    if not 100 <= code <= 599:
        raise BadRequest("status code out of range")
    file_request = Request(request.method, request.path, request.parts[1:], request.query, request.count)
    if request.faulty():
        handler.send_plain(code, f"status {code}")
    else:
        handler.send_file(file_request)


def _too_many(handler: _Handler, request: Request) -> None:
    if not request.faulty():
        handler.send_file(request)
        return
    retry_after = request.query.get("retry_after", "1")
    if request.query.get("date") == "1":
        seconds = request.number("retry_after", 1.0)
        retry_after = formatdate(time.time() + seconds, usegmt=True)
    handler.send_plain(429, "slow down", {"Retry-After": retry_after})


def _with_query(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def _redirect(handler: _Handler, request: Request) -> None:
    code = _segment_int(request.parts, 0, "redirect code")
    if not 300 <= code <= 399:
        raise BadRequest("redirect code must be 3xx")
    target = "/ok/" + "/".join(request.parts[1:])
    handler.redirect(code, _with_query(target, urlsplit(handler.path).query))


def _loop(handler: _Handler, request: Request) -> None:
    handler.redirect(302, _with_query(request.path, urlsplit(handler.path).query))


def _redirect_chain(handler: _Handler, request: Request) -> None:
    hops = _segment_int(request.parts, 0, "hop count")
    rest = request.parts[1:]
    if hops <= 0:
        handler.send_file(Request(request.method, request.path, rest, request.query, 0))
        return
    target = "/".join(["", "redirect-chain", str(hops - 1), *rest])
    handler.redirect(302, _with_query(target, urlsplit(handler.path).query))


def _disposition(handler: _Handler, request: Request) -> None:
    filename = request.query.get("filename")
    body = file_body(request.name, request.size)
    if filename is None:
        headers = {"Content-Disposition": "attachment"}
        content_type = content_type_for(request.name)
    else:
        headers = {"Content-Disposition": content_disposition(filename)}
        content_type = content_type_for(filename)
    handler.send_complete(body, content_type, headers)


def _image_size(request: Request) -> tuple[int, int]:
    width = _segment_int(request.parts, 0, "width")
    height = _segment_int(request.parts, 1, "height")
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise BadRequest(f"image sides must be 1..{MAX_IMAGE_SIDE}")
    return width, height


def _image(handler: _Handler, png: bytes) -> None:
    handler.send_complete(png, "image/png")


def _random(handler: _Handler, request: Request) -> None:
    _image(handler, random_png(*_image_size(request)))


def _same(handler: _Handler, request: Request) -> None:
    _image(handler, same_png(*_image_size(request)))


def _tree(handler: _Handler, request: Request) -> None:
    """A slow directory tree: pages and files of one host, for politeness tests.

    ``/tree/`` lists files f0..f4.bin and, two levels deep, folders d0/ and d1/;
    every answer, page or file, takes 0.2 s.
    """
    handler.sleep(0.2)
    if not request.path.endswith("/"):
        handler.send_file(request)
        return
    links = [f"f{i}.bin" for i in range(5)]
    if request.path.count("/") < 4:
        links += ["d0/", "d1/"]
    page = "".join(f'<a href="{link}">{link}</a>\n' for link in ["../", *links])
    handler.send_complete(f"<html><body><pre>{page}</pre></body></html>".encode(), "text/html")


def _range(handler: _Handler, request: Request) -> None:
    """A file served as a real server does for resumable downloads: Range, If-Range, ETag.

    ``version=V`` names the file's version (its ETag, and its bytes: another version is
    another file); ``rate=B`` sends at most B bytes a second; ``cut=K&times=T``: the
    first T answers stop with a RST after K bytes of their body.
    """
    version = request.query.get("version", "1")
    body = file_body(f"{request.name}@{version}", request.size)
    etag = f'"{version}"'
    wanted = handler.headers.get("Range", "")
    start, end, status = 0, len(body) - 1, 200
    if_range = handler.headers.get("If-Range")
    if wanted.startswith("bytes=") and (if_range is None or if_range == etag):
        first, _, last = wanted[6:].partition("-")
        start, end, status = int(first), min(int(last or end), end), 206
    if start > end:
        handler.send_plain(416, "range not satisfiable", {"Content-Range": f"bytes */{len(body)}"})
        return
    part = body[start : end + 1]
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(part))}
    headers |= {"ETag": etag, "Accept-Ranges": "bytes"}
    # digest=sha256|md5|bad: what the server says the whole file is (RFC 9530, Content-MD5).
    kind = request.query.get("digest")
    if kind in ("sha256", "bad"):
        digest = hashlib.sha256(body if kind == "sha256" else b"another file").digest()
        headers["Repr-Digest"] = f"sha-256=:{base64.b64encode(digest).decode()}:"
    elif kind == "md5":
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
    handler.start(status, headers)
    handler.flush_head()
    cut = request.integer("cut", -1) if request.faulty() else -1
    rate = request.number("rate", 0)
    sent, chunk = 0, 65536
    # All but the last byte here: finish_with() stops counting the request just before it.
    while sent < len(part) - 1:
        piece = part[sent : min(sent + chunk, len(part) - 1)]
        if 0 <= cut < sent + len(piece):
            handler.send_body(piece[: cut - sent])
            handler.owner.ranges.append((request.path, wanted, status, cut))
            handler.done()
            handler.reset_connection()
            return
        handler.send_body(piece)
        sent += len(piece)
        if rate and handler.hung_up(len(piece) / rate):
            handler.done()  # as a real server's event loop, it sees at once that the client left
            handler.close_connection = True
            return
    handler.owner.ranges.append((request.path, wanted, status, len(part)))
    handler.finish_with(part[sent:])


ROUTES: dict[str, Callable[[_Handler, Request], None]] = {
    "tree": _tree,
    "ok": _ok,
    "slow": _slow,
    "slowbody": _slowbody,
    "reset": _reset,
    "short": _short,
    "status": _status,
    "429": _too_many,
    "redirect": _redirect,
    "loop": _loop,
    "redirect-chain": _redirect_chain,
    "disposition": _disposition,
    "random": _random,
    "same": _same,
    "range": _range,
}


# -- server -------------------------------------------------------------------


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    # Handler threads may sit in a delay or an idle keep-alive read; never
    # join them on close, or a stuck client would hang the test process.
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # listen backlog: bursts of 50+ connects

    def __init__(self, owner: FaultServer) -> None:
        self.owner = owner
        # Plain TCPServer rather than HTTPServer: HTTPServer.server_bind
        # does a reverse DNS lookup (getfqdn) we neither need nor want.
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: socket.socket, client_address: tuple[str, int]) -> None:  # type: ignore[override]
        self.owner._open_connection(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        self.owner._close_connection(request)
        super().shutdown_request(request)

    def handle_error(
        self,
        request: socket.socket | tuple[bytes, socket.socket],
        client_address: object,
    ) -> None:
        self.owner._handler_error()


class FaultServer:
    """Fault-injecting HTTP/1.1 server; use as a context manager.

    Counters (``hits``, ``log``, ``max_in_flight``) are updated under a lock;
    read them once the requests of interest have finished.
    """

    def __init__(self) -> None:
        self.url = ""
        self.port = 0
        self.folder = ""
        self.hits: collections.Counter[str] = collections.Counter()
        self.groups: collections.Counter[str] = collections.Counter()  # times=T shared by a group=G
        # /range/ answers: (path, Range header or "", status, body bytes sent)
        self.ranges: list[tuple[str, str, int, int]] = []
        self.log: list[tuple[float, str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        # Unexpected exceptions from handlers (client disconnects excluded);
        # a test can assert this stays empty.
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FaultServer:
        self._server = _TCPServer(self)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # Where a crawl stores this server's files: a non-default port is part of the folder.
        self.folder = f"127.0.0.1_{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FaultServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wake handlers sleeping in a delay
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Unblocks handler threads waiting for the next keep-alive request.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def url_for(self, path: str) -> str:
        """Absolute URL for a path such as ``/ok/a.png?size=10``."""
        return self.url + path

    def reset_counters(self) -> None:
        """Forget hits, the log and the peak; ``times`` counting restarts too."""
        with self._lock:
            self.hits.clear()
            self.groups.clear()
            self.log.clear()
            self.max_in_flight = self.in_flight

    # -- called from handler threads -----------------------------------------

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _record(self, method: str, target: str) -> Request:
        split = urlsplit(target)
        path = split.path
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        with self._lock:
            self.hits[path] += 1
            self.log.append((time.monotonic(), method, target))
            count = self.hits[path]
            if group := query.get("group"):
                self.groups[group] += 1
                count = self.groups[group]
        parts = path.split("/")[2:]
        return Request(method, path, parts, query, count)

    def _open_connection(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _close_connection(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _handler_error(self) -> None:
        exc = sys.exc_info()[1]
        # Clients hanging up mid-response (timeouts, cancelled downloads) are
        # routine in these tests; anything else is a bug in this server.
        if exc is None or isinstance(exc, OSError):
            return
        with self._lock:
            self.errors.append(exc)
