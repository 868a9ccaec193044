"""Where every file lands, and why: the one home of naming.

A file's store path is ``<folder>/<name>``, relative to FILES_STORE:

- **folder**: the spider's item says it. ``xkcd`` for comics; ``<host>[_port]`` for URL lists
  (host_folder()); the album's name for galleries (album_folder()); ``<host>[_port]/<path on the
  server>`` for listings (listed_place()).
- **name**: the spider's name for it, else the last segment of its URL (url_file_name()), made
  safe for every file system (safe_segment(): no climbing, no hidden or reserved names, NAME_MAX).
  Repeats of one URL are numbered ``<stem>-01<ext>`` (numbered()).
- **from the response**, when the URL cannot tell (no extension, or a query that may name another
  file each time): Content-Disposition's name, then an extension from Content-Type
  (response_path()). What was chosen is kept in the names book, ``.xkcdcrawl/names.jsonl``, so
  that the next run asks for the same path before it downloads (FileNames).
- **collisions**, one rule everywhere (suffixed(); distinct_name() for a folder's names): the second URL that would take a name
  gets ``<stem>-<8 hex of sha1(URL)><ext>``; a file listed beside a folder of the same name is
  renamed so by clear_of_folders().
- **partial file**: while it downloads, ``.xkcdcrawl/partial/<partial_key(path)>.part``.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import mimetypes
import posixpath
import re
import unicodedata
from collections.abc import Mapping, MutableMapping
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable

    from scrapy import Request
    from scrapy.http import Response

    from xkcdcrawl.archive import Ledger

# NAME_MAX on ext4, xfs, btrfs and tmpfs.
MAX_NAME_BYTES = 255
# Windows refuses these as names with any extension; the files may be copied there.
_RESERVED = re.compile(r"(?i)^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\.|$)")
_SEPARATORS = str.maketrans({"/": "_", "\\": "_"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Surrogates that are not the surrogateescape of one byte (U+DC80..U+DCFF) stand for no byte.
_STRAY_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _percent_escape(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: the bytes that decode to nothing, as %XX."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return "".join(f"%{b:02X}" for b in bad), error.end


codecs.register_error("xkcdcrawl-percent", _percent_escape)


def readable(text: str) -> str:
    """A name percent-decoded with surrogateescape, as text a person can read.

    Old servers send Latin-1 or cp1252 names (caf%E9.txt), hostile pages overlong UTF-8
    (%c0%af): UTF-8 first, else cp1252 when that gives only printable characters, else
    UTF-8 with each undecodable byte kept as its %XX escape. The same bytes always give
    the same name, so a re-run finds the file it stored.
    """
    if text.isascii() or not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    raw = _STRAY_SURROGATES.sub("\ufffd", text).encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        decoded = raw.decode("cp1252")
    except UnicodeDecodeError:
        decoded = ""
    if decoded and decoded.isprintable():
        return decoded
    return raw.decode("utf-8", "xkcdcrawl-percent")


# A file's path is asked for several times per download.
@functools.lru_cache(maxsize=1 << 16)
def safe_segment(name: str) -> str:
    """One path component that cannot climb, hide or break a file system."""
    name = readable(name)
    # Cc: control characters and NUL; Cf: invisible format characters such as U+202E (printable
    # ASCII has neither).
    if name.isascii() and name.isprintable():
        text = name
    else:
        text = "".join(c for c in name if unicodedata.category(c) not in {"Cc", "Cf"})
    text = text.translate(_SEPARATORS).strip().rstrip(". ")
    # "", "." and ".." are nothing a file can be called.
    if not text.strip("."):
        return "_" + text if text else "_"
    if _RESERVED.match(text):
        text = "_" + text
    return _truncate(text)


def _truncate(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """Cut a name to `limit` UTF-8 bytes, keeping a short extension."""
    if len(name.encode()) <= limit:
        return name
    stem, ext = posixpath.splitext(name)
    if len(ext.encode()) > 16:
        stem, ext = name, ""
    # The hash keeps cut names distinct.
    tag = "~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    room = limit - len(ext.encode()) - len(tag)
    cut = stem.encode()[:room].decode(errors="ignore")
    return cut + tag + ext


def url_file_name(url: str) -> str:
    """The server's own name for a URL's file, decoded and made safe."""
    path = urlsplit(url).path
    name = unquote(path.rsplit("/", 1)[-1], errors="surrogateescape")
    if not name or not safe_segment(name).strip("_"):
        return "file-" + hashlib.sha1(url.encode()).hexdigest()[:16]
    return safe_segment(name)


def host_folder(url: str) -> str:
    """The folder of a URL's host: the host name, plus _PORT for a port that is not the default.

    Two servers on one host (127.0.0.1:8001, 127.0.0.1:8002) are two folders: 127.0.0.1_8001.
    '_' and not wget's ':', which Windows refuses in names; an IPv6 address's ':' become '_' too.
    """
    parts = urlsplit(url)
    return _host_folder(parts.scheme, parts.netloc)


@functools.lru_cache(maxsize=256)
def _host_folder(scheme: str, netloc: str) -> str:
    """host_folder() of a URL's scheme and netloc: once a host, not once a file."""
    parts = SplitResult(scheme, netloc, "", "", "")
    host = parts.hostname or "unknown-host"
    try:
        port = parts.port
    except ValueError:
        # Not a number: no request can reach it anyway.
        port = None
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}_{port}"
    return safe_segment(host.replace(":", "_"))


