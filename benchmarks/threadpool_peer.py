"""Baseline peer: mirror an autoindex tree with urllib and a ThreadPoolExecutor.

This is the "competent hand-written script" xkcdcrawl is compared with: it walks
the HTML directory listings from a base URL, downloads every file with N worker
threads, streams each body to disk in chunks (through a temporary name, renamed
when complete) and lays files out as ``OUT/<path below the base URL>``.
Standard library only; urllib opens one connection per request.

    python threadpool_peer.py --jobs 8 --out /tmp/mirror http://127.0.0.1:8080/
"""

from __future__ import annotations

import argparse
import shutil
import sys
import urllib.request
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

CHUNK = 256 * 1024
TIMEOUT = 60.0


class LinkParser(HTMLParser):
    """Collects the href of every <a> tag."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)


def child_links(base: str, page_url: str, html: str) -> list[str]:
    """Absolute URLs linked from a listing that lie strictly below ``page_url`` and ``base``."""
    parser = LinkParser()
    parser.feed(html)
    found: list[str] = []
    for href in parser.links:
        url = urljoin(page_url, href).split("#", 1)[0]
        if "?" in url or url == page_url:
            continue
        if url.startswith(page_url) and url.startswith(base):
            found.append(url)
    return found


def list_dir(base: str, url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        charset = resp.headers.get_content_charset() or "utf-8"
        return child_links(base, url, resp.read().decode(charset, "replace"))


def local_path(base: str, url: str, out: Path) -> Path:
    """Where ``url`` goes: its path below ``base``, below ``out`` (pure string work: no syscalls)."""
    relative = PurePosixPath(unquote(urlsplit(url).path[len(urlsplit(base).path) :]))
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"refusing to write outside {out}: {url}")
    return out.joinpath(*relative.parts)


def download(url: str, target: Path) -> int:
    """Stream one URL to ``target``; returns the number of bytes written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp, partial.open("wb") as fh:
        shutil.copyfileobj(resp, fh, CHUNK)
        size = fh.tell()
    partial.replace(target)
    return size


def mirror(base: str, out: Path, jobs: int) -> tuple[int, int, int]:
    """Mirror ``base`` into ``out``; returns (files, bytes, errors)."""
    files = nbytes = errors = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending: dict[Future[Any], str] = {pool.submit(list_dir, base, base): base}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                url = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # report and carry on, like a mirror should
                    print(f"error: {url}: {exc}", file=sys.stderr)
                    errors += 1
                    continue
                if isinstance(result, int):
                    files, nbytes = files + 1, nbytes + result
                    continue
                for link in result:
                    if link.endswith("/"):
                        pending[pool.submit(list_dir, base, link)] = link
                    else:
                        pending[pool.submit(download, link, local_path(base, link, out))] = link
    return files, nbytes, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the listing (ends with /)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--jobs", type=int, default=8, help="worker threads (default 8)")
    args = parser.parse_args(argv)
    base = args.url if args.url.endswith("/") else args.url + "/"
    files, nbytes, errors = mirror(base, args.out, args.jobs)
    print(f"{files} files, {nbytes} bytes, {errors} errors", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
