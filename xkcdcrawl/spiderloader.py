"""Spiders by name, importing only the one a crawl runs.

Scrapy's loader imports every spider module, and what each imports, before a crawl can start or
a bad argument be reported. Each spider here lives in the module of its name
(xkcdcrawl.spiders.listing for listing; tests/test_spiders.py holds them to it), so that
module is all `scrapy crawl listing` needs.
"""

from __future__ import annotations

import builtins
import importlib
from typing import TYPE_CHECKING, Self

from scrapy.spiderloader import SpiderLoader as ScrapySpiderLoader
from scrapy.utils.spider import iter_spider_classes

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.settings import BaseSettings


class SpiderLoader:
    """load(name) imports SPIDER_MODULES' module of that name only; anything else goes to Scrapy's loader.

    A name no module is named after, list() (scrapyd's `scrapy list`) and find_by_request() load
    every spider, as Scrapy does, and then answer from Scrapy's loader.
    """

    def __init__(self, settings: BaseSettings) -> None:
        self.settings = settings
        self.spider_modules: list[str] = settings.getlist("SPIDER_MODULES")
        self.everything: ScrapySpiderLoader | None = None

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> Self:
        return cls(settings)

    def all_spiders(self) -> ScrapySpiderLoader:
        if self.everything is None:
            self.everything = ScrapySpiderLoader.from_settings(self.settings)
        return self.everything

    def load(self, spider_name: str) -> type[Spider]:
        if self.everything is None and spider_name.isidentifier():
            for package in self.spider_modules:
                name = f"{package}.{spider_name}"
                try:
                    module = importlib.import_module(name)
                except ModuleNotFoundError as error:
                    if error.name == name:
                        continue  # no module of that name: Scrapy's loader looks everywhere
                    raise
                for spidercls in iter_spider_classes(module):
                    if spidercls.name == spider_name:
                        return spidercls
        return self.all_spiders().load(spider_name)

    def list(self) -> list[str]:
        return self.all_spiders().list()

    def find_by_request(self, request: Request) -> builtins.list[str]:
        return self.all_spiders().find_by_request(request)
