"""Scrapy's cookie handling, imported with the first cookie of a crawl.

Scrapy's CookiesMiddleware module imports tldextract, and with it requests and urllib3: about
35 ms of every run's start-up here, although most servers a mirror reads (directory listings,
APIs, file hosts) set no cookie at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from scrapy.exceptions import NotConfigured
from scrapy.utils.misc import build_from_crawler

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.downloadermiddlewares.cookies import CookiesMiddleware
    from scrapy.http import Response


class LazyCookies:
    """Downloader middleware: Scrapy's CookiesMiddleware, created on the first cookie sent or received.

    Until then every cookie jar is empty, and Scrapy's middleware would neither add a Cookie
    header nor store anything: a request without cookies (``Request.cookies`` or a Cookie header)
    and a response without Set-Cookie pass untouched, as they would through it.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.inner: CookiesMiddleware | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("COOKIES_ENABLED"):
            raise NotConfigured
        return cls(crawler)

    def cookies(self) -> CookiesMiddleware:
        if self.inner is None:
            from scrapy.downloadermiddlewares.cookies import CookiesMiddleware

            self.inner = build_from_crawler(CookiesMiddleware, self.crawler)
        return self.inner

    def process_request(self, request: Request, spider: Any = None) -> Request | Response | None:
        if self.inner is None and not request.cookies and b"Cookie" not in request.headers:
            return None
        return self.cookies().process_request(request)

    def process_response(self, request: Request, response: Response, spider: Any = None) -> Request | Response:
        if self.inner is None and b"Set-Cookie" not in response.headers and b"Set-Cookie2" not in response.headers:
            return response
        return self.cookies().process_response(request, response)
