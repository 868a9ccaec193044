"""The progress extension in process, built as Scrapy builds it and driven by the crawler's signals."""

from __future__ import annotations

import logging
import sys
from io import StringIO
from typing import TYPE_CHECKING

import pytest
from scrapy import Request, Spider, signals
from scrapy.exceptions import NotConfigured
from scrapy.http.request import NO_CALLBACK
from scrapy.utils.misc import build_from_crawler
from scrapy.utils.test import get_crawler

from xkcdcrawl.extensions.progress import Progress

if TYPE_CHECKING:
    from scrapy.crawler import Crawler


def progress_crawler() -> Crawler:
    crawler = get_crawler(settings_dict={"XKCDCRAWL_PROGRESS_INTERVAL": 5})
    assert crawler.stats is not None
    crawler.stats.set_value("files/expected", 4)
    crawler.stats.set_value("file_status_count/downloaded", 1)
    crawler.stats.set_value("file_status_count/uptodate", 1)
    return crawler


def test_an_interval_of_0_turns_it_off() -> None:
    with pytest.raises(NotConfigured):
        build_from_crawler(Progress, get_crawler(settings_dict={"XKCDCRAWL_PROGRESS_INTERVAL": 0}))


def test_without_a_terminal_each_tick_is_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stderr", StringIO())
    # Pages are still being read: more files may come, so no ETA.
    monkeypatch.setattr("xkcdcrawl.extensions.progress.listing_done", lambda crawler: False)
    crawler = progress_crawler()
    progress = build_from_crawler(Progress, crawler)
    spider = Spider("progress")
    crawler.signals.send_catch_log(signals.spider_opened, spider=spider)
    try:
        assert progress.bar is None
        assert progress.loop is not None
        assert progress.loop.running
        with caplog.at_level(logging.INFO, logger="xkcdcrawl.extensions.progress"):
            progress.tick()
    finally:
        crawler.signals.send_catch_log(signals.spider_closed, spider=spider, reason="finished")
    assert not progress.loop.running
    assert [r.getMessage() for r in caplog.records] == ["Progress: 2/4 files, 0 B, 0 B/s, 0 failed"]


def test_file_bytes_come_from_the_crawlers_signals() -> None:
    crawler = progress_crawler()
    progress = build_from_crawler(Progress, crawler)
    big = Request("http://a.test/big.iso", callback=NO_CALLBACK)
    for _ in range(2):
        crawler.signals.send_catch_log(signals.bytes_received, data=b"x" * (1 << 20), request=big, spider=None)
    page = Request("http://a.test/pub/")
    crawler.signals.send_catch_log(signals.bytes_received, data=b"<html>", request=page, spider=None)
    assert progress.bytes == 2 << 20
    assert progress.in_flight() == " | big.iso 2.0 MiB"
    crawler.signals.send_catch_log(signals.request_left_downloader, request=big, spider=None)
    assert progress.in_flight() == ""
