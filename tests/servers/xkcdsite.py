"""A local xkcd mirror for end-to-end tests, built from real captured pages and API data.

Two real HTTP servers on 127.0.0.1: the site (comic pages, the JSON API, the front page)
and the image host, as imgs.xkcd.com is separate from xkcd.com.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent.parent / "fixtures"
CAPTURED = {  # real pages, served for their own comic with image URLs pointed at the image host
    1: "2018-08_comic_0001.html",
    302: "2017-10_comic_0302.html",
    303: "2017-10_comic_0303.html",
    353: "2022-08_comic_0353.html",
    1898: "2017-10_comic_1898.html",
    1899: "2017-10_comic_1899_latest.html",
}
RAW_API = {1409: "1409_info.0.json_2014-08.json"}  # byte-exact 2014 wire format
TEMPLATE = "2022-08_comic_0353.html"  # other comics are rendered into the current layout


def load_api() -> dict[int, dict[str, Any]]:
    lines = (FIXTURES / "api" / "xkcd_info_full.jsonl").read_text(encoding="utf-8").split("\n")
    return {rec["num"]: rec for rec in map(json.loads, filter(None, lines))}


def image_bytes(path: str) -> bytes:
    """The bytes the image host serves for a path: distinct per path, PNG-looking."""
    seed = hashlib.sha256(path.encode()).digest()
    return b"\x89PNG\r\n\x1a\n" + seed * (32 + seed[0])


def _to_local(text: str, images: str) -> str:
    for prefix in ("https://imgs.xkcd.com", "http://imgs.xkcd.com", "//imgs.xkcd.com"):
        text = text.replace(prefix, images)
    return text


@dataclass
class Site:
    """What the mirror serves; tests may change it while it runs."""

    newest: int = 3282
    api: dict[int, dict[str, Any]] = field(default_factory=load_api)
    origin: str = ""
    images: str = ""
    hits: list[str] = field(default_factory=list)  # every path requested, both hosts
    faults: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # path -> (status, body) instead
    lock: threading.Lock = field(default_factory=threading.Lock)

    def page(self, num: int) -> str | None:
        if num not in self.api or num > self.newest:
            return None
        if num in CAPTURED:
            return _to_local((FIXTURES / "pages" / CAPTURED[num]).read_text(encoding="utf-8"), self.images)
        return self.render(self.api[num])

    def render(self, info: dict[str, Any]) -> str:
        """A comic in the current page layout, the way xkcd's template fills it."""
        page = (FIXTURES / "pages" / TEMPLATE).read_text(encoding="utf-8")
        extra = info.get("extra_parts") or {}
        img = (
            f'<img src="{_to_local(info["img"], self.images)}" title="{html.escape(info["alt"])}"'
            f' alt="{html.escape(info["safe_title"])}" {extra.get("imgAttr", "")} />'
        )
        if "/large" in info.get("link", ""):
            img = f'<a href="{info["link"]}">{img}</a>'  # large versions: the image is a link
        body = extra.get("inset") or f"{extra.get('pre', '')}{img}{extra.get('post', '')}"
        page = re.sub(r'(<div id="comic">\n).*?(\n</div>)', lambda m: m[1] + body + m[2], page, flags=re.S)
        page = page.replace("<title>xkcd: Python</title>", f"<title>xkcd: {info['safe_title']}</title>")
        page = page.replace('<div id="ctitle">Python</div>', f'<div id="ctitle">{info["title"]}</div>')
        return _to_local(page, self.images)

    def info_json(self, num: int) -> bytes | None:
        if num not in self.api or num > self.newest:
            return None
        if num in RAW_API:
            raw = (FIXTURES / "api" / RAW_API[num]).read_text(encoding="utf-8")
            return raw.replace("http:\\/\\/imgs.xkcd.com", self.images.replace("/", "\\/")).encode()
        return _to_local(json.dumps(self.api[num]), self.images).encode()


def _handler(site: Site, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with site.lock:
                site.hits.append(f"{role}:{self.path}")
            status, ctype, body = route(site, role, self.path)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


NOT_FOUND = (404, "text/html", b"<h1>404 Not Found</h1>")


def route(site: Site, role: str, path: str) -> tuple[int, str, bytes]:
    if role == "site" and path in site.faults:
        status, body = site.faults[path]
        return status, "text/html", body
    if role == "images":
        if re.fullmatch(r"/comics/.+\.\w+", path):
            return 200, "image/png", image_bytes(path)
        return NOT_FOUND
    if path == "/robots.txt":
        return 200, "text/plain", b"User-agent: *\nDisallow: /search/\n"
    if path in ("/", "/info.0.json"):
        num = site.newest
        page = site.page(num) if path == "/" else None
        body = page.encode() if page else site.info_json(num) or b""
        return 200, "text/html" if page else "application/json", body
    if m := re.fullmatch(r"/(\d+)/info\.0\.json", path):
        data = site.info_json(int(m[1]))
        return (200, "application/json", data) if data else NOT_FOUND
    if m := re.fullmatch(r"/(\d+)/", path):
        page = site.page(int(m[1]))
        return (200, "text/html; charset=utf-8", page.encode()) if page else NOT_FOUND
    return NOT_FOUND


class Servers:
    """Both hosts, each a ThreadingHTTPServer on a free 127.0.0.1 port in a thread."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.httpds = {role: ThreadingHTTPServer(("127.0.0.1", 0), _handler(site, role)) for role in ("site", "images")}
        site.origin = f"http://127.0.0.1:{self.httpds['site'].server_port}"
        site.images = f"http://127.0.0.1:{self.httpds['images'].server_port}"
        for httpd in self.httpds.values():
            httpd.daemon_threads = True
            threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        for httpd in self.httpds.values():
            httpd.shutdown()
            httpd.server_close()
