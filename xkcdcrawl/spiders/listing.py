"""Every file of a web-server directory listing, recursively, never above the start URL."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import scrapy
from scrapy.http import TextResponse

from xkcdcrawl.args import ListingArgs, globs
from xkcdcrawl.checksums import parse_sums, sums_algorithm
from xkcdcrawl.items import FileItem
from xkcdcrawl.listing_parse import Entry, list_entries, relative_path
from xkcdcrawl.naming import clear_of_folders, folder_names, listed_place
from xkcdcrawl.outcomes import EMPTY_PAGES, FILES_NOT_WANTED, is_policy, log_error, reason
from xkcdcrawl.spiders import ArgsSpider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from scrapy.http import Response
    from twisted.python.failure import Failure


def listed_file(url: str, root: str | None, path: str | None = None) -> FileItem:
    """A listed file, stored as <host>[_port]/<its path on the server>: below root (or as given)."""
    if path is None and root:
        path = relative_path(url, root)
    elif path is None:
        path = unquote(urlsplit(url).path, errors="surrogateescape").rpartition("/")[2]
    folder, name, path = listed_place(url, path)
    return FileItem(url=url, folder=folder, name=name, path=path, file_urls=[url])


# A start URL whose host refuses connections is given up after one retry (BackoffRetryMiddleware).
START = {"xkcdcrawl_start": True}


def wanted(name: str, accept: tuple[str, ...], reject: tuple[str, ...]) -> bool:
    """wget's -A/-R on a file name."""
    if accept and not any(fnmatchcase(name, p) for p in accept):
        return False
    return not any(fnmatchcase(name, p) for p in reject)


class ListingSpider(ArgsSpider[ListingArgs]):
    """A directory listing and its sub-folders: scrapy crawl listing -a url=https://host/pub/"""

    name = "listing"
    args_model = ListingArgs

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed_domains = [urlsplit(self.args.url).hostname or ""]
        self.accept = globs(self.args.accept) if self.args.accept else ()
        self.reject = globs(self.args.reject) if self.args.reject else ()

    async def start(self) -> AsyncIterator[scrapy.Request]:
        url = self.args.url
        if url.endswith("/"):
            yield scrapy.Request(
                url, self.parse_listing, errback=self.start_failed, cb_kwargs={"root": url, "depth": 0}, meta=START
            )
        else:
            # A listing without its slash, or one file: ask the server which.
            yield scrapy.Request(url, self.parse_start, method="HEAD", errback=self.start_failed, meta=START)

    def start_failed(self, failure: Failure) -> None:
        log_error(self, "Cannot read %s: %s", self.args.url, reason(failure.value))

    def page_failed(self, failure: Failure) -> None:
        """A sub-folder that cannot be read: its files are missing, in one line (not a traceback)."""
        url = failure.request.url  # type: ignore[attr-defined]
        # A policy source (robots.txt, offsite) refused it: not a failure.
        if is_policy(failure.value):
            self.logger.info("Not read %s: %s", url, reason(failure.value))
            return
        log_error(self, "Cannot read %s: %s", url, reason(failure.value))

    def sums_request(self, sums: list[FileItem], items: list[FileItem]) -> scrapy.Request:
        """Read the next checksum file of a listing; its files wait for it."""
        return scrapy.Request(
            sums[0].url,
            self.parse_sums,
            errback=self.sums_failed,
            cb_kwargs={"sums": sums, "items": items},
            dont_filter=True,
        )

    def parse_sums(self, response: Response, sums: list[FileItem], items: list[FileItem]) -> Iterator[Any]:
        name = sums[0].name or ""
        algorithm = sums_algorithm(name)
        assert algorithm is not None
        digests = parse_sums(response.text if isinstance(response, TextResponse) else "", algorithm)
        # "x.iso.sha256" may hold just the hash.
        if not digests and name.lower().endswith(f".{algorithm}"):
            text = response.body.decode("latin-1").split()
            digests = parse_sums(f"{text[0]}  {name.rsplit('.', 1)[0]}", algorithm) if text else {}
        folder = sums[0].path.rpartition("/")[0] if sums[0].path else ""
        for item in items:
            listed = item.path if item.path is not None else item.name or ""
            local = listed[len(folder) + 1 :] if folder else listed
            if (digest := digests.get(local)) is not None:
                item.digests = {**item.digests, algorithm: digest}
        yield from self.after_sums(sums, items)

    def sums_failed(self, failure: Failure) -> Iterator[Any]:
        sums, items = failure.request.cb_kwargs["sums"], failure.request.cb_kwargs["items"]  # type: ignore[attr-defined]
        self.logger.warning("Cannot read %s (%s): its files are not checked", sums[0].url, reason(failure.value))
        yield from self.after_sums(sums, items)

    def after_sums(self, sums: list[FileItem], items: list[FileItem]) -> Iterator[Any]:
        if len(sums) > 1:
            yield self.sums_request(sums[1:], items)
        else:
            yield from items

    def parse_start(self, response: Response) -> Iterator[scrapy.Request | FileItem]:
        if b"text/html" in (response.headers.get("Content-Type") or b""):
            root = response.url if response.url.endswith("/") else response.url + "/"
            yield scrapy.Request(
                root, self.parse_listing, errback=self.start_failed, cb_kwargs={"root": root, "depth": 0}
            )
        else:
            yield listed_file(response.url, None)

    def parse_listing(self, response: Response, root: str, depth: int) -> Iterator[scrapy.Request | FileItem]:
        if not isinstance(response, TextResponse):
            self.logger.warning(
                "%s is not a listing page (%s), skipped", response.url, response.headers.get("Content-Type")
            )
            return
        dirs, entries = list_entries(response, root)
        if not dirs and not entries:
            self.crawler.stats.inc_value(EMPTY_PAGES)
            self.logger.info("Empty listing: %s", response.url)
        # Sub-folders first: their pages are read while this page's files download.
        if self.args.depth is None or depth < self.args.depth:
            yield from response.follow_all(
                dirs, self.parse_listing, errback=self.page_failed, cb_kwargs={"root": root, "depth": depth + 1}
            )
        # A file beside a sub-folder of the same name (dup and dup/): both kept.
        beside = folder_names(dirs)
        items = (item for entry in entries if (item := self.listed(entry, beside)) is not None)
        # Checksum files (SHA256SUMS, x.iso.sha256...) say what the files beside them must be:
        # read first, the files then go with the digests the pipeline checks them against.
        if any(sums_algorithm(entry.path.rpartition("/")[2]) for entry in entries):
            listed = list(items)
            # Unless -a reject= left them out.
            if sums := [i for i in listed if sums_algorithm(i.name or "")]:
                yield self.sums_request(sums, listed)
            else:
                yield from listed
        else:
            # One at a time, as the pipeline takes them: a page's items are not all in memory at once.
            yield from items

    def listed(self, entry: Entry, beside: set[str]) -> FileItem | None:
        """The item of a listed file, or None for a file accept/reject leaves out."""
        item = listed_file(entry.url, None, entry.path)
        if not wanted(item.name or "", self.accept, self.reject):
            self.crawler.stats.inc_value(FILES_NOT_WANTED)
            return None
        item.listed = entry.listed
        if beside:
            item.name = clear_of_folders(item.name or "", entry.url, beside)
        return item
