"""A download archive: the items whose files are all stored, so a re-run skips them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from itemadapter import ItemAdapter
from scrapy import signals

if TYPE_CHECKING:
    from collections.abc import Callable

    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

COMPLETE = {"downloaded", "uptodate", "cached"}


def local_store(crawler: Crawler) -> Path | None:
    """FILES_STORE as a local folder, or None for s3://, gs://, ftp:// stores."""
    uri = str(crawler.settings.get("FILES_STORE") or "")
    if "://" in uri and not uri.startswith("file://"):
        return None
    return Path(uri.removeprefix("file://")) if uri else None


class DownloadArchive:
    """gallery-dl's --download-archive for Scrapy: one JSON line per complete item.

    scrapy-deltafetch records an item as soon as the spider yields it, before the
    pipeline has stored its files, so a failed download would never be tried again.
    Here an item is recorded from ``item_scraped``, after the pipeline, and only when
    every file is stored; a key counts as done only while its files are still there.
    """

    def __init__(self, path: Path, root: Path, key: Callable[[Any], str | None]) -> None:
        self.path, self.root, self.key = path, root, key
        self.done = self._load(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = path.open("a", encoding="utf-8")

    @classmethod
    def from_crawler(cls, crawler: Crawler, key: Callable[[Any], str | None]) -> Self | None:
        root = local_store(crawler)
        if not crawler.settings.getbool("XKCDCRAWL_ARCHIVE") or root is None:
            return None
        assert crawler.spidercls is not None
        path = root / ".xkcdcrawl" / f"archive-{crawler.spidercls.name}.jsonl"
        archive = cls(path, root, key)
        crawler.signals.connect(archive.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(archive.close, signal=signals.spider_closed)
        return archive

    def __contains__(self, key: str) -> bool:
        paths = self.done.get(key)
        return paths is not None and all((self.root / p).is_file() for p in paths)

    def item_scraped(self, item: Any) -> None:
        files = ItemAdapter(item).get("files") or []
        key = self.key(item)
        if key is None or any(f.get("status") not in COMPLETE for f in files):
            return
        paths = [f["path"] for f in files]
        self.done[key] = paths
        self._out.write(json.dumps({"key": key, "paths": paths}) + "\n")
        self._out.flush()

    def close(self) -> None:
        self._out.close()

    @staticmethod
    def _load(path: Path) -> dict[str, list[str]]:
        done: dict[str, list[str]] = {}
        if not path.exists():
            return done
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                done[record["key"]] = record["paths"]
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a killed run
        return done
