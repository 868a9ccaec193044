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
    # ISO 8601, made from the API's unpadded year, month and day.
    date: str
    page_url: str
    # None for an interactive comic with no static image.
    image_url: str | None
    # Only the comic page gives it: None unless the page was read (hires, or no image in the API).
    image_2x_url: str | None = None
    # The API's link (often a large version), else the page's when the page was read.
    link: str = ""
    folder: str = "xkcd"
    file_urls: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FileItem:
    """One file to store: where it comes from and the folder it goes to."""

    url: str
    folder: str
    # The spider's own name for the file; None means the name in the URL.
    name: str | None = None
    # Where the file was listed, relative to the start URL.
    path: str | None = None
    # Which of `repeat` fetches of one URL this is.
    draw: int | None = None
    # What a checksum file says the file is: {"sha256": hex}.
    digests: dict[str, str] = field(default_factory=dict)
    # What the listing shows of it, as shown: {"size": "4.1K", "date": "01-Dec-2026 21:00"}.
    listed: dict[str, str] = field(default_factory=dict)
    file_urls: list[str] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
