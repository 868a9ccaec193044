"""Cookies: Scrapy's middleware, created on the first cookie, behaves as Scrapy's from the start."""

from __future__ import annotations

import pytest
from scrapy import Request
from scrapy.exceptions import NotConfigured
from scrapy.http import Response
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from xkcdcrawl.cookies import LazyCookies


def middleware(**settings: object) -> LazyCookies:
    return build_from_crawler(LazyCookies, get_crawler(settings_dict=settings))


def test_it_takes_the_place_of_scrapys_cookie_middleware() -> None:
    settings = get_project_settings()
    order = settings.getwithbase("DOWNLOADER_MIDDLEWARES")
    assert order["xkcdcrawl.cookies.LazyCookies"] == 700  # Scrapy's own place
    scrapys = "scrapy.downloadermiddlewares.cookies.CookiesMiddleware"
    assert scrapys not in settings.getdict("DOWNLOADER_MIDDLEWARES_BASE")


def test_off_with_cookies_enabled_false() -> None:
    with pytest.raises(NotConfigured):
        middleware(COOKIES_ENABLED=False)


def test_no_cookie_no_middleware() -> None:
    mw = middleware()
    request = Request("http://h.test/a")
    assert mw.process_request(request) is None
    response = Response("http://h.test/a", headers={"Content-Type": "text/html"})
    assert mw.process_response(request, response) is response
    assert mw.inner is None
    assert "Cookie" not in request.headers


def test_a_received_cookie_is_sent_back() -> None:
    mw = middleware()
    first = Request("http://h.test/a")
    mw.process_request(first)
    mw.process_response(first, Response(first.url, headers={"Set-Cookie": "session=abc; Path=/"}))
    assert mw.inner is not None
    later = Request("http://h.test/b")
    mw.process_request(later)
    assert later.headers.getlist("Cookie") == [b"session=abc"]
    elsewhere = Request("http://other.test/b")
    mw.process_request(elsewhere)
    assert "Cookie" not in elsewhere.headers


def test_request_cookies_are_sent_and_kept() -> None:
    mw = middleware()
    request = Request("http://h.test/a", cookies={"lang": "en"})
    mw.process_request(request)
    assert request.headers.getlist("Cookie") == [b"lang=en"]
    later = Request("http://h.test/b")
    mw.process_request(later)
    assert later.headers.getlist("Cookie") == [b"lang=en"]


def test_a_hand_set_cookie_header_is_handled_as_scrapy_does() -> None:
    # Scrapy replaces a Cookie header with the jar's cookies (none here) unless dont_merge_cookies.
    mw = middleware()
    request = Request("http://h.test/a", headers={"Cookie": "x=1"})
    mw.process_request(request)
    assert "Cookie" not in request.headers
    kept = Request("http://h.test/a", headers={"Cookie": "x=1"}, meta={"dont_merge_cookies": True})
    mw.process_request(kept)
    assert kept.headers.getlist("Cookie") == [b"x=1"]
