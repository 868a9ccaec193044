"""The crawl command: bad settings, an unusable store and argument help, each before any request."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from servers.faultserver import FaultServer, file_body

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Crawl

pytestmark = pytest.mark.e2e

QUIET = ["-s", "XKCDCRAWL_PROGRESS_INTERVAL=0"]


BAD_SETTINGS = [
    ("CONCURRENT_REQUESTS_PER_DOMAIN=abc", "-s CONCURRENT_REQUESTS_PER_DOMAIN='abc': not a whole number"),
    ("CONCURRENT_REQUESTS_PER_DOMAIN=2.5", "-s CONCURRENT_REQUESTS_PER_DOMAIN='2.5': not a whole number"),
    ("CONCURRENT_REQUESTS=0", "-s CONCURRENT_REQUESTS='0': must be 1 or more"),
    ("DOWNLOAD_DELAY=x", "-s DOWNLOAD_DELAY='x': not a number"),
    ("DOWNLOAD_TIMEOUT=nan", "-s DOWNLOAD_TIMEOUT='nan': not a finite number"),
    ("RETRY_TIMES=-1", "-s RETRY_TIMES='-1': must be 0 or more"),
    ("ROBOTSTXT_OBEY=maybe", "-s ROBOTSTXT_OBEY='maybe': not true or false"),
    ("XKCDCRAWL_RETRY_BACKOFF=soon", "-s XKCDCRAWL_RETRY_BACKOFF='soon': not a number"),
    ("XKCDCRAWL_PROGRESS_INTERVAL=-5", "-s XKCDCRAWL_PROGRESS_INTERVAL='-5': must be 0 or more"),
    ("XKCDCRAWL_FAIL_ON_ERROR=yes please", "-s XKCDCRAWL_FAIL_ON_ERROR='yes please': not true or false"),
]


@pytest.mark.parametrize(("setting", "message"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_and_exit_2(server: FaultServer, crawl: Crawl, setting: str, message: str) -> None:
    run = crawl("urls", "-a", f"urls={server.url_for('/ok/a.bin')}", "-s", setting)
    assert run.returncode == 2
    assert run.stderr == f"scrapy crawl urls: error: {message}\n"
    assert server.hits == {}  # before any request
    assert not run.store.exists()


def test_good_values_of_the_same_settings_run(server: FaultServer, crawl: Crawl) -> None:
    good = ["CONCURRENT_REQUESTS_PER_DOMAIN=2", "DOWNLOAD_DELAY=0.01", "ROBOTSTXT_OBEY=false", "RETRY_TIMES=0"]
    run = crawl("urls", "-a", f"urls={server.url_for('/ok/a.bin')}", *QUIET, *[x for s in good for x in ("-s", s)])
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{server.folder}/a.bin": file_body("a.bin")}


def test_unusable_store_is_one_line_naming_it(server: FaultServer, crawl: Crawl, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way", encoding="utf-8")
    cases = {
        blocker / "store": "Not a directory",
        blocker: "Not a directory",
        tmp_path / "proc" / "store": "No such file or directory",
    }
    (tmp_path / "proc").symlink_to("/proc/self/fdinfo")  # /proc refuses new folders, even to root
    args = ["urls", "-a", f"urls={server.url_for('/ok/a.bin')}", *QUIET]
    for store, reason in cases.items():
        run = crawl(*args, store=store)
        assert run.returncode == 2, run.stderr
        line = run.stderr.splitlines()
        assert len(line) == 1, run.stderr
        assert line[0].startswith(f"scrapy crawl urls: error: FILES_STORE='{store}': cannot write there (")
        assert line[0].endswith(reason)
        assert "Traceback" not in run.stderr
    assert server.hits == {}
    assert blocker.read_text(encoding="utf-8") == "in the way"


def test_missing_parents_of_the_store_are_created(server: FaultServer, crawl: Crawl, tmp_path: Path) -> None:
    run = crawl("urls", "-a", f"urls={server.url_for('/ok/a.bin')}", *QUIET, store=tmp_path / "new" / "deep" / "store")
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{server.folder}/a.bin": file_body("a.bin")}


@pytest.mark.parametrize(
    ("spider", "lines"),
    [
        ("listing", ["url          (required)", "depth        default: none", "e.g. -a accept=*.zip,*.txt"]),
        ("urls", ["repeat       default: 1", "fetch each URL this many times"]),
        ("xkcd", ["start        default: 1", "hires        default: false", "base_url     default: https://xkcd.com"]),
        ("album", ["url          (required)", "a gallery page, or an Imgur album"]),
    ],
)
def test_help_lists_every_argument_with_its_default(crawl: Crawl, spider: str, lines: list[str]) -> None:
    run = crawl(spider, "-a", "help=true")
    assert run.returncode == 0, run.stderr
    assert f"scrapy crawl {spider} " in run.stdout  # the spider's own example
    for line in lines:
        assert line in run.stdout
    assert not run.store.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["listing"], "missing -a url=...: the listing to mirror, e.g. -a url=https://host/pub/"),
        (["album"], "missing -a url=...: a gallery page, or an Imgur album, e.g. -a url="),
        (["lsting"], "no spider named 'lsting' (did you mean 'listing'?)"),
        (["nothing-like-it"], "no spider named 'nothing-like-it'; spiders: album, listing, urls, xkcd"),
        (["xkcd", "-a", "strat=1"], "unknown argument 'strat' (did you mean 'start'?)"),
        (["listing", "-a", "url=http://h/", "-a", "dept=1"], "unknown argument 'dept' (did you mean 'depth'?)"),
    ],
)
def test_argument_messages_say_how_to_fix_them(crawl: Crawl, args: list[str], message: str) -> None:
    run = crawl(*args)
    assert run.returncode == 2
    assert run.stderr.startswith(f"scrapy crawl {args[0]}: error: {message}")
    assert run.stderr.count("\n") == 1, run.stderr
