"""Split a web server's directory listing page into sub-folder and file URLs."""

from __future__ import annotations

import re
from typing import Any, NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from scrapy.http import TextResponse
from scrapy.selector import Selector
from scrapy.utils.response import get_base_url
from w3lib.html import strip_html5_whitespace
from w3lib.url import safe_url_string

_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_NAMES = frozenset({"", ".", ".."})
# A link that is one name (or name/), percent-encoded already: what autoindex pages write.
# Joined to its page's folder it is what urljoin() and safe_url_string() make of it (not ';':
# urljoin() reads it as the start of parameters).
_PLAIN_LINK = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,=@]|%[0-9A-Fa-f]{2})+/?")

Origin = tuple[str, str | None, str | None, str | None, int | None]
# What a listing shows of a file, as it shows it: {"size": "4.1K", "date": "01-Dec-2026 21:00"}.
Listed = dict[str, str]
# nginx 01-Dec-2026 21:00, Apache 2026-12-01 21:00 (or as nginx), lighttpd 2026-Dec-01 21:00:00,
# Caddy's ISO 8601 2026-12-01T21:00:00Z.
_DATE = re.compile(
    r"\d{1,2}-[A-Za-z]{3}-\d{4} \d{1,2}:\d{2}(?::\d{2})?"
    r"|\d{4}-(?:\d{2}|[A-Za-z]{3})-\d{2}[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_SIZE_TOKENS = re.compile(r"\S+(?: (?:[KMGTP]i?B|B|bytes)\b)?")
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?) ?(?P<unit>[KMGTP](?:i?B)?|B|bytes)?", re.IGNORECASE)


class Entry(NamedTuple):
    """A file a listing page lists."""

    url: str
    # Percent-decoded, relative to the start URL (relative_path()).
    path: str
    # What the page shows of it (entry_details()).
    listed: Listed


def split_listing(
    response: TextResponse, root: str, details: dict[str, Listed] | None = None
) -> tuple[list[str], list[str]]:
    """(sub-folder URLs, file URLs) listed on a directory page, below root.

    With `details`, what the page says of each file (size, date) is added to it by file URL.
    """
    dirs, entries = list_entries(response, root)
    if details is not None:
        details.update((entry.url, entry.listed) for entry in entries if entry.listed)
    return dirs, [entry.url for entry in entries]


def list_entries(response: TextResponse, root: str) -> tuple[list[str], list[Entry]]:
    """(sub-folder URLs, files) listed on a directory page, below root."""
    page_dir = _directory_url(response.url)
    page_path = _decode(urlsplit(response.url).path)
    seen: set[str] = set()
    dirs: list[str] = []
    files: list[Entry] = []
    # Below a page that is below root is below root: one check a link, not two, and the
    # path below root is the page's and the link's below the page.
    root_implied = page_dir == root or _is_below(page_dir, root)
    prefix = relative_path(page_dir, root) if root_implied and page_dir != root else ""
    # Links are joined to the page's own URL unless a <base> says otherwise; the page's folder
    # then takes a plain name as it is (a third of a re-run's listing work was the long way).
    plain_dir = page_dir if get_base_url(response) == response.url and safe_url_string(page_dir) == page_dir else None
    # lxml's own strings: a Selector for each of 20,000 links was a third of a re-run. And a
    # tree of its own, not the one the response keeps (response.selector) while its items are
    # processed: half a megabyte for a page of 500 files, freed here once they are listed.
    dir_path = _decode(urlsplit(page_dir).path)
    for href in Selector(response=response).root.xpath("//a/@href"):
        link = str(href)
        try:
            if plain_dir is not None and _is_plain(link):
                # What relative_path() and urlsplit() make of the page's folder and the name.
                url, below_page = plain_dir + link, _plain_below(link)
                path = dir_path + below_page
            elif (joined := _entry_url(response, link)) is not None:
                url, below_page = joined, relative_path(joined, page_dir)
                path = _decode(urlsplit(url).path)
            else:
                continue
            below_root = prefix + below_page if root_implied else relative_path(url, root)
        except ValueError:
            continue
        if path == page_path or path in seen:
            continue
        seen.add(path)
        if url.endswith("/"):
            dirs.append(url)
        else:
            files.append(Entry(url, below_root, entry_details(href.getparent())))
    return dirs, files


