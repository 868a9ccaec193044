"""The project's spider loader: the spiders Scrapy's finds, importing only the one asked for."""

from __future__ import annotations

import pytest
from scrapy import Request
from scrapy.spiderloader import SpiderLoader as ScrapySpiderLoader
from scrapy.spiderloader import get_spider_loader
from scrapy.utils.project import get_project_settings

from xkcdcrawl.spiderloader import SpiderLoader

SETTINGS = get_project_settings()
SCRAPYS = ScrapySpiderLoader.from_settings(SETTINGS)


def test_it_is_the_projects_loader() -> None:
    assert isinstance(get_spider_loader(SETTINGS), SpiderLoader)


@pytest.mark.parametrize("name", SCRAPYS.list())
def test_each_spider_is_scrapys_and_loaded_alone(name: str) -> None:
    loader = SpiderLoader.from_settings(SETTINGS)
    assert loader.load(name) is SCRAPYS.load(name)
    assert loader.everything is None  # found in its own module: no other spider module needed


def test_list_and_unknown_names_are_scrapys() -> None:
    loader = SpiderLoader.from_settings(SETTINGS)
    assert sorted(loader.list()) == sorted(SCRAPYS.list())
    for name in ("nope", "no-such.spider", "spiders"):
        with pytest.raises(KeyError):
            loader.load(name)
    request = Request("https://xkcd.com/1/")
    assert loader.find_by_request(request) == SCRAPYS.find_by_request(request)
