"""Every way a file or a run can end, the stats that count them, and the exit status they make.

A file's status, in the feed, the report and the summary::

    COMPLETE: stored under its final name, whole and verified
    ├── downloaded    fetched in this run
    ├── updated       stored before, changed on the server since, fetched again and replaced
    ├── uptodate      stored before and still what the server has: not fetched
    └── cached        from Scrapy's HTTP cache (HTTPCACHE_ENABLED)
    not stored:
    ├── filtered      not fetched by choice: a policy source in POLICY refused it (no failure)
    ├── interrupted   not fetched: the run was stopped (Ctrl-C) before its turn; the next run fetches it
    └── failed        everything else, with its reason(): an HTTP status, a cut, a checksum, a full disk...

A run's exit status (exit_status()):

    0    every file complete, filtered or up to date
    1    a file failed, a URL list had bad lines, or a page or source could not be read (FAILURES)
    2    refused before the first request: bad argument or setting, unusable store, store locked
    130  interrupted (Ctrl-C, SIGTERM): the mirror is partial, whatever else happened

Stat keys are named after the component that counts them, as Scrapy's own are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scrapy.exceptions import IgnoreRequest
from scrapy.statscollectors import MemoryStatsCollector

if TYPE_CHECKING:
    from scrapy import Spider
    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

DOWNLOADED = "downloaded"
UPDATED = "updated"
UPTODATE = "uptodate"
CACHED = "cached"
FILTERED = "filtered"
INTERRUPTED = "interrupted"
FAILED = "failed"
# In the order the summary names them: these four always, the others when there are any.
STATUSES = (DOWNLOADED, UPTODATE, FAILED, FILTERED, UPDATED, INTERRUPTED)
ALWAYS_SHOWN = frozenset({DOWNLOADED, UPTODATE, FAILED, FILTERED})
COMPLETE = frozenset({DOWNLOADED, UPDATED, UPTODATE, CACHED})
# Complete, and fetched in this run: what "Downloaded N MiB" counts.
FETCHED = frozenset({DOWNLOADED, UPDATED})

# The files pipeline counts each file under Scrapy's own key, file_status_count/<status>.
FILE_STATUS = "file_status_count/"
# The files pipeline: files asked for so far, the progress bar's total.
EXPECTED_FILES = "files/expected"
# The download archive: items skipped because all their files are stored.
ARCHIVE_SKIPPED = "archive/skipped"
# The xkcd spider: numbers with no comic (404), and comics with no static image.
COMICS_MISSING = "xkcd/comics_missing"
COMICS_WITHOUT_IMAGE = "xkcd/comics_without_image"
# The listing spider: pages listing nothing, and files -a accept/reject left out.
EMPTY_PAGES = "listing/empty_pages"
FILES_NOT_WANTED = "listing/files_not_wanted"
# The urls spider: lines of the list that are not URLs, and draws that gave a file already drawn.
BAD_URLS = "urls/bad_lines"
IDENTICAL_DRAWS = "urls/identical_draws"
# Any spider: a page or source that could not be read (log_error()).
ERRORS = "crawl/errors"
# -a dry_run=true: files that would be fetched, how many of them have a known size, and its sum.
DRY_RUN_WOULD_FETCH = "dry_run/would_fetch"
DRY_RUN_SIZED = "dry_run/sized"
DRY_RUN_BYTES = "dry_run/bytes"

# The project's own counts, in the report next to the statuses.
COUNTED = (
    EXPECTED_FILES,
    ARCHIVE_SKIPPED,
    COMICS_MISSING,
    COMICS_WITHOUT_IMAGE,
    EMPTY_PAGES,
    FILES_NOT_WANTED,
    BAD_URLS,
    IDENTICAL_DRAWS,
    ERRORS,
    DRY_RUN_WOULD_FETCH,
    DRY_RUN_SIZED,
    DRY_RUN_BYTES,
)
# What makes a run exit 1.
FAILURES = (FILE_STATUS + FAILED, BAD_URLS, ERRORS)

# The policy sources: the only refusals counted as filtered. Each raises Filtered with its name.
# Raised by xkcdcrawl.filters.Offsite for a page outside the start host.
OFFSITE = "offsite"
# Raised by xkcdcrawl.filters.RobotsTxt when ROBOTSTXT_OBEY is on.
ROBOTS_TXT = "robots.txt"
# Raised by xkcdcrawl.dryrun for -a dry_run=true.
DRY_RUN = "dry run"
POLICY = frozenset({OFFSITE, ROBOTS_TXT, DRY_RUN})

# Exit statuses.
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130
# The finish reason of a crawl refused because another crawl holds the store (xkcdcrawl.lock).
STORE_LOCKED = "store_locked"


class Stats(MemoryStatsCollector):
    """Scrapy's MemoryStatsCollector (STATS_CLASS), without a toll on its own private attributes.

    Scrapy 2.19's StatsCollector.__getattribute__ wraps its public methods to warn about a
    `spider` argument, and on the way makes every attribute access, `self._stats` inside
    inc_value() included, try a missing attribute first: a raised AttributeError for each of
    the dozen counts a file makes. Private names go straight to the object; public ones still
    go through Scrapy's wrapper, so its warnings stay.
    """

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        return super().__getattribute__(name)


class Filtered(IgnoreRequest):
    """A request refused by one of the POLICY sources: not a failure."""

    def __init__(self, source: str, message: str) -> None:
        assert source in POLICY, source
        super().__init__(message)
        self.source = source


class Interrupted(IgnoreRequest):
    """A file request not sent because the run is stopping: the next run fetches it."""


def is_policy(exc: BaseException | None) -> bool:
    """Filtered by a policy source, not failed: the one test of it."""
    return isinstance(exc, Filtered)


def status_of(exc: BaseException | None) -> str:
    """The status of a file whose request ended with this exception."""
    if isinstance(exc, Interrupted):
        return INTERRUPTED
    return FILTERED if is_policy(exc) else FAILED


def reason(exc: BaseException | None) -> str:
    """'HTTP 404', or the exception's own words: for the feed and one-line log messages."""
    # Imported here: a run that fails nothing need not import Twisted's error module tree.
    from scrapy.exceptions import CannotResolveHostError, DownloadConnectionRefusedError
    from scrapy.pipelines.media import FileException
    from scrapy.spidermiddlewares.httperror import HttpError
    from twisted.internet import error as twisted

    if isinstance(exc, HttpError) and exc.response is not None:
        return f"HTTP {exc.response.status}"
    # Twisted's words for these two are a sentence and an errno: the fact is enough.
    if isinstance(exc, DownloadConnectionRefusedError | twisted.ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, CannotResolveHostError | twisted.DNSLookupError):
        return "host name not found"
    text = str(exc).strip()
    if isinstance(exc, FileException | IgnoreRequest) and text:
        # Our own words already, or the middleware's.
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name


