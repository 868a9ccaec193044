"""Peer: stock Scrapy's FilesPipeline handed the URL list, as a Scrapy user would write it.

What the same job costs in Scrapy itself, before anything xkcdcrawl adds: no listing read, no
robots.txt, no per-host gate, no fsync or rename, no checksum kept, no report. Files keep the
server's tree (file_path() from the URL's path, not Scrapy's SHA1 names) so that the harness can
verify them like every other tool's. Run with the project's venv (it needs Scrapy), outside the
project folder (so that none of xkcdcrawl's settings apply):

    .venv/bin/python benchmarks/scrapy_peer.py --jobs 8 --out /tmp/mirror urls.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import scrapy
from scrapy.crawler import AsyncCrawlerProcess
from scrapy.pipelines.files import FilesPipeline


class TreeFilesPipeline(FilesPipeline):
    """Scrapy's FilesPipeline, storing each file under its path on the server."""

    def file_path(self, request: Any, response: Any = None, info: Any = None, *, item: Any = None) -> str:
        return unquote(urlsplit(request.url).path).lstrip("/")


class UrlListSpider(scrapy.Spider):
    """One item per URL of the list, as the pipeline's files: no page is requested."""

    name = "urls"

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.urls = urls

    async def start(self) -> Any:
        for url in self.urls:
            yield {"file_urls": [url]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="requests in flight, per host and in all")
    parser.add_argument("--out", type=Path, required=True, help="FILES_STORE")
    parser.add_argument("urls", type=Path, help="a file of URLs, one a line")
    args = parser.parse_args()
    urls = [line.strip() for line in args.urls.read_text().splitlines() if line.strip()]
    process = AsyncCrawlerProcess(
        {
            "LOG_LEVEL": "WARNING",
            "CONCURRENT_REQUESTS": args.jobs,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.jobs,
            "ITEM_PIPELINES": {TreeFilesPipeline: 1},
            "FILES_STORE": str(args.out),
            "TELNETCONSOLE_ENABLED": False,
        }
    )
    process.crawl(UrlListSpider, urls=urls)
    process.start()


if __name__ == "__main__":
    main()
