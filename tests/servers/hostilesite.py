"""A listing page linking out of its folder every way there is: a listing crawl must follow none."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

HOSTILE_LINKS = [
    "../../etc/passwd",
    "../secret.txt",
    "%2e%2e/secret.txt",
    "%2e%2e%2fsecret.txt",
    "..%2fsecret.txt",
    "..%5csecret.txt",
    "%252e%252e%252fsecret.txt",
    "/secret.txt",
    "/pub/../secret.txt",
    "http://other.invalid/pub/x.txt",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "mailto:a@b.c",
    "?C=N;O=D",
    "#top",
    "ok.txt",
]


class HostileSite(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/pub/":
            body = "".join(f'<a href="{href}">x</a>' for href in HOSTILE_LINKS).encode()
        elif self.path.startswith("/pub/") and self.path.endswith(".txt"):
            body = b"fine"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def hostile_site() -> Iterator[ThreadingHTTPServer]:
    """`with hostile_site() as httpd:` httpd.server_port, httpd.paths (every path asked for)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), HostileSite)
    httpd.paths = []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
