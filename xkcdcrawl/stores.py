"""A files store whose files are complete under their final names, or absent."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import secrets
import socket
import time
from contextlib import suppress
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from twisted.internet.defer import succeed
from twisted.internet.threads import deferToThread

from xkcdcrawl.checksums import ChecksumError, check
from xkcdcrawl.naming import partial_key

if TYPE_CHECKING:
    from collections.abc import Iterable
    from io import BytesIO

    from scrapy.pipelines.files import StatInfo
    from scrapy.pipelines.media import MediaPipeline
    from twisted.internet.defer import Deferred

# What the server said of a stored file: its ETag and Last-Modified, and the listing's date.
Origin = dict[str, str]
# Seconds: a temporary file this old belongs to no running crawl.
STALE_PARTIAL = 3600.0
# Folder listings remembered by stat_file().
LISTINGS_KEPT = 256
# Checksum (sha256) of a stored file, tied to its size and mtime so that any later change voids it.
_XATTR = "user.xkcdcrawl.sha256"
# What the server said of the stored version (xkcdcrawl.stores.Origin), to tell when it changes.
_ORIGIN = "user.xkcdcrawl.origin"


class OutsideStoreError(ValueError):
    """A path that would resolve outside FILES_STORE."""


class IncompleteFileError(Exception):
    """A partial file shorter (or longer) than the file it should hold."""


class AtomicFSFilesStore:
    """Scrapy's FSFilesStore, made safe: write in .xkcdcrawl/partial/, fsync, rename; refuse
    paths outside the store; remember checksums so a re-run does not hash every file.

    Two kinds of files wait in the partial folder. A small body, whole in memory, is written
    to ``<pid>@<host>-<random>-<n>.tmp`` and renamed at once. A streamed body goes to ``<key>.part``, named
    after its store path so that a later run finds it and resumes it, with what it needs
    for that in ``<key>.json`` (xkcdcrawl.bodyfile.PartialState).
    """

    def __init__(self, basedir: str | os.PathLike[str]):
        # FILES_STORE may be file:///path.
        self.basedir = str(basedir).split("://", 1)[-1]
        self.root = Path(self.basedir).resolve()
        # Files are written here, then renamed into place: a killed crawl leaves its partial
        # files out of sight. Another worker may be writing into the same store: only the
        # temporary files of a dead crawl go (_remove_dead_temporaries()).
        self.partial = self.root / ".xkcdcrawl" / "partial"
        self.partial.mkdir(parents=True, exist_ok=True)
        _remove_dead_temporaries(self.partial)
        # Folder -> the names in it, for stat_file(); set.add() is atomic: the threads add to them.
        self._listings: dict[str, set[str]] = {}
        # Temporary names: who writes them (_writer()), a random tag and a number, unique
        # across workers and runs.
        self._tag = f"{_writer(os.getpid())}-{secrets.token_hex(8)}"
        self._serial = itertools.count()

    def persist_file(
        self,
        path: str | os.PathLike[str],
        buf: BytesIO,
        info: MediaPipeline.SpiderInfo,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Deferred[str]:
        """Store the file; fires with its sha256 checksum."""
        # In a thread: hashing and fsync take milliseconds, the reactor must not wait for them.
        return deferToThread(self._persist, path, buf)

    def persist_verified(
        self, path: str, buf: BytesIO, expected: dict[str, str], origin: Origin | None = None
    ) -> Deferred[str]:
        """persist_file(), once the body has the digests the server published (ChecksumError if not)."""
        return deferToThread(self._persist, path, buf, expected, origin)

    def _persist(
        self,
        path: str | os.PathLike[str],
        buf: BytesIO,
        expected: dict[str, str] | None = None,
        origin: Origin | None = None,
    ) -> str:
        if expected:
            check(expected, digests_of(buf.getbuffer(), expected))
        target = self._target(path)
        part = self.partial / f"{self._tag}-{next(self._serial)}.tmp"
        data = buf.getbuffer()
        checksum = hashlib.sha256(data).hexdigest()
        try:
            with part.open("xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
                _label(out.fileno(), checksum, origin)
            # Atomic: the same file system.
            part.replace(target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        self._stored(path)
        return checksum

    def resumable(self) -> set[str]:
        """The names of the resume records in the partial folder now: one look, not one a file."""
        return {entry.name for entry in os.scandir(self.partial) if entry.name.endswith(".json")}

    def partial_for(self, path: str) -> tuple[Path, Path]:
        """The resumable partial file of a store path, and its resume record."""
        key = partial_key(path)
        return self.partial / f"{key}.part", self.partial / f"{key}.json"

    def finalize(
        self,
        part: Path,
        path: str,
        length: int | None,
        digests: dict[str, str],
        expected: dict[str, str],
        origin: Origin | None = None,
    ) -> Deferred[str]:
        """Move a streamed partial file into place once it is whole, and as the server said; fires with its sha256."""
        return deferToThread(self._finalize, part, path, length, digests, expected, origin)

    def _finalize(
        self,
        part: Path,
        path: str,
        length: int | None,
        digests: dict[str, str],
        expected: dict[str, str],
        origin: Origin | None,
    ) -> str:
        target = self._target(path)
        with part.open("rb") as f:
            digest = self.verify(part, f, length, digests, expected)
            os.fsync(f.fileno())
        _remember_checksum(part, digest)
        if origin:
            _remember_origin(part, origin)
        part.replace(target)
        self._stored(path)
        part.with_suffix(".json").unlink(missing_ok=True)
        return digest

    def verify(
        self, part: Path, f: BinaryIO, length: int | None, digests: dict[str, str], expected: dict[str, str]
    ) -> str:
        """The sha256 of a streamed partial file that is whole and what the server said it is."""
        size = os.fstat(f.fileno()).st_size
        if length is not None and size != length:
            # Kept: the next try asks for the rest.
            raise IncompleteFileError(f"short body: {size} of {length} bytes")
        # Resumed or fetched in ranges: not hashed on the way, so read once, here.
        if missing := [name for name in {"sha256", *expected} if name not in digests]:
            digests = {**digests, **_file_digests(f, missing)}
        try:
            check(expected, digests)
        except ChecksumError:
            # A wrong file: the next try fetches it whole.
            self.discard(part)
            raise
        return digests["sha256"]

    def discard(self, part: Path) -> None:
        """Forget a partial file that cannot be resumed."""
        part.unlink(missing_ok=True)
        part.with_suffix(".json").unlink(missing_ok=True)

    def sweep(self, before: float, keep: set[Path]) -> None:
        """Remove the partial files nobody resumed: untouched since `before`, and not kept."""
        for entry in os.scandir(self.partial):
            path = Path(entry.path)
            if path.suffix in {".part", ".json"} and path.with_suffix(".part") not in keep:
                with suppress(OSError):
                    if entry.stat().st_mtime < before:
                        path.unlink()

    def stat_file(self, path: str | os.PathLike[str], info: MediaPipeline.SpiderInfo) -> Deferred[StatInfo]:
        """What is stored under a path: {} for nothing, else its mtime and checksum.

        Asked before every download. A thread hop per file cost more than the look-up itself,
        so each folder is listed once (and what this store writes added to its listing) and a
        file that is not there is answered at once; a stored file is looked at here too, and
        hashed in a thread only when it has no remembered checksum (stored by another program).
        """
        if (known := self.stat_now(path)) is not None:
            return succeed(known)
        return deferToThread(self._stat, path)

    def stat_now(self, path: str | os.PathLike[str]) -> StatInfo | None:
        """stat_file() without a thread, or None when the file must be hashed first."""
        folder, _, name = str(path).rpartition("/")
        if name not in self._names_in(folder):
            return {}
        try:
            target = self._found(folder, name)
            stat = os.lstat(target)
            # A symlink (or a folder): the long way, with its checks.
            if not S_ISREG(stat.st_mode):
                resolved = self.resolve(path)
                target, stat = str(resolved), resolved.stat()
        except (OSError, OutsideStoreError):
            return {}
        if (checksum := _recall_checksum(target, stat)) is not None:
            return cast("StatInfo", {"last_modified": stat.st_mtime, "checksum": checksum, "size": stat.st_size})
        return None

    def origin(self, path: str) -> Origin:
        """What the server said of a stored file when it was stored: {} when nothing was recorded."""
        with suppress(OSError, ValueError, OutsideStoreError):
            # Not followed: stat_now() found a regular file there, or took the long way.
            return cast("Origin", json.loads(os.getxattr(self._found(*path.rpartition("/")[::2]), _ORIGIN)))
        return {}

    def remember_origin(self, path: str, origin: Origin) -> None:
        """Record what the server says of a stored file (a listing's date seen for the first time)."""
        with suppress(OSError, OutsideStoreError):
            target = self._found(*path.rpartition("/")[::2])
            # Never through a symlink: what it points to may be outside the store.
            if S_ISREG(os.lstat(target).st_mode):
                _remember_origin(Path(target), origin)

    def _found(self, folder: str, name: str) -> str:
        """The file system path of a name in a store folder, the folder checked once (_resolved())."""
        return f"{self._resolved(folder)}/{name}"

    def _target(self, path: str | os.PathLike[str]) -> Path:
        """Where a store path is written: in its folder, made if need be, checked to be inside the store."""
        folder, _, name = str(path).rpartition("/")
        if name in {"", ".", ".."}:
            raise OutsideStoreError(f"path {str(path)!r} names no file")
        return self._directory(folder) / name

    @functools.lru_cache(maxsize=LISTINGS_KEPT)  # noqa: B019  (one store a crawl, kept as long)
    def _directory(self, folder: str) -> Path:
        """A store folder, made once: checked before (an existing part may lead outside) and after."""
        self.resolve(f"{folder}/_")
        (self.root.joinpath(*folder.split("/")) if folder else self.root).mkdir(parents=True, exist_ok=True)
        # Again: a symlinked folder may have been made meanwhile.
        return self.resolve(f"{folder}/_").parent

    @functools.lru_cache(maxsize=LISTINGS_KEPT)  # noqa: B019  (one store a crawl, kept as long)
    def _resolved(self, folder: str) -> Path:
        """A store folder's real path, checked to be inside the store, once."""
        return self.resolve(f"{folder}/_").parent if folder else self.root

    def _names_in(self, folder: str) -> set[str]:
        """The names in a store folder, listed the first time it is asked for."""
        if (names := self._listings.get(folder)) is None:
            directory = self.root.joinpath(*folder.split("/")) if folder else self.root
            try:
                names = {entry.name for entry in os.scandir(directory)}
            except OSError:
                names = set()
            if len(self._listings) >= LISTINGS_KEPT:
                self._listings.pop(next(iter(self._listings)))
            self._listings[folder] = names
        return names

    def _stored(self, path: str | os.PathLike[str]) -> None:
        """A file this store has just put in place: in its folder's listing from now on."""
        folder, _, name = str(path).rpartition("/")
        if (names := self._listings.get(folder)) is not None:
            names.add(name)

    def _stat(self, path: str | os.PathLike[str]) -> StatInfo:
        try:
            target = self.resolve(path)
            stat = target.stat()
        except (OSError, OutsideStoreError):
            return {}
        checksum = _recall_checksum(target, stat) or _sha256_file(target)
        return cast("StatInfo", {"last_modified": stat.st_mtime, "checksum": checksum, "size": stat.st_size})

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The absolute path of a store path, which must stay inside the store."""
        target = self.root.joinpath(*str(path).split("/")).resolve()
        if target == self.root or not target.is_relative_to(self.root):
            raise OutsideStoreError(f"path {str(path)!r} resolves outside FILES_STORE")
        return target


def digests_of(data: bytes | memoryview, algorithms: Iterable[str]) -> dict[str, str]:
    return {name: hashlib.new(name, data).hexdigest() for name in algorithms}


def hash_range(f: BinaryIO, hashers: dict[str, Any], first: int = 0, last: int | None = None) -> None:
    """Feed bytes first..last (inclusive; None: to the end) of an open file to the hashers."""
    f.seek(first)
    left = float("inf") if last is None else last - first + 1
    while left > 0 and (chunk := f.read(int(min(left, 1 << 20)))):
        for hasher in hashers.values():
            hasher.update(chunk)
        left -= len(chunk)


def _file_digests(f: BinaryIO, algorithms: list[str]) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    hash_range(f, hashers)
    return {name: h.hexdigest() for name, h in hashers.items()}


def _sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _remember_checksum(path: Path, checksum: str) -> None:
    stat = path.stat()
    # No user xattrs on this file system: stat_file() hashes instead.
    with suppress(OSError):
        os.setxattr(path, _XATTR, f"{stat.st_size}:{stat.st_mtime_ns}:{checksum}".encode())


def _label(fd: int, checksum: str, origin: Origin | None) -> None:
    """_remember_checksum() and _remember_origin() of a file still open: no path looked up again."""
    stat = os.fstat(fd)
    with suppress(OSError):
        os.setxattr(fd, _XATTR, f"{stat.st_size}:{stat.st_mtime_ns}:{checksum}".encode())
        if origin:
            os.setxattr(fd, _ORIGIN, json.dumps(origin, separators=(",", ":")).encode())


def _remember_origin(path: Path, origin: Origin) -> None:
    # No user xattrs: a changed file is then found by its size alone.
    with suppress(OSError):
        os.setxattr(path, _ORIGIN, json.dumps(origin, separators=(",", ":")).encode())


def _recall_checksum(path: Path | str, stat: os.stat_result) -> str | None:
    try:
        size, mtime, checksum = os.getxattr(path, _XATTR).decode().split(":")
    except (OSError, ValueError):
        return None
    return checksum if (int(size), int(mtime)) == (stat.st_size, stat.st_mtime_ns) else None


def _writer(pid: int) -> str:
    """The process that writes a temporary file, as its name starts: <pid>@<host>."""
    return f"{pid}@{socket.gethostname()}"


def _dead_writer(name: str) -> bool:
    """Whether a temporary file (<pid>@<host>-<tag>-<n>) was written by a process of this machine that has ended."""
    pid, _, rest = name.partition("@")
    if not pid.isdigit() or rest.rsplit("-", 2)[0] != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        # Another user's process: it runs.
        return False
    return False


def _remove_dead_temporaries(folder: Path) -> None:
    """The *.tmp files nobody writes any more: a dead crawl's of this machine, or untouched for STALE_PARTIAL."""
    cutoff = time.time() - STALE_PARTIAL
    for path in folder.glob("*.tmp"):
        with suppress(OSError):
            if _dead_writer(path.stem) or path.stat().st_mtime < cutoff:
                path.unlink()
