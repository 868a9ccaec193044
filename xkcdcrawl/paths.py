"""Safe relative store paths from untrusted URLs, titles and folder names."""

from __future__ import annotations

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


@functools.lru_cache(maxsize=1 << 16)  # a file's path is asked for several times per download
def safe_segment(name: str) -> str:
    """One path component that cannot climb, hide or break a file system."""
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
    name = unquote(path.rsplit("/", 1)[-1], errors="replace")
    if not name or not safe_segment(name).strip("_"):
        return "file-" + hashlib.sha1(url.encode()).hexdigest()[:16]
    return safe_segment(name)


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
