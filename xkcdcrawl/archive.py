"""The bookkeeping folder, FILES_STORE/.xkcdcrawl/: the download archive and the names book.

Both are ledgers, dicts kept as JSON lines there: the download archive (``archive-<spider>.jsonl``)
holds the items whose files are all stored, the names book (``names.jsonl``) the names chosen from
responses (xkcdcrawl.naming.FileNames). Run reports and the store lock live in the folder too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from itemadapter import ItemAdapter
from scrapy import signals

from xkcdcrawl.outcomes import COMPLETE

if TYPE_CHECKING:
    from collections.abc import Callable

    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)


def local_store(crawler: Crawler) -> Path | None:
    """FILES_STORE as a local folder, or None for s3://, gs://, ftp:// stores."""
    uri = str(crawler.settings.get("FILES_STORE") or "")
    if "://" in uri and not uri.startswith("file://"):
        return None
    return Path(uri.removeprefix("file://")) if uri else None


class Ledger:
    """A ledger: a dict kept as JSON lines, appended to as it grows; in memory only without a path."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = self._load(path) if path else {}
        self._out = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out = path.open("a", encoding="utf-8")

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def record(self, key: str, value: Any) -> None:
        self.data[key] = value
        if self._out is not None:
            self._out.write(json.dumps({"key": key, "value": value}) + "\n")
            # Flushed at once: a killed run keeps what it recorded.
            self._out.flush()

    def close(self) -> None:
        if self._out is not None:
            self._out.close()

    @staticmethod
    def _load(path: Path) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if not path.exists():
            return data
        for line in path.read_text(encoding="utf-8").split("\n"):
            try:
                record = json.loads(line)
                data[record["key"]] = record["value"]
            except (ValueError, KeyError, TypeError):
                # A blank line, or one cut short by a killed run.
                continue
        return data


def ledger(crawler: Crawler, name: str) -> Ledger:
    """The ledger <name>.jsonl of the bookkeeping folder (in the bucket for s3://, in memory for other remote stores)."""
    root = local_store(crawler)
    if root is None and str(crawler.settings.get("FILES_STORE")).startswith("s3://"):
        from xkcdcrawl.s3store import bucket_ledger

        return bucket_ledger(crawler, name)
    return Ledger(root / ".xkcdcrawl" / f"{name}.jsonl" if root else None)


class DownloadArchive:
    """gallery-dl's --download-archive for Scrapy: the items whose files are all stored.

    scrapy-deltafetch records an item as soon as the spider yields it, before the
    pipeline has stored its files, so a failed download would never be tried again.
    Here an item is recorded from ``item_scraped``, after the pipeline, and only when
    every file is stored; a key counts as done only while its files are still there.
    """

    def __init__(self, ledger: Ledger, root: Path | None, key: Callable[[Any], str | None]) -> None:
        self.ledger, self.root, self.key = ledger, root, key

    @classmethod
    def from_crawler(cls, crawler: Crawler, key: Callable[[Any], str | None]) -> Self | None:
        root = local_store(crawler)
        remote = root is None and str(crawler.settings.get("FILES_STORE")).startswith("s3://")
        if not crawler.settings.getbool("XKCDCRAWL_ARCHIVE") or (root is None and not remote):
            return None
        assert crawler.spidercls is not None
        archive = cls(ledger(crawler, f"archive-{crawler.spidercls.name}"), root, key)
        crawler.signals.connect(archive.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(archive.ledger.close, signal=signals.spider_closed)
        return archive

    @property
    def path(self) -> Path | None:
        return self.ledger.path

    def __contains__(self, key: str) -> bool:
        paths = self.ledger.get(key)
        if paths is None or self.root is None:
            # In a bucket, taken on trust: what was recorded had been uploaded (a look per file costs a request).
            return paths is not None
        return all((self.root / p).is_file() for p in paths)

    def item_scraped(self, item: Any) -> None:
        files = ItemAdapter(item).get("files") or []
        key = self.key(item)
        if key is not None and all(f.get("status") in COMPLETE for f in files):
            self.ledger.record(key, [f["path"] for f in files])
