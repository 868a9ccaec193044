"""The policy sources of xkcdcrawl.outcomes.POLICY: Scrapy's offsite and robots.txt middlewares,
raising outcomes.Filtered, so that a refusal by policy is told from a failure by its type."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from scrapy.downloadermiddlewares.offsite import OffsiteMiddleware
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.utils.httpobj import urlparse_cached

from xkcdcrawl.extensions.progress import is_file_request
from xkcdcrawl.outcomes import OFFSITE, ROBOTS_TXT, Filtered

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.robotstxt import RobotParser


class Offsite(OffsiteMiddleware):
    """A page outside the start host; a file outside XKCDCRAWL_FILE_HOSTS, when that is set.

    File requests carry allow_offsite: a listed file is fetched wherever its redirects lead
    (a CDN, an object store), unless XKCDCRAWL_FILE_HOSTS names the hosts files may come from.
    """

    file_hosts: tuple[str, ...] = ()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        middleware = super().from_crawler(crawler)
        hosts = crawler.settings.getlist("XKCDCRAWL_FILE_HOSTS")
        middleware.file_hosts = tuple(host.lower().lstrip(".") for host in hosts if host)
        return middleware

    def process_request(self, request: Request, spider: Any = None) -> None:
        if self.file_hosts and is_file_request(request):
            host = (urlparse_cached(request).hostname or "").lower()
            if not any(host == allowed or host.endswith("." + allowed) for allowed in self.file_hosts):
                self.stats.inc_value("offsite/filtered")
                raise Filtered(OFFSITE, f"Filtered file request to {host!r}: not in XKCDCRAWL_FILE_HOSTS")
            return
        try:
            super().process_request(request)
        except IgnoreRequest as refused:
            raise Filtered(OFFSITE, str(refused)) from None


class RobotsTxt(RobotsTxtMiddleware):
    """ROBOTSTXT_OBEY: a URL the site's robots.txt forbids."""

    def process_request_2(self, rp: RobotParser | None, request: Request) -> None:
        try:
            super().process_request_2(rp, request)
        except IgnoreRequest as refused:
            raise Filtered(ROBOTS_TXT, str(refused)) from None
