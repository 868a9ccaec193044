"""One spider module per source, named as the spider; the base they share binds the arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

import scrapy

if TYPE_CHECKING:
    from xkcdcrawl.args import SpiderArgs

# Covariant: every spider is an ArgsSpider[SpiderArgs] too (its arguments are frozen).
A = TypeVar("A", bound="SpiderArgs", covariant=True)


class ArgsSpider(scrapy.Spider, Generic[A]):
    """A spider whose -a arguments are validated by args_model into self.args.

    It has no name, so Scrapy's spider loader does not list it.
    """

    args_model: type[A]
    args: A

    def __init__(self, **kwargs: Any) -> None:
        # Not super().__init__(**kwargs): Scrapy would set each argument as an attribute,
        # and -a start=1 would put the string "1" over the start() method.
        super().__init__()
        self.args = self.args_model.from_kwargs(kwargs)