def safe_relpath(*parts: str) -> str:
    """Join folder/file names into a relative POSIX path that stays below its root."""
    return "/".join(path for part in parts if (path := _safe_path(part))) or "_"


def _safe_path(part: str) -> str:
    """A folder/file name made of safe segments; '' when nothing is left of it."""
    return "/".join(safe_segment(s) for s in re.split(r"[/\\]", part) if s)


def has_extension(name: str) -> bool:
    stem, ext = posixpath.splitext(name)
    return bool(stem and ext and len(ext) <= 10)


def disposition_name(header: bytes | None) -> str | None:
    """The file name a Content-Disposition header gives (RFC 5987 filename* first), or None."""
    if not header:
        return None
    message = Message()
    message["Content-Disposition"] = header.decode("latin-1")
    names = [value for key, value in message.get_params([], header="content-disposition") if key == "filename"]
    encoded = [collapse_rfc2231_value(v) for v in names if isinstance(v, tuple)]
    name = (encoded or [str(v) for v in names] or [""])[0]
    return posixpath.basename(name.replace("\\", "/")) or None


def type_extension(content_type: bytes | None) -> str:
    """The usual extension for a Content-Type ('.jpg' for image/jpeg), or ''."""
    mime = (content_type or b"").decode("latin-1").split(";")[0].strip().lower()
    return (mimetypes.guess_extension(mime, strict=False) or "") if mime else ""


def distinct_name(name: str, url: str, taken: set[str]) -> str:
    """name, or name-<hash of url> when another URL of the same folder took it."""
    if name in taken:
        name = suffixed(name, url)
    taken.add(name)
    return name


def suffixed(name: str, url: str) -> str:
    """The collision rule's name for a URL whose name is taken: <stem>-<8 hex of sha1(URL)><ext>."""
    stem, ext = posixpath.splitext(name)
    return f"{stem}-{hashlib.sha1(url.encode()).hexdigest()[:8]}{ext}"


def field(item: Any, name: str) -> Any:
    """An item's field, or None: ItemAdapter's answer, without building one (a few a file add up)."""
    if isinstance(item, Mapping):
        # A dict, or a scrapy.Item.
        return item.get(name)
    # A dataclass, attrs or pydantic item.
    return getattr(item, name, None)


def set_field(item: Any, name: str, value: Any) -> None:
    """Set an item's field, as ItemAdapter would, without building one."""
    if isinstance(item, MutableMapping):
        item[name] = value
    else:
        setattr(item, name, value)


def store_path(url: str, item: Any) -> str:
    """<item folder>/<file name>: from the URL and stable item fields only."""
    name = safe_segment(field(item, "name") or url_file_name(url))
    folder = _safe_folder(field(item, "folder") or "unsorted")
    return f"{folder}/{name}" if folder else name


@functools.lru_cache(maxsize=1024)
def _safe_folder(folder: str) -> str:
    """_safe_path() of an item's folder: once for all its files."""
    return _safe_path(folder)


def numbered(name: str, draw: int, repeat: int) -> str:
    """The name of draw N of `repeat` fetches of one URL: <stem>-01<ext>, ..."""
    stem, ext = posixpath.splitext(name)
    return f"{stem}-{draw:0{len(str(repeat))}d}{ext}"


