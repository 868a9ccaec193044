"""http.server's listings and files of a folder, with every request recorded."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class CountingHandler(SimpleHTTPRequestHandler):
    """http.server's listings and files, with every request recorded."""

    requests: list[tuple[str, str]]

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path))
        super().do_GET()

    def do_HEAD(self) -> None:
        self.requests.append(("HEAD", self.path))
        super().do_HEAD()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def counting_site(root: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """`with counting_site(root) as (url, requests):` url of root, requests [(method, path)]."""
    requests: list[tuple[str, str]] = []
    handler = type("Handler", (CountingHandler,), {"requests": requests})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()
