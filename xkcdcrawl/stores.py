"""A files store whose files are complete under their final names, or absent."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.threads import deferToThread

if TYPE_CHECKING:
    from io import BytesIO

    from scrapy.pipelines.files import StatInfo
    from scrapy.pipelines.media import MediaPipeline
    from twisted.internet.defer import Deferred

STALE_PARTIAL = 3600.0  # seconds: a partial file this old belongs to no running crawl
# Checksum of a stored file, tied to its size and mtime so that any later change voids it.
_XATTR = "user.xkcdcrawl.md5"


class OutsideStoreError(ValueError):
    """A path that would resolve outside FILES_STORE."""


class AtomicFSFilesStore:
    """Scrapy's FSFilesStore, made safe: write to .part-<random>, fsync, rename; refuse
    paths outside the store; remember checksums so a re-run does not hash every file."""

    def __init__(self, basedir: str | os.PathLike[str]):
        self.basedir = str(basedir).split("://", 1)[-1]  # FILES_STORE may be file:///path
        self.root = Path(self.basedir).resolve()
        # Files are written here, then renamed into place: a killed crawl leaves its partial
        # files out of sight. Another crawl may be writing into the same store: only old ones go.
        self.partial = self.root / ".xkcdcrawl" / "partial"
        self.partial.mkdir(parents=True, exist_ok=True)
        _remove_older_than(self.partial, STALE_PARTIAL)

    def persist_file(
        self,
        path: str | os.PathLike[str],
        buf: BytesIO,
        info: MediaPipeline.SpiderInfo,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Deferred[str]:
        """Store the file; fires with its MD5 checksum."""
        # In a thread: hashing and fsync take milliseconds, the reactor must not wait for them.
        return deferToThread(self._persist, path, buf)

    def _persist(self, path: str | os.PathLike[str], buf: BytesIO) -> str:
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.resolve(path)  # again: a symlinked folder may have been created meanwhile
        part = self.partial / f"{secrets.token_hex(8)}.part"
        try:
            with part.open("xb") as out:
                out.write(buf.getbuffer())
                out.flush()
                os.fsync(out.fileno())
            checksum = hashlib.md5(buf.getbuffer()).hexdigest()
            _remember_checksum(part, checksum)
            part.replace(target)  # atomic: same file system
        finally:
            part.unlink(missing_ok=True)
        return checksum

    def stat_file(self, path: str | os.PathLike[str], info: MediaPipeline.SpiderInfo) -> Deferred[StatInfo]:
        return deferToThread(self._stat, path)  # may hash a file stored without our checksum

    def _stat(self, path: str | os.PathLike[str]) -> StatInfo:
        try:
            target = self.resolve(path)
            stat = target.stat()
        except (OSError, OutsideStoreError):
            return {}
        checksum = _recall_checksum(target, stat) or _md5_file(target)
        return {"last_modified": stat.st_mtime, "checksum": checksum}

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The absolute path of a store path, which must stay inside the store."""
        target = self.root.joinpath(*str(path).split("/")).resolve()
        if target == self.root or not target.is_relative_to(self.root):
            raise OutsideStoreError(f"path {str(path)!r} resolves outside FILES_STORE")
        return target


def _md5_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _remember_checksum(path: Path, checksum: str) -> None:
    stat = path.stat()
    with suppress(OSError):  # no user xattrs on this file system: stat_file() hashes instead
        os.setxattr(path, _XATTR, f"{stat.st_size}:{stat.st_mtime_ns}:{checksum}".encode())


def _recall_checksum(path: Path, stat: os.stat_result) -> str | None:
    try:
        size, mtime, checksum = os.getxattr(path, _XATTR).decode().split(":")
    except (OSError, ValueError):
        return None
    return checksum if (int(size), int(mtime)) == (stat.st_size, stat.st_mtime_ns) else None


def _remove_older_than(folder: Path, seconds: float) -> None:
    cutoff = time.time() - seconds
    for entry in os.scandir(folder):
        with suppress(OSError):
            if entry.stat().st_mtime < cutoff:
                Path(entry.path).unlink()
