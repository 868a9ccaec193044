"""Spider arguments, validated before the crawl starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, PositiveInt, ValidationError, field_validator, model_validator


class SpiderArgs(BaseModel):
    """Base of every spider's arguments: a misspelt -a is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Self:
        # scrapyd adds -a _job=<id>: underscore keys belong to the runner
        return cls.model_validate({k: v for k, v in kwargs.items() if not k.startswith("_")})


def http_url(value: str) -> str:
    """An absolute http(s) URL with a host, without trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


class XkcdArgs(SpiderArgs):
    start: PositiveInt = 1
    end: PositiveInt | None = None  # None: up to the newest comic
    base_url: str = "https://xkcd.com"  # a mirror, or the tests' 127.0.0.1 site
    hires: bool = False  # store the 2x image where the page offers one

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        return http_url(value)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


def describe(error: ValidationError) -> str:
    """One line naming each bad argument, its value and what is wrong."""
    problems = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown argument {where!r}")
        elif where:
            problems.append(f"{where}={e['input']!r}: {msg}")
        else:
            problems.append(msg)
    return "; ".join(problems)
