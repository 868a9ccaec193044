"""Spider arguments, validated before the crawl starts."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)


class SpiderArgs(BaseModel):
    """Base of every spider's arguments: a misspelt -a is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # List the files a run would fetch, and fetch none.
    dry_run: bool = False
    # Fetch only the files the last run report lists as failed.
    retry_failed: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Self:
        # scrapyd adds -a _job=<id>: underscore keys belong to the runner.
        return cls.model_validate({k: v for k, v in kwargs.items() if not k.startswith("_")})


def http_url(value: str, *, strip: bool = True) -> str:
    """An absolute http(s) URL with a host; by default without trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/") if strip else value


class XkcdArgs(SpiderArgs):
    start: PositiveInt = Field(1, description="first comic number", examples=["1"])
    # None means up to the newest comic.
    end: PositiveInt | None = Field(None, description="last comic number (none: the newest)", examples=["1400"])
    # A mirror, or the tests' 127.0.0.1 site.
    base_url: str = Field("https://xkcd.com", description="the site or a mirror", examples=["https://xkcd.com"])
    hires: bool = Field(False, description="store the 2x image where the page offers one", examples=["true"])

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        return http_url(value)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self


def describe(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line naming each bad argument, its value and what is wrong."""
    fields = model.model_fields if model is not None else {}
    problems = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            near = difflib.get_close_matches(where, list(fields), n=1)
            problems.append(f"unknown argument {where!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        elif e["type"] == "missing" and (info := fields.get(where)) is not None:
            example = (info.examples or ["..."])[0]
            problems.append(f"missing -a {where}=...: {info.description}, e.g. -a {where}={example}")
        elif where:
            problems.append(f"{where}={e['input']!r}: {msg}")
        else:
            problems.append(msg)
    return "; ".join(problems)


def usage(spider: str, doc: str, model: type[BaseModel]) -> str:
    """What `scrapy crawl SPIDER -a help=true` prints: each argument, its default and meaning."""
    lines = [doc.strip(), "", f"arguments of {spider} (-a NAME=VALUE):"]
    for name, info in model.model_fields.items():
        default = "(required)" if info.is_required() else f"default: {str(info.default).lower()}"
        example = f" (e.g. -a {name}={info.examples[0]})" if info.examples else ""
        lines.append(f"  {name:<9} {default:<28} {info.description}{example}")
    return "\n".join(lines) + "\n"


def read_url_list(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(line number, URL) of the good lines and (line number, problem) of the bad ones.

    Blank lines and # comments are skipped, and so is a comment after a URL (`URL # why`):
    a URL has no space, so ' #' cannot be its fragment.
    """
    good: list[tuple[int, str]] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = re.split(r"\s#", line, maxsplit=1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            good.append((number, http_url(entry, strip=False)))
        except ValueError as error:
            bad.append((number, str(error)))
    return good, bad


class UrlsArgs(SpiderArgs):
    file: Path | None = Field(
        None, description="a text file of URLs, one a line (# comments skipped); or give urls", examples=["urls.txt"]
    )
    urls: str | None = Field(None, description="comma-separated URLs; or give file", examples=["https://host/a.pdf"])
    # Random-image endpoints answer a different file each time.
    repeat: PositiveInt = Field(1, description="fetch each URL this many times", examples=["10"])

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.file is None) == (self.urls is None):
            raise ValueError("give either file=PATH or urls=URL1,URL2")
        good, bad = self.entries()
        if not good:
            raise ValueError(f"no usable URL in {self.source()}" + (f" (line {bad[0][0]}: {bad[0][1]})" if bad else ""))
        return self

    def source(self) -> str:
        return str(self.file) if self.file is not None else "urls"

    def entries(self) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        if self.file is None:
            return read_url_list("\n".join((self.urls or "").split(",")))
        try:
            return read_url_list(self.file.read_text(encoding="utf-8"))
        except OSError as error:
            raise ValueError(f"cannot read {self.file}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"cannot read {self.file}: not UTF-8 text") from None


def globs(value: str) -> tuple[str, ...]:
    """Comma-separated file-name patterns, like wget's -A/-R lists."""
    patterns = tuple(p.strip() for p in value.split(","))
    if not all(patterns):
        raise ValueError(f"{value!r} has an empty pattern")
    return patterns


class ListingArgs(SpiderArgs):
    url: str = Field(description="the listing to mirror", examples=["https://host/pub/"])
    depth: NonNegativeInt | None = Field(
        None, description="levels of sub-folders to follow (0: this page only; none: no limit)", examples=["1"]
    )
    accept: str | None = Field(None, description="comma-separated file-name patterns to keep", examples=["*.zip,*.txt"])
    reject: str | None = Field(None, description="comma-separated file-name patterns to skip", examples=["*.iso"])

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return http_url(value, strip=False)

    @field_validator("accept", "reject")
    @classmethod
    def _globs(cls, value: str) -> str:
        globs(value)
        return value


class AlbumArgs(SpiderArgs):
    url: str = Field(
        description="a gallery page, or an Imgur album", examples=["https://example.com/gallery/cats.html"]
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        return http_url(value, strip=False)
