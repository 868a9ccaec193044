"""Items: one per comic or per file, each naming the folder its files go to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ComicItem:
    """One xkcd comic with its metadata and image."""

    num: int
    title: str
    safe_title: str
    alt: str
    date: str  # ISO 8601, from the API's unpadded year/month/day
    page_url: str
    image_url: str | None  # None: an interactive comic with no static image
    # Only the comic page gives it: None unless the page was read (hires, or no image in the API).
    image_2x_url: str | None = None
    link: str = ""  # the API's link (often a large version), else the page's when it was read
    folder: str = "xkcd"
    file_urls: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FileItem:
    """One file to store: where it comes from and the folder it goes to."""

    url: str
    folder: str
    name: str | None = None  # the spider's own name for it; None: the name in the URL
    path: str | None = None  # where it was listed, relative to the start URL
    draw: int | None = None  # which of `repeat` fetches of one URL
    digests: dict[str, str] = field(default_factory=dict)  # what a checksum file says it is: {"sha256": hex}
    # What the listing shows of it, as shown: {"size": "4.1K", "date": "01-Dec-2026 21:00"}.
    listed: dict[str, str] = field(default_factory=dict)
    file_urls: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
