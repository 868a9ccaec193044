"""Safe relative store paths from untrusted URLs, titles and folder names."""

from __future__ import annotations

import codecs
import functools
import hashlib
import mimetypes
import posixpath
import re
import unicodedata
from email.message import Message
from email.utils import collapse_rfc2231_value
from urllib.parse import unquote, urlsplit

MAX_NAME_BYTES = 255  # NAME_MAX on ext4, xfs, btrfs, tmpfs
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


@functools.lru_cache(maxsize=1 << 16)  # a file's path is asked for several times per download
def safe_segment(name: str) -> str:
    """One path component that cannot climb, hide or break a file system."""
    name = readable(name)
    # Cc: control characters and NUL; Cf: invisible format characters such as U+202E.
    text = "".join(c for c in name if unicodedata.category(c) not in {"Cc", "Cf"})
    text = text.translate(_SEPARATORS).strip().rstrip(". ")
    if not text.strip("."):  # "", ".", "..": nothing a file can be called
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
    tag = "~" + hashlib.sha1(name.encode()).hexdigest()[:8]  # keeps cut names distinct
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
    host = parts.hostname or "unknown-host"
    try:
        port = parts.port
    except ValueError:  # not a number: no request can reach it anyway
        port = None
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}_{port}"
    return safe_segment(host.replace(":", "_"))


def safe_relpath(*parts: str) -> str:
    """Join folder/file names into a relative POSIX path that stays below its root."""
    segments = [safe_segment(s) for part in parts for s in re.split(r"[/\\]", part) if s]
    return "/".join(segments) or "_"


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
        stem, ext = posixpath.splitext(name)
        name = f"{stem}-{hashlib.sha1(url.encode()).hexdigest()[:8]}{ext}"
    taken.add(name)
    return name
