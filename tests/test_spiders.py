"""Every spider: named as its module, documented with a `scrapy crawl` example, arguments checked."""

from __future__ import annotations

import pytest
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings

from xkcdcrawl.args import SpiderArgs

LOADER = SpiderLoader.from_settings(get_project_settings())


def test_the_four_sources() -> None:
    assert sorted(LOADER.list()) == ["album", "listing", "urls", "xkcd"]


@pytest.mark.parametrize("name", LOADER.list())
def test_spider_shape(name: str) -> None:
    spidercls = LOADER.load(name)
    assert spidercls.__module__ == f"xkcdcrawl.spiders.{name}"
    assert f"scrapy crawl {name} " in (spidercls.__doc__ or "")
    assert issubclass(spidercls.args_model, SpiderArgs)
    assert "start_requests" not in vars(spidercls)  # never called by Scrapy 2.19 once start() exists


def test_settings_turn_off_remote_code_execution() -> None:
    settings = get_project_settings()
    assert settings.getbool("TELNETCONSOLE_ENABLED") is False
    assert settings.getbool("REMOTE_CONTROL_ENABLED") is False