def log_error(spider: Spider, message: str, *args: Any) -> None:
    """Log a failure of the crawl itself (not of one file) and count it for the exit status."""
    spider.crawler.stats.inc_value(ERRORS)
    spider.logger.error(message, *args)


def counts(stats: StatsCollector) -> dict[str, int]:
    """Files by status, from the pipeline's stats (cached files count as downloaded)."""
    found = {status: int(stats.get_value(FILE_STATUS + status, 0)) for status in STATUSES}
    found[DOWNLOADED] += int(stats.get_value(FILE_STATUS + CACHED, 0))
    return found


def failures(stats: StatsCollector) -> int:
    """What went wrong in a run: failed files, unusable lines of a URL list, unreadable sources."""
    return sum(int(stats.get_value(key, 0)) for key in FAILURES)


def summary(stats: StatsCollector) -> str:
    """One line a person or a cron mail can read."""
    found = counts(stats)
    files = ", ".join(f"{n} {status}" for status, n in found.items() if n or status in ALWAYS_SHOWN)
    extra = {
        "comics missing": stats.get_value(COMICS_MISSING, 0),
        "without image": stats.get_value(COMICS_WITHOUT_IMAGE, 0),
        "skipped as complete": stats.get_value(ARCHIVE_SKIPPED, 0),
        "bad URLs in the list": stats.get_value(BAD_URLS, 0),
        "errors": stats.get_value(ERRORS, 0),
    }
    rest = "".join(f", {n} {what}" for what, n in extra.items() if n)
    return f"Files: {files}{rest}"


def interrupted(stats: StatsCollector | None) -> bool:
    """A crawl stopped by a signal: 'shutdown' after the first, never closed after the second."""
    if stats is None:
        return False
    finish = stats.get_value("finish_reason")
    return finish == "shutdown" or (finish is None and stats.get_value("start_time") is not None)


def not_fetched(stats: StatsCollector) -> int:
    """Files an interrupted run did not fetch: those it parked, and those found but never asked for."""
    found = counts(stats)
    done = sum(found.values()) - found[INTERRUPTED]
    return max(int(stats.get_value(EXPECTED_FILES, 0)) - done, 0)


def exit_status(crawler: Crawler, fail_on_error: bool, bootstrap_failed: bool = False) -> int:
    """The exit status of a finished crawl (the table above)."""
    stats = crawler.stats
    if bootstrap_failed:
        return EXIT_FAILED
    if stats is not None and stats.get_value("finish_reason") == STORE_LOCKED:
        return EXIT_REFUSED
    if interrupted(stats):
        # A script's `&&` must not carry on with a partial mirror.
        return EXIT_INTERRUPTED
    if stats is not None and failures(stats) and fail_on_error:
        # Cron and scrapyd users see that files are missing.
        return EXIT_FAILED
    return 0
