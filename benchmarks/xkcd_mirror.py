"""A local xkcd mirror for the xkcd benchmark: pages and JSON API on one port, images on another.

Every response waits --delay-ms first, as a remote site would. The bodies come from the
test mirror (tests/servers/xkcdsite.py: real API records, real captured pages, the other comics
rendered into the current page layout, synthetic images) and are rendered once at start,
so the server spends next to no CPU per request: on a 2-core machine it shares the CPU
with the tool being timed. One asyncio loop in its own process, HTTP/1.1 with keep-alive.

    python3 benchmarks/xkcd_mirror.py --first 1 --last 1400 --delay-ms 50

It prints one line, `site=http://127.0.0.1:P images=http://localhost:Q`, once it serves: the
images on another host name, as imgs.xkcd.com is to xkcd.com, so that a per-host limit holds for
each as it would on the real site (both names are the loopback, 127.0.0.1).
GET /__stats__ on the site port (not delayed, not counted) answers the requests counted
since the last GET /__reset__, by host and kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from servers.xkcdsite import Site, image_bytes

Response = tuple[int, str, bytes]
NOT_FOUND: Response = (404, "text/html", b"<h1>404 Not Found</h1>")
# The tutorial asks for /0 (its first thread starts at 0) and the real site has no 0 and no 404.
# There, raise_for_status() would end the thread and skip the rest of its hundred; a page
# without a comic image lets the script do its whole job ("Could not find comic image.").
NO_COMIC = b'<html><body><div id="comic"></div></body></html>'


class ComicImg(HTMLParser):
    """The src of the first img inside #comic: what the tutorial's soup.select('#comic img') finds."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.src: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth and tag == "div":
            self.depth += 1
        elif tag == "div" and ("id", "comic") in attrs:
            self.depth = 1
        elif self.depth and tag == "img" and self.src is None:
            self.src = dict(attrs).get("src")

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag == "div":
            self.depth -= 1


def page_image(page: str) -> str | None:
    parser = ComicImg()
    parser.feed(page)
    return parser.src


class Mirror:
    """Every body the two hosts serve, rendered once."""

    def __init__(self, site: Site, first: int, last: int) -> None:
        self.site: dict[str, Response] = {"/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /search/\n")}
        self.images: dict[str, Response] = {"/robots.txt": (200, "text/plain", b"User-agent: *\n")}
        site.newest = last
        self.page_images: dict[int, str | None] = {}  # what a page names, per comic
        for num in range(first, last + 1):
            page, info = site.page(num), site.info_json(num)
            if page is None or info is None:
                self.site[f"/{num}"] = self.site[f"/{num}/"] = (200, "text/html", NO_COMIC)
                continue
            body = (200, "text/html; charset=utf-8", page.encode())
            # The real site redirects /N to /N/; the tutorial asks for /N, and is spared the hop.
            self.site[f"/{num}"] = self.site[f"/{num}/"] = body
            self.site[f"/{num}/info.0.json"] = (200, "application/json", info)
            self.page_images[num] = page_image(page)
        self.site["/info.0.json"] = self.site[f"/{last}/info.0.json"]

    def route(self, role: str, path: str) -> Response:
        if role == "images" and path.startswith("/comics/") and "." in path.rsplit("/", 1)[-1]:
            return 200, "image/png", image_bytes(path)
        table = self.site if role == "site" else self.images
        return table.get(path, NOT_FOUND)


def kind(role: str, path: str) -> str:
    if path == "/robots.txt":
        return f"{role}:robots"
    if role == "images":
        return "images:image"
    return "site:api" if path.endswith(".json") else "site:page"


class Server:
    def __init__(self, mirror: Mirror, delay: float) -> None:
        self.mirror = mirror
        self.delay = delay
        self.counts: Counter[str] = Counter()

    async def serve(self, role: str, sock: socket.socket) -> asyncio.Server:
        return await asyncio.start_server(lambda r, w: self.connection(role, r, w), sock=sock, backlog=256)

    async def connection(self, role: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                method, target, version = line.split(" ", 2)
                headers = {k.strip().lower(): v.strip().lower() for k, _, v in (f.partition(":") for f in fields if f)}
                path = unquote(target.split("?", 1)[0])
                status, ctype, body = self.control(role, path) or self.answer(role, path)
                if path not in ("/__stats__", "/__reset__"):
                    await asyncio.sleep(self.delay)
                keep = headers.get("connection", "") != "close" and version == "HTTP/1.1"
                writer.write(
                    f"{version} {status} {'OK' if status == 200 else 'Not Found'}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode()
                    + (body if method != "HEAD" else b"")
                )
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def control(self, role: str, path: str) -> Response | None:
        if role != "site" or path not in ("/__stats__", "/__reset__"):
            return None
        body = json.dumps(self.counts).encode()
        if path == "/__reset__":
            self.counts.clear()
        return 200, "application/json", body

    def answer(self, role: str, path: str) -> Response:
        self.counts[kind(role, path)] += 1
        return self.mirror.route(role, path)


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


async def main(args: argparse.Namespace) -> None:
    socks = {"site": listening(), "images": listening()}
    site = Site()
    site.origin = f"http://127.0.0.1:{socks['site'].getsockname()[1]}"
    # Another host name, as imgs.xkcd.com is to xkcd.com: a per-host limit holds for each.
    site.images = f"http://localhost:{socks['images'].getsockname()[1]}"
    server = Server(Mirror(site, args.first, args.last), args.delay_ms / 1000)
    servers = [await server.serve(role, sock) for role, sock in socks.items()]
    print(f"site={site.origin} images={site.images}", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--first", type=int, default=0, help="first comic served (default 0: the tutorial asks for it)")
    parser.add_argument("--last", type=int, default=1400, help="newest comic served")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="wait before every response")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
