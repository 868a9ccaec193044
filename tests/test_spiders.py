"""Every spider: named as its module, documented with a `scrapy crawl` example, arguments checked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings

from xkcdcrawl.args import SpiderArgs

if TYPE_CHECKING:
    from conftest import Crawl

LOADER = SpiderLoader.from_settings(get_project_settings())


def test_the_four_sources() -> None:
    assert sorted(LOADER.list()) == ["album", "listing", "urls", "xkcd"]


@pytest.mark.parametrize("name", LOADER.list())
def test_spider_shape(name: str) -> None:
    spidercls = LOADER.load(name)
    assert spidercls.__module__ == f"xkcdcrawl.spiders.{name}"
    assert f"scrapy crawl {name} " in (spidercls.__doc__ or "")
    assert issubclass(getattr(spidercls, "args_model", object), SpiderArgs)
    assert "start_requests" not in vars(spidercls)  # never called by Scrapy 2.19 once start() exists


def test_settings_turn_off_remote_code_execution() -> None:
    settings = get_project_settings()
    assert settings.getbool("TELNETCONSOLE_ENABLED") is False
    assert settings.getbool("REMOTE_CONTROL_ENABLED") is False
    loaded = settings.getdict("EXTENSIONS_BASE")  # not even imported: aiohttp costs seconds of start-up
    assert "scrapy.extensions.remote_control.RemoteControl" not in loaded
    # Scrapy's core stats, kept by the run report that extends them.
    assert "scrapy.extensions.corestats.CoreStats" not in loaded
    assert loaded["xkcdcrawl.extensions.report.RunReport"] == 0


BAD_ARGUMENTS = [
    ("xkcd", ["-a", "start=abc"], "start='abc': not a whole number"),
    ("xkcd", ["-a", "end=0"], "end='0': must be 1 or more"),
    ("xkcd", ["-a", "start=5", "-a", "end=2"], "end (2) is before start (5)"),
    ("xkcd", ["-a", "strat=1"], "unknown argument 'strat'"),
    ("xkcd", ["-a", "base_url=file:///etc"], "is not an http(s) URL"),
    ("listing", [], "missing -a url=...: the listing to mirror, e.g. -a url=https://host/pub/"),
    ("listing", ["-a", "url=ftp://h/pub/"], "is not an http(s) URL"),
    ("listing", ["-a", "url=http://h/", "-a", "depth=-1"], "depth='-1': must be 0 or more"),
    ("listing", ["-a", "url=http://h/", "-a", "accept="], "has an empty pattern"),
    ("listing", ["-a", "url=http://h/", "-a", "reject=*.iso,,*.img"], "has an empty pattern"),
    ("urls", [], "give either file=PATH or urls=URL1,URL2"),
    ("urls", ["-a", "file=/nonexistent/urls.txt"], "cannot read /nonexistent/urls.txt: No such file or directory"),
    ("urls", ["-a", "urls=http://h/a", "-a", "repeat=0"], "repeat='0': must be 1 or more"),
    ("urls", ["-a", "urls=,,"], "no usable URL in urls"),
    ("album", ["-a", "url=javascript:alert(1)"], "is not an http(s) URL"),
    ("album", ["-a", "url=https://imgur.com/a/AbC12"], "an Imgur album needs an API client id: -s IMGUR_CLIENT_ID="),
]


@pytest.mark.parametrize(("spider", "args", "message"), BAD_ARGUMENTS)
def test_bad_arguments_give_one_line_and_exit_2(crawl: Crawl, spider: str, args: list[str], message: str) -> None:
    run = crawl(spider, *args)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert message in run.stderr
    assert not run.store.exists()  # refused before the crawl started
