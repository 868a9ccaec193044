"""Outcomes: filtered only by a policy source, failed for everything else, and the exit status."""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING

import pytest
from scrapy.exceptions import IgnoreRequest
from scrapy.pipelines.media import FileException
from scrapy.utils.test import get_crawler
from servers.staticsite import Route, StaticSite

from xkcdcrawl import outcomes
from xkcdcrawl.naming import host_folder
from xkcdcrawl.outcomes import Filtered, Interrupted, exit_status, status_of, summary

if TYPE_CHECKING:
    from conftest import Crawl

QUIET = ["-s", "XKCDCRAWL_PROGRESS_INTERVAL=0", "-s", "XKCDCRAWL_RETRY_BACKOFF=0"]


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (Filtered(outcomes.OFFSITE, "Filtered offsite request to 'a.test'"), "filtered"),
        (Filtered(outcomes.ROBOTS_TXT, "Forbidden by robots.txt"), "filtered"),
        (Filtered(outcomes.DRY_RUN, "dry run"), "filtered"),
        (Interrupted("the run was stopped"), "interrupted"),
        # IgnoreRequest from anything but a policy source is a failure: the redirect limit,
        # a decompressed body over the size limit, and whatever a middleware raises.
        (IgnoreRequest("max redirections reached"), "failed"),
        (IgnoreRequest("Ignored response because its body (100 B) is larger than the download max size"), "failed"),
        (FileException("HTTP 404"), "failed"),
        (None, "failed"),
    ],
)
def test_only_a_policy_source_filters(exc: BaseException | None, status: str) -> None:
    assert status_of(exc) == status


def test_a_policy_source_must_be_one_of_the_list() -> None:
    with pytest.raises(AssertionError):
        Filtered("a redirect loop", "max redirections reached")


@pytest.mark.parametrize(
    ("stats", "fail_on_error", "expected"),
    [
        ({"finish_reason": "finished"}, True, 0),
        ({"finish_reason": "finished", "file_status_count/filtered": 3}, True, 0),
        ({"finish_reason": "finished", "file_status_count/failed": 1}, True, 1),
        ({"finish_reason": "finished", "file_status_count/failed": 1}, False, 0),
        ({"finish_reason": "finished", "urls/bad_lines": 2}, True, 1),
        ({"finish_reason": "finished", "crawl/errors": 1}, True, 1),
        ({"finish_reason": "store_locked"}, True, 2),
        ({"finish_reason": "shutdown", "file_status_count/failed": 1}, True, 130),
        # Killed by a second Ctrl-C: started, never closed.
        ({"start_time": 1.0}, True, 130),
    ],
)
def test_exit_status(stats: dict[str, object], fail_on_error: bool, expected: int) -> None:
    crawler = get_crawler()
    assert crawler.stats is not None
    crawler.stats.set_stats(dict(stats))
    assert exit_status(crawler, fail_on_error) == expected


def test_the_summary_names_the_four_outcomes_and_the_others_when_there_are_any() -> None:
    crawler = get_crawler()
    assert crawler.stats is not None
    crawler.stats.set_stats({"file_status_count/downloaded": 2, "file_status_count/cached": 1})
    assert summary(crawler.stats) == "Files: 3 downloaded, 0 uptodate, 0 failed, 0 filtered"
    crawler.stats.set_value("file_status_count/updated", 4)
    crawler.stats.set_value("file_status_count/interrupted", 5)
    assert summary(crawler.stats) == "Files: 3 downloaded, 0 uptodate, 0 failed, 0 filtered, 4 updated, 5 interrupted"


def test_a_compressed_file_over_the_size_limit_fails(crawl: Crawl) -> None:
    """HttpCompressionMiddleware's IgnoreRequest is no policy: the file failed and the run says so."""
    bomb = gzip.compress(b"\0" * 200_000)
    routes: dict[str, Route] = {
        "/pub/": ("text/html", b'<a href="bomb.bin">bomb.bin</a> <a href="ok.txt">ok.txt</a>'),
        "/pub/bomb.bin": ("application/octet-stream", bomb, {"Content-Encoding": "gzip"}),
        "/pub/ok.txt": ("text/plain", b"ok"),
    }
    with StaticSite(routes) as site:
        run = crawl("listing", "-a", f"url={site.url}/pub/", "-s", "DOWNLOAD_MAXSIZE=100000", *QUIET)
    assert run.returncode == 1
    assert run.stored() == {f"{host_folder(site.url)}/pub/ok.txt": b"ok"}
    files = {f["url"].rpartition("/")[2]: f for item in run.items() for f in item["files"]}
    assert files["bomb.bin"]["status"] == "failed"
    assert "exceeded DOWNLOAD_MAXSIZE (100000 B) during decompression" in files["bomb.bin"]["reason"]
    assert "Files: 1 downloaded, 0 uptodate, 1 failed, 0 filtered" in run.stderr


def test_robots_txt_filters_and_the_run_succeeds(crawl: Crawl) -> None:
    routes = {
        "/robots.txt": ("text/plain", b"User-agent: *\nDisallow: /pub/private/\n"),
        "/pub/": ("text/html", b'<a href="a.txt">a.txt</a> <a href="private/">private/</a>'),
        "/pub/a.txt": ("text/plain", b"a"),
        "/pub/private/": ("text/html", b'<a href="b.txt">b.txt</a>'),
    }
    with StaticSite(routes) as site:
        run = crawl("listing", "-a", f"url={site.url}/pub/", *QUIET)
        paths = site.paths()
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{host_folder(site.url)}/pub/a.txt": b"a"}
    assert "/pub/private/" not in paths
    assert "Not read " in run.stderr
    assert "Forbidden by robots.txt" in run.stderr
    assert "ERROR" not in run.stderr


def test_the_stats_collector_counts_and_still_warns_about_a_spider_argument() -> None:
    from scrapy.exceptions import ScrapyDeprecationWarning
    from scrapy.spiders import Spider

    crawler = get_crawler(settings_dict={"STATS_CLASS": "xkcdcrawl.outcomes.Stats"})
    stats = crawler.stats
    assert isinstance(stats, outcomes.Stats)
    stats.inc_value("files/expected")
    stats.inc_value("files/expected", 2)
    assert stats.get_value("files/expected") == 3
    with pytest.warns(ScrapyDeprecationWarning):
        stats.inc_value("files/expected", spider=Spider("x"))
    assert stats.get_stats() == {"files/expected": 4}
