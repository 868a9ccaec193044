"""Spider arguments, validated before the crawl starts.

Each spider's arguments are a frozen dataclass whose fields say how to read a -a value
(`parse`), what it means and an example. Plain dataclasses, not a validation library:
every run reads them, and importing one cost a tenth of the start-up.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

# dataclasses.MISSING, under a name that says what it means here.
REQUIRED: Any = dataclasses.MISSING
TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class ArgsError(ValueError):
    """Every problem with a spider's arguments; str() is the one line `scrapy crawl` prints."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def arg(default: Any, meaning: str, example: str, parse: Callable[[Any], Any] | None = None) -> Any:
    """A field of a spider's arguments: its default (REQUIRED: none), meaning, example and reader."""
    metadata = {"help": meaning, "example": example, "parse": parse or string}
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not text")
    return value


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ValueError("not true or false")


def whole(least: int) -> Callable[[Any], int]:
    """A reader of whole numbers from `least` on (1: positive, 0: not negative)."""

    def read(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("not a whole number")
        try:
            number = int(value)
        except ValueError:
            raise ValueError("not a whole number") from None
        if number < least:
            raise ValueError(f"must be {least} or more")
        return number

    return read


def http_url(value: Any, *, strip: bool = True) -> str:
    """An absolute http(s) URL with a host; by default without trailing slash."""
    url = string(value)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url.rstrip("/") if strip else url


def http_url_as_given(value: Any) -> str:
    return http_url(value, strip=False)


def globs(value: str) -> tuple[str, ...]:
    """Comma-separated file-name patterns, like wget's -A/-R lists."""
    patterns = tuple(p.strip() for p in string(value).split(","))
    if not all(patterns):
        raise ValueError(f"{value!r} has an empty pattern")
    return patterns


def glob_list(value: Any) -> str:
    globs(value)
    return str(value)


def path(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ValueError("not a file name")
    return Path(value)


@dataclass(frozen=True, kw_only=True)
class SpiderArgs:
    """Base of every spider's arguments: a misspelt -a is an error."""

    dry_run: bool = arg(False, "list the files a run would fetch, and fetch none", "true", flag)
    retry_failed: bool = arg(False, "fetch only the files the last run report lists as failed", "true", flag)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Self:
        """The arguments read from -a NAME=VALUE strings (or typed values); ArgsError names every bad one."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, value in kwargs.items():
            # scrapyd adds -a _job=<id>: underscore keys belong to the runner.
            if name.startswith("_"):
                continue
            if (field := fields.get(name)) is None:
                near = difflib.get_close_matches(name, list(fields), n=1)
                problems.append(f"unknown argument {name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
                continue
            try:
                values[name] = field.metadata["parse"](value)
            except ValueError as error:
                problems.append(f"{name}={value!r}: {error}")
        for name, field in fields.items():
            if name not in kwargs and field.default is REQUIRED:
                meta = field.metadata
                problems.append(f"missing -a {name}=...: {meta['help']}, e.g. -a {name}={meta['example']}")
        if problems:
            raise ArgsError(problems)
        try:
            return cls(**values)
        except ValueError as error:
            # What __post_init__ found wrong between the arguments.
            raise ArgsError([str(error)]) from None

    def as_json(self) -> dict[str, Any]:
        """The arguments as the run report writes them: JSON values (a file name as its text)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: str(value) if isinstance(value, Path) else value for name, value in values.items()}


def usage(spider: str, doc: str, model: type[SpiderArgs]) -> str:
    """What `scrapy crawl SPIDER -a help=true` prints: each argument, its default and meaning."""
    fields = dataclasses.fields(model)
    width = max(len(f.name) for f in fields)
    lines = [doc.strip(), "", f"arguments of {spider} (-a NAME=VALUE):"]
    for f in fields:
        default = "(required)" if f.default is REQUIRED else f"default: {str(f.default).lower()}"
        lines.append(
            f"  {f.name:<{width}} {default:<28} {f.metadata['help']} (e.g. -a {f.name}={f.metadata['example']})"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class XkcdArgs(SpiderArgs):
    start: int = arg(1, "first comic number", "1", whole(1))
    # None means up to the newest comic.
    end: int | None = arg(None, "last comic number (none: the newest)", "1400", whole(1))
    # A mirror, or the tests' 127.0.0.1 site.
    base_url: str = arg("https://xkcd.com", "the site or a mirror", "https://xkcd.com", http_url)
    hires: bool = arg(False, "store the 2x image where the page offers one", "true", flag)

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")


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


@dataclass(frozen=True, kw_only=True)
class UrlsArgs(SpiderArgs):
    file: Path | None = arg(
        None, "a text file of URLs, one a line (# comments skipped); or give urls", "urls.txt", path
    )
    urls: str | None = arg(None, "comma-separated URLs; or give file", "https://host/a.pdf")
    # Random-image endpoints answer a different file each time.
    repeat: int = arg(1, "fetch each URL this many times", "10", whole(1))

    def __post_init__(self) -> None:
        if (self.file is None) == (self.urls is None):
            raise ValueError("give either file=PATH or urls=URL1,URL2")
        good, bad = self.entries()
        if not good:
            raise ValueError(f"no usable URL in {self.source()}" + (f" (line {bad[0][0]}: {bad[0][1]})" if bad else ""))

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


@dataclass(frozen=True, kw_only=True)
class ListingArgs(SpiderArgs):
    url: str = arg(REQUIRED, "the listing to mirror", "https://host/pub/", http_url_as_given)
    depth: int | None = arg(None, "levels of sub-folders to follow (0: this page only; none: no limit)", "1", whole(0))
    accept: str | None = arg(None, "comma-separated file-name patterns to keep", "*.zip,*.txt", glob_list)
    reject: str | None = arg(None, "comma-separated file-name patterns to skip", "*.iso", glob_list)


@dataclass(frozen=True, kw_only=True)
class AlbumArgs(SpiderArgs):
    url: str = arg(
        REQUIRED, "a gallery page, or an Imgur album", "https://example.com/gallery/cats.html", http_url_as_given
    )
