"""Every image of a gallery page, or of an Imgur album through Imgur's API."""

from __future__ import annotations

import json
import posixpath
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import scrapy
from scrapy.http import TextResponse

from xkcdcrawl.args import AlbumArgs
from xkcdcrawl.items import FileItem
from xkcdcrawl.naming import distinct_name, host_folder, safe_segment, url_file_name
from xkcdcrawl.outcomes import log_error, reason
from xkcdcrawl.spiders import ArgsSpider

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping

    from scrapy.http import Response
    from scrapy.settings import BaseSettings
    from twisted.python.failure import Failure

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".bmp", ".tif", ".tiff", ".svg"}
IMGUR_HOSTS = {"imgur.com", "www.imgur.com", "m.imgur.com"}


def imgur_album_id(url: str) -> str | None:
    """The album id of https://imgur.com/a/ID (or /gallery/ID), else None."""
    parts = urlsplit(url)
    match = re.fullmatch(r"/(?:a|gallery)/([A-Za-z0-9]+)/?", parts.path)
    return match[1] if match and parts.hostname in IMGUR_HOSTS else None


def album_folder(url: str) -> str:
    """Where an album's images go: the last part of its URL, else its host (and port)."""
    last = unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2], errors="surrogateescape")
    return safe_segment(posixpath.splitext(last)[0]) if posixpath.splitext(last)[0] else host_folder(url)


def _largest(srcset: str) -> str | None:
    """The biggest candidate of a srcset, by width (w) or density (x)."""
    best: tuple[float, str] | None = None
    for candidate in srcset.split(","):
        url, _, descriptor = candidate.strip().partition(" ")
        descriptor = descriptor.strip() or "1x"
        try:
            size = float(descriptor[:-1])
        except ValueError:
            continue
        if url and (best is None or size > best[0]):
            best = (size, url)
    return best[1] if best else None


def gallery_images(response: TextResponse) -> list[str]:
    """Image URLs of a page: each <img> (largest srcset or <picture> candidate), and links to images."""
    found: list[str] = []
    for img in response.css("img"):
        # In a <picture>, the <source> elements hold the big candidates; the <img> is the fallback.
        # (lxml nests an <img> that follows a <source> inside it: any <source> of the picture.)
        srcsets = [*img.xpath("ancestor::picture[1]//source/@srcset").getall(), img.attrib.get("srcset", "")]
        src = _largest(",".join(srcsets)) or img.attrib.get("data-src") or img.attrib.get("src")
        if src and not src.startswith("data:"):
            found.append(response.urljoin(src))
    for href in response.css("a::attr(href)").getall():
        url = response.urljoin(href)
        if posixpath.splitext(urlsplit(url).path)[1].lower() in IMAGE_EXTENSIONS:
            found.append(url)
    return [url for url in dict.fromkeys(found) if url.startswith(("http://", "https://"))]


def imgur_images(payload: Mapping[str, Any]) -> list[str]:
    """Image links of an Imgur API answer: /3/album/{id}/images, or /3/album/{id}."""
    data = payload.get("data") or []
    images = data.get("images") or [] if isinstance(data, dict) else data
    return [image["link"] for image in images if isinstance(image, dict) and image.get("link")]


def album_items(urls: list[str], folder: str) -> Iterator[FileItem]:
    taken: set[str] = set()
    for url in urls:
        name = distinct_name(url_file_name(url), url, taken)
        yield FileItem(url=url, folder=folder, name=name, file_urls=[url])


class AlbumSpider(ArgsSpider[AlbumArgs]):
    """Images of a gallery page or an Imgur album: scrapy crawl album -a url=https://imgur.com/a/ID"""

    name = "album"
    args_model = AlbumArgs

    @property
    def imgur_id(self) -> str | None:
        """The album id when the url argument is an Imgur album, else None (a gallery page)."""
        return imgur_album_id(self.args.url)

    @classmethod
    def check_settings(cls, args: AlbumArgs, settings: BaseSettings) -> None:
        if imgur_album_id(args.url) and not settings.get("IMGUR_CLIENT_ID"):
            raise ValueError(
                "an Imgur album needs an API client id: -s IMGUR_CLIENT_ID=... (api.imgur.com/oauth2/addclient)"
            )

    async def start(self) -> AsyncIterator[scrapy.Request]:
        if self.imgur_id is None:
            # A host that refuses connections is given up after one retry (BackoffRetryMiddleware).
            meta = {"xkcdcrawl_start": True}
            yield scrapy.Request(self.args.url, callback=self.parse_gallery, errback=self.start_failed, meta=meta)
            return
        self.check_settings(self.args, self.settings)
        api = self.settings.get("XKCDCRAWL_IMGUR_API_URL").rstrip("/")
        headers = {"Authorization": f"Client-ID {self.settings.get('IMGUR_CLIENT_ID')}"}
        yield scrapy.Request(
            f"{api}/3/album/{self.imgur_id}/images",
            headers=headers,
            callback=self.parse_imgur,
            errback=self.start_failed,
        )

    def start_failed(self, failure: Failure) -> None:
        log_error(self, "Cannot read %s: %s", failure.request.url, reason(failure.value))  # type: ignore[attr-defined]

    def parse_gallery(self, response: Response) -> Iterator[FileItem]:
        urls = gallery_images(response) if isinstance(response, TextResponse) else []
        if not urls:
            self.logger.warning("No image found on %s", response.url)
        yield from album_items(urls, album_folder(response.url))

    def parse_imgur(self, response: Response) -> Iterator[FileItem]:
        urls = imgur_images(json.loads(response.body))
        self.logger.info("Imgur album %s: %d images", self.imgur_id, len(urls))
        yield from album_items(urls, f"imgur-{self.imgur_id}")
