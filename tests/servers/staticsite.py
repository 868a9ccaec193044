"""A tiny HTTP server on 127.0.0.1 serving fixed answers, recording every request."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

# Path (with query) -> (Content-Type, body), or (Content-Type, body, more headers).
Route = tuple[str, bytes] | tuple[str, bytes, dict[str, str]]
Routes = dict[str, Route]


class StaticSite:
    """`with StaticSite(routes) as site:` site.url, site.requests [(path, headers)]."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes: Routes = dict(routes)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def __enter__(self) -> StaticSite:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append((self.path, dict(self.headers.items())))
                if self.path not in site.routes:
                    self.send_error(404)
                    return
                ctype, body, *more = site.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                for name, value in (more[0] if more else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