def entry_details(anchor: Any) -> Listed:
    """The size and date a listing shows beside an entry's link, as the page writes them.

    Tables (Apache's FancyIndexing, lighttpd, Caddy): the cells after the link's. <pre> listings
    (nginx, Apache without tables): the text after the link, to the end of its line.
    """
    row = next(anchor.iterancestors("tr"), None)
    if row is not None:
        cells = row.findall("td")
        at = next((i for i, cell in enumerate(cells) if anchor in cell.iterdescendants()), -1)
        texts: list[str] = []
        for cell in cells[at + 1 :]:
            # Caddy writes the exact size in data-order and the date in <time datetime>.
            order, stamp = cell.get("data-order"), cell.find(".//time")
            if order and order.isdigit() and "size" in (cell.get("class") or ""):
                texts.append(str(order))
            elif stamp is not None and stamp.get("datetime"):
                texts.append(str(stamp.get("datetime")))
            else:
                texts.append(str(cell.text_content()))
    else:
        texts = (anchor.tail or "").split("\n", 1)[:1]
    found: Listed = {}
    for text in texts:
        text = " ".join(text.split())
        if "date" not in found and (date := _DATE.search(text)):
            found["date"] = date[0]
            text = (text[: date.start()] + text[date.end() :]).strip()
        if "size" not in found:
            token = next((t for t in _SIZE_TOKENS.findall(text) if _SIZE.fullmatch(t)), None)
            if token is not None:
                found["size"] = token
    return found


def size_range(text: str) -> tuple[float, float] | None:
    """The sizes in bytes a listing's size could stand for: '4164' is exact, '4.1K' about 4198.

    Listings round (Apache, lighttpd: one decimal, 1024-based; others 1000-based): any size
    within one unit of the last digit shown, on either base, may be it.
    """
    match = _SIZE.fullmatch(text.replace(" ", ""))
    if match is None:
        return None
    number, unit = match["number"], (match["unit"] or "").upper()[:1]
    value = float(number)
    if unit in {"", "B"}:
        return (value, value)
    power = " KMGTP".index(unit)
    step = 10.0 ** -len(number.partition(".")[2])
    return ((value - step) * 1000**power, (value + step) * 1024**power)


def relative_path(url: str, root: str) -> str:
    """Percent-decoded path of url relative to the directory URL root.

    Sub-folders keep their trailing '/'. Raises ValueError when url is not
    strictly below root, or when a segment, decoded any number of times,
    could climb out or alias another path ('..', '.', '', '/', NUL, '\\').
    """
    target, base = urlsplit(url), urlsplit(root)
    if not base.path.endswith("/"):
        raise ValueError(f"root is not a directory URL: {root!r}")
    rest = _segments_below(target.path, base.path)
    if target.query or _origin(target) != _origin(base) or not rest:
        raise ValueError(f"{url!r} is not below {root!r}")
    if not all(_is_safe_segment(s) for s in rest):
        raise ValueError(f"unsafe path in {url!r}")
    return "/".join(_decode(s) for s in rest) + ("/" if target.path.endswith("/") else "")


def _entry_url(response: TextResponse, href: str) -> str | None:
    """Absolute, fragment-less, percent-encoded URL of an entry link, or None.

    The long way: list_entries() joins a plain name (_is_plain()) to its page's folder itself.
    """
    try:
        absolute = response.urljoin(strip_html5_whitespace(href))
        parts = urlsplit(absolute)
        # Query links are column-sort links, not entries. A backslash is read
        # as '/' by browsers (and w3lib) but as a name byte by servers: drop.
        if parts.scheme not in _SCHEMES or parts.query or "\\" in absolute:
            return None
        return safe_url_string(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    except ValueError:
        # The host or the port is broken.
        return None


def _is_plain(href: str) -> bool:
    """A link that is one percent-encoded name (or name/): joined to its page's folder as it is."""
    return _PLAIN_LINK.fullmatch(href) is not None and href.rstrip("/") not in _BAD_NAMES


def _plain_below(href: str) -> str:
    """relative_path() of a plain link joined to its page's folder, below that folder."""
    name = href.removesuffix("/")
    if not _is_safe_segment(name):
        raise ValueError(f"unsafe name {href!r}")
    return _decode(name) + href[len(name) :]


def _is_below(url: str, root: str) -> bool:
    try:
        relative_path(url, root)
    except ValueError:
        return False
    return True


def _segments_below(path: str, directory: str) -> list[str]:
    """Raw segments of path after the '/'-ended directory; [] if not below it."""
    base = [_decode(s) for s in directory[:-1].split("/")]
    segments = path.removesuffix("/").split("/")
    if [_decode(s) for s in segments[: len(base)]] != base:
        return []
    return segments[len(base) :]


def _directory_url(url: str) -> str:
    """URL of the directory holding url (itself when it ends with '/')."""
    parts = urlsplit(url)
    path = parts.path[: parts.path.rfind("/") + 1] or "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _origin(parts: SplitResult) -> Origin:
    """Scheme, credentials, host and port; raises ValueError on a bad port."""
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return scheme, parts.username, parts.password, parts.hostname, port


def _decode(path: str) -> str:
    # surrogateescape keeps non-UTF-8 bytes distinct and round-trippable.
    return unquote(path, errors="surrogateescape")


def _decode_fully(text: str) -> str:
    """Decode until stable, so '%252e%252e' is seen as the '..' it may become."""
    decoded = _decode(text)
    while decoded != text:
        text, decoded = decoded, _decode(decoded)
    return decoded


def _is_safe_segment(raw: str) -> bool:
    name = _decode_fully(raw)
    return name not in _BAD_NAMES and not any(c in name for c in "/\\\0")