def listed_place(url: str, path: str) -> tuple[str, str, str]:
    """(folder, name, readable path) of a listed file: <host>[_port]/<its folder on the server>.

    `path` is the file's percent-decoded path relative to the start URL. Names that are not
    UTF-8 (Latin-1, overlong sequences) become readable text, in the feed too.
    """
    parts = urlsplit(url)
    folder, _, name = unquote(parts.path, errors="surrogateescape").rpartition("/")
    readable_path = "/".join(readable(part) for part in path.split("/"))
    return f"{_host_folder(parts.scheme, parts.netloc)}/{folder}", readable(name), readable_path


def folder_names(folders: Iterable[str]) -> set[str]:
    """The names the sub-folder URLs of a listing page take in the store."""
    return {
        safe_segment(readable(unquote(f.rstrip("/").rpartition("/")[2], errors="surrogateescape"))) for f in folders
    }


def clear_of_folders(name: str, url: str, folders: set[str]) -> str:
    """The name of a listed file, unless a sub-folder beside it has it (folder_names()).

    A listing may have both ``dup`` and ``dup/``: the folder keeps the name (its files go under
    it), the file takes the collision rule's name, the same on every run.
    """
    return suffixed(name, url) if safe_segment(name) in folders else name


def needs_response_name(url: str, path: str, named: bool, draw: int | None) -> bool:
    """A URL whose name has no extension, or whose query may name another file each time.

    A name the spider gave is kept as it is (a listed Makefile stays Makefile), but for the
    numbered draws of a random endpoint, which take the extension of their Content-Type.
    """
    if named:
        return draw is not None and not has_extension(path.rpartition("/")[2])
    return not has_extension(path.rpartition("/")[2]) or bool(urlsplit(url).query)


def response_path(path: str, headers: Mapping[bytes, Any], named: bool) -> str:
    """The store path completed by the response: Content-Disposition, then Content-Type."""
    folder, _, name = path.rpartition("/")
    if not named and (given := disposition_name(headers.get(b"Content-Disposition"))):
        name = safe_segment(given)
    if not has_extension(name):
        # CON + .bin: made safe again.
        name = safe_segment(name + type_extension(headers.get(b"Content-Type")))
    return f"{folder}/{name}"


def partial_key(path: str) -> str:
    """The name of a store path's partial file and resume record, without their suffixes."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class FileNames:
    """The store path of every file request, before, during and after its download.

    path() answers, and never changes anything but the request's cached answer; choose() picks
    the name a response gives, and is the one place that takes a name for good (the names book).
    """

    def __init__(self, book: Ledger) -> None:
        self.book = book
        # Paths already given to a response: the collision rule applies across runs too.
        self.taken = set(book.data.values())

    def path(self, request: Request, item: Any) -> str:
        """Where the request's file goes, as far as it can be known before the response."""
        # Asked several times a file (before, while and after the download): worked out once.
        if (known := request.meta.get("store_path")) is not None:
            return str(known)
        path, final = self._path(request.url, item, request.meta.get("draw"))
        if final:
            request.meta["store_path"] = path
        return path

    def path_of(self, url: str, item: Any) -> str:
        """path(), for a file of an item before any request is made for it."""
        return self._path(url, item, field(item, "draw") or None)[0]

    def _path(self, url: str, item: Any, draw: int | None) -> tuple[str, bool]:
        """The path, and whether it is the final one (else the response names the file)."""
        path = store_path(url, item)
        if not needs_response_name(url, path, field(item, "name") is not None, field(item, "draw")):
            return path, True
        # Scrapy asks for the path before downloading, to skip stored files: the name
        # the response gave last time is in the names book, and stays the name.
        if (chosen := self.book.get(self._key(url, draw))) is None:
            # Not downloaded yet: no file will be found there; choose() names it.
            return path, False
        return str(chosen), True

    def choose(self, request: Request, response: Response, item: Any) -> str:
        """The path of a downloaded file: the response names it when the URL cannot."""
        path = self.path(request, item)
        if "store_path" in request.meta:
            return path
        chosen = response_path(path, response.headers, field(item, "name") is not None)
        if chosen in self.taken:
            # download.php?id=1, download.php?id=2, ...: one rule for every collision.
            folder, _, name = chosen.rpartition("/")
            chosen = f"{folder}/{suffixed(name, request.url)}"
        self.book.record(self._key(request.url, request.meta.get("draw")), chosen)
        self.taken.add(chosen)
        request.meta["store_path"] = chosen
        return chosen

    @staticmethod
    def _key(url: str, draw: int | None) -> str:
        """A file's key in the names book."""
        return f"{url}#draw={draw}"
