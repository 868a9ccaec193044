"""Request fingerprints that tell apart repeated draws of one URL."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Self

from scrapy.http.request import NO_CALLBACK
from scrapy.utils.request import RequestFingerprinter

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler


class DrawFingerprinter:
    """Scrapy's fingerprint, plus meta["draw"] when a request has one; a cheaper one for files.

    `-a repeat=N` fetches one URL N times (a random-image endpoint): with plain
    fingerprints the dupefilter and the files pipeline would fetch it once.
    """

    def __init__(self, crawler: Crawler | None = None) -> None:
        self.default = RequestFingerprinter(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    def fingerprint(self, request: Request) -> bytes:
        draw = request.meta.get("draw")
        if request.callback is NO_CALLBACK:
            # A file request: only the files pipeline asks, to fetch a URL once per crawl. Its URL
            # as written will do; canonicalizing it was a tenth of a re-run's CPU.
            return hashlib.sha1(f"{request.method} {request.url} {draw}".encode()).digest()
        fingerprint = self.default.fingerprint(request)
        return fingerprint if draw is None else hashlib.sha1(fingerprint + str(draw).encode()).digest()
