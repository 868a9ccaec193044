"""Tests for xkcdcrawl.listing_parse on real captured and hostile listings."""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scrapy.http import HtmlResponse

from xkcdcrawl import listing_parse
from xkcdcrawl.listing_parse import _entry_url, _is_plain, list_entries, relative_path, size_range, split_listing
from xkcdcrawl.naming import MAX_NAME_BYTES, store_path
from xkcdcrawl.spiders.listing import listed_file

DIRLIST = Path(__file__).parent / "fixtures" / "pages" / "dirlist"


def _page(url: str, body: str | bytes) -> HtmlResponse:
    return HtmlResponse(url, body=body, encoding="utf-8")


def _fixture(name: str, url: str) -> HtmlResponse:
    return _page(url, (DIRLIST / name).read_bytes())


def _names(urls: list[str], root: str) -> list[str]:
    return [relative_path(url, root) for url in urls]


def _links(*hrefs: str) -> str:
    anchors = "".join(f'<a href="{html.escape(h)}">x</a>\n' for h in hrefs)
    return f"<html><body>{anchors}</body></html>"


def _decode_fully(text: str) -> str:
    while (decoded := unquote(text)) != text:
        text = decoded
    return text


# (fixture, URL it was served from (path from its title/canonical link),
#  exact sub-folders, number of files, some exact files)
FIXTURES = [
    (
        "apache_fancyindex_table_rclone-fixture.html",
        "http://listing.test/nick/pub/",
        ["gchq-challenge/", "mandelterm/", "pymath/", "snake-puzzle/", "stressdisk/"],
        13,
        ["SWIG-embed.tar.gz", "rclone", "timer-test", "Now 100% better.mp3", "Now better.mp3"],
    ),
    (
        "apache24_fancyindex_htmltable_themed_winehq.html",
        "https://dl.winehq.org/wine-builds/",
        ["android/", "debian/", "fedora/", "macosx/", "mageia/", "ubuntu/"],
        2,
        ["Release.key", "winehq.key"],
    ),
    (
        "apache-style_pre_fancyindex_repo-mysql.html",
        "https://repo.mysql.test/232905/apt/ubuntu/pool/mysql-tools/m/",
        [
            "mysql-community/",
            "mysql-connector-c++/",
            "mysql-connector-j/",
            "mysql-connector-java/",
            "mysql-connector-odbc/",
            "mysql-connector-python/",
            "mysql-router/",
            "mysql-shell/",
            "mysql-utilities/",
            "mysql-workbench-community/",
        ],
        0,
        [],
    ),
    (
        "nginx_autoindex_rclone-fixture.html",
        "http://listing.test/atomic/fedora/",
        ["deltas/", "objects/", "refs/", "state/"],
        2,
        ["config", "summary"],
    ),
    (
        "nginx_autoindex_monitoring-plugins.html",
        "https://listing.test/monitoring-plugins/",
        ["archive/", "mib/", "presentation/", "snapshot/"],
        19,
        ["monitoring-plugins-2.0.tar.gz", "monitoring-plugins-2.3.3.tar.gz.sha1", "timestamp"],
    ),
    (
        "lighttpd_dirlisting_buildroot-acl.html",
        "http://sources.buildroot.test/acl/",
        [],
        4,
        ["acl-2.2.52.src.tar.gz", "acl-2.2.53.tar.gz", "acl-2.3.1.tar.xz", "acl-2.3.2.tar.xz"],
    ),
    (
        "caddy_v1_browse_rclone-fixture.html",
        "http://listing.test/",
        [
            "v1.36-155-gcf29ee8b-team-driveβ/",
            "v1.36-156-gca76b3fb-team-driveβ/",
            "v1.36-156-ge1f0e0f5-team-driveβ/",
            "v1.36-22-g06ea13a-ssh-agentβ/",
        ],
        4,
        ["mimetype.zip", "rclone-delete-empty-dirs.py", "stat-windows-386.zip"],
    ),
    (
        "caddy_v2_file_server_browse_sdu-mirror.html",
        "https://mirrors.sdu.test/ubuntu/1710048427/ubuntu/",
        [".trace/", "dists/", "indices/", "pool/", "project/", "ubuntu/"],
        1,
        ["ls-lR.gz"],
    ),
]


@pytest.mark.parametrize(
    ("name", "url", "dirs", "n_files", "some_files"),
    FIXTURES,
    ids=[f[0].removesuffix(".html") for f in FIXTURES],
)
def test_real_listing(name: str, url: str, dirs: list[str], n_files: int, some_files: list[str]) -> None:
    got_dirs, got_files = split_listing(_fixture(name, url), url)
    assert _names(got_dirs, url) == dirs
    files = _names(got_files, url)
    assert len(files) == n_files
    assert set(some_files) <= set(files)
    assert len(set(files)) == len(files)


# Top level of tests/servers/webservers.py make_tree(), as listed by each real server
# (generated_*.html, saved by `PYTHONPATH=tests python -m servers.webservers tests/fixtures/pages/dirlist`).
GENERATED_TOP = {
    *("big/", "empty/", "level1/", "odd #%&+;'/", "with space/", "été/"),
    *("100%.txt", "100%25.txt", "a&b.txt", "café.txt", "hash#tag.txt", "it's.txt", "long-" + "x" * 191 + ".txt"),
    *("plus+sign.txt", "readme.txt", "semi;colon.txt", "what?.txt", "with space.txt", "zero-bytes.bin", "日本語.txt"),
}


@pytest.mark.parametrize("server", ["nginx", "apache", "lighttpd", "python"])
def test_generated_listing(server: str) -> None:
    url = "http://127.0.0.1:8080/"
    dirs, files = split_listing(_fixture(f"generated_{server}.html", url), url)
    assert set(_names(dirs, url)) == {n for n in GENERATED_TOP if n.endswith("/")}
    assert set(_names(files, url)) == {n for n in GENERATED_TOP if not n.endswith("/")}
    assert len(dirs) + len(files) == len(GENERATED_TOP)  # Apache links each entry twice


def test_apache_percent_encoded_names_stay_encoded_in_urls() -> None:
    url = "http://listing.test/nick/pub/"
    _, files = split_listing(_fixture(FIXTURES[0][0], url), url)
    assert files[-2:] == [url + "Now%20100%25%20better.mp3", url + "Now%20better.mp3"]


def test_caddy_v2_breadcrumbs_dropped_when_root_is_higher() -> None:
    page = "https://mirrors.sdu.test/ubuntu/1710048427/ubuntu/"
    root = "https://mirrors.sdu.test/ubuntu/"
    dirs, files = split_listing(_fixture(FIXTURES[-1][0], page), root)
    assert _names(dirs, page) == FIXTURES[-1][2]
    assert _names(files, root) == ["1710048427/ubuntu/ls-lR.gz"]


def test_page_above_root_yields_only_entries_below_root() -> None:
    page = "http://listing.test/atomic/fedora/"
    dirs, files = split_listing(_fixture(FIXTURES[3][0], page), page + "refs/")
    assert (dirs, files) == ([], [])


def test_python_http_server_style_list() -> None:
    body = (
        "<!DOCTYPE HTML><html><head><title>Directory listing for /d/</title></head>"
        "<body><h1>Directory listing for /d/</h1><hr><ul>"
        '<li><a href="a%20b/">a b/</a></li>'
        '<li><a href="caf%C3%A9.txt">café.txt</a></li>'
        '<li><a href="x%23y%3Fz%26.bin">x#y?z&amp;.bin</a></li>'
        '<li><a href="link%40">link@</a></li>'
        "</ul><hr></body></html>"
    )
    root = "http://127.0.0.1:8000/d/"
    dirs, files = split_listing(_page(root, body), root)
    assert _names(dirs, root) == ["a b/"]
    assert _names(files, root) == ["café.txt", "x#y?z&.bin", "link@"]


def test_plain_page_of_links_on_a_file_url() -> None:
    page = "http://h.test/pub/index.html"
    body = _links("index.html", "./index.html", "other.html", "sub/", "sub/deeper/f.bin")
    dirs, files = split_listing(_page(page, body), "http://h.test/pub/")
    assert dirs == ["http://h.test/pub/sub/"]
    assert files == ["http://h.test/pub/other.html", "http://h.test/pub/sub/deeper/f.bin"]


HOSTILE = [
    "",
    "#",
    "#top",
    ".",
    "./",
    "..",
    "../",
    "../sub/",
    "/",
    "/pub/",
    "/pub/sub/",
    "/etc/passwd",
    "../../etc/passwd",
    "%2e%2e/",
    "%2E%2E/x",
    ".%2e/x",
    "..%2f",
    "..%2Fetc%2Fpasswd",
    "a%2f..%2f..%2f..%2fetc",
    "%252e%252e/x",
    "%25252e%25252e%25252fx",
    "a/%2e%2e/%2e%2e/x",
    "%2e/",
    "a%2f%2fb",
    "a%2Fb",
    "@%2f",
    "a%00b",
    "a%5cb",
    "..\\..\\etc\\passwd",
    "a\\b",
    "?C=N;O=D",
    "?sort=name&order=desc",
    "file.txt?download=1",
    "javascript:alert(1)",
    "JavaScript:void(0)",
    "mailto:root@h.test",
    "file:///etc/passwd",
    "ftp://h.test/pub/sub/x",
    "data:text/plain,hi",
    "http://other.test/pub/sub/x",
    "//other.test/pub/sub/x",
    "http://h.test:8080/pub/sub/x",
    "https://h.test/pub/sub/x",
    "http://user@h.test/pub/sub/x",
    "http://h.test:99999/pub/sub/x",
    "http://[::1/x",
    "http://h.test/pub/../pub/sub/x",
]


@pytest.mark.parametrize("href", HOSTILE)
def test_hostile_link_dropped(href: str) -> None:
    page = "http://h.test/pub/sub/"
    assert split_listing(_page(page, _links(href)), "http://h.test/pub/") == ([], [])


def test_good_links_survive_among_hostile_ones_and_dedupe() -> None:
    page = "http://h.test/pub/sub/"
    body = _links(
        *HOSTILE,
        "good.txt",
        "good.txt#frag",
        "./good.txt",
        "http://h.test:80/pub/sub/good.txt",
        "good%2etxt",
        "  dir/  ",
        "dir/#x",
        "%C3%A9t%C3%A9.txt",
        "été.txt",
    )
    dirs, files = split_listing(_page(page, body), "http://h.test/pub/")
    assert dirs == ["http://h.test/pub/sub/dir/"]
    assert files == ["http://h.test/pub/sub/good.txt", "http://h.test/pub/sub/%C3%A9t%C3%A9.txt"]


def test_base_href_to_other_host_is_dropped() -> None:
    page = "http://h.test/pub/"
    body = '<html><head><base href="http://evil.test/pub/"></head><body><a href="x">x</a>'
    assert split_listing(_page(page, body), page) == ([], [])


def test_icon_and_name_links_collapse() -> None:
    page = "http://h.test/pub/"
    body = '<a href="d/"><img src="/icons/folder.gif"></a><a href="d/">d/</a>'
    assert split_listing(_page(page, body), page) == (["http://h.test/pub/d/"], [])


def test_relative_path_examples() -> None:
    root = "http://h/pub/"
    assert relative_path("http://h/pub/a%20b/c.txt", root) == "a b/c.txt"
    assert relative_path("http://h/pub/a%20b/", root) == "a b/"
    assert relative_path("http://h:80/pub/%E6%97%A5.txt", root) == "日.txt"
    assert relative_path("http://h/pub/100%.txt", root) == "100%.txt"
    # Non-UTF-8 bytes survive as surrogate escapes instead of collapsing to U+FFFD.
    assert relative_path("http://h/pub/%E9.txt", root) == "\udce9.txt"
    assert relative_path("http://h/p%75b/x", root) == "x"


@pytest.mark.parametrize(
    "url",
    [
        "http://h/pub/",
        "http://h/pub",
        "http://h/",
        "http://h/public/x",
        "http://h/pub/x?y=1",
        "https://h/pub/x",
        "http://g/pub/x",
        "http://h:81/pub/x",
        "http://h/pub/%2e%2e/x",
        "http://h/pub/a/%252e%252e/%252e%252e/x",
        "http://h/pub/a%00",
        "http://h/pub/a%5cb",
        "http://h/pub/a//b",
        "http://h/pub/a%2Fb",
        "http://h/pub/%252F/",
    ],
)
def test_relative_path_rejects(url: str) -> None:
    with pytest.raises(ValueError, match=r"below|unsafe"):
        relative_path(url, "http://h/pub/")


def test_relative_path_requires_directory_root() -> None:
    with pytest.raises(ValueError, match="not a directory"):
        relative_path("http://h/pub/x", "http://h/pub")


_PIECES = st.sampled_from(
    [
        "..", ".", "/", "\\", "%", "%2e", "%2E", "%252e", "%2f", "%2F", "%252f",
        "%5c", "%00", "%25", "?", "#", ";", "&", ":", " ", "a", "é", "sub",
        "pub", "//", "http://h.test", "https://h.test", "//h.test", "h.test:80",
        "javascript:", "file:", "@",
    ]
)  # fmt: skip
_HREFS = st.one_of(
    st.lists(_PIECES, max_size=12).map("".join),
    st.text(st.characters(codec="utf-8"), max_size=30),
)


@settings(max_examples=300, deadline=None, database=None)
@given(hrefs=st.lists(_HREFS, max_size=8))
def test_returned_urls_are_always_safely_below_root(hrefs: list[str]) -> None:
    page, root = "http://h.test/pub/sub/", "http://h.test/pub/"
    dirs, files = split_listing(_page(page, _links(*hrefs)), root)
    for url in dirs + files:
        rel = relative_path(url, root)
        assert ".." not in _decode_fully(rel).split("/")
        relative_path(url, page)  # also strictly below the listed directory
        assert "?" not in url
        assert "#" not in url
    assert len(set(dirs + files)) == len(dirs) + len(files)
    assert all(u.endswith("/") for u in dirs)
    assert not any(u.endswith("/") for u in files)


@settings(max_examples=300, deadline=None, database=None)
@given(names=st.lists(st.binary(min_size=1, max_size=300), max_size=6))
def test_listed_names_of_any_bytes_are_safe_readable_and_stable(names: list[bytes]) -> None:
    page, root = "http://h.test:8080/pub/", "http://h.test:8080/pub/"
    hrefs = [quote(name, safe="") for name in names]
    dirs, files = split_listing(_page(page, _links(*hrefs)), root)
    for url in files:
        item = listed_file(url, root)
        path = store_path(url, item)
        assert path == store_path(url, listed_file(url, root))  # a re-run finds the same file
        assert path.startswith("h.test_8080/pub/")
        assert all(s not in {"", ".", ".."} and len(s.encode("utf-8")) <= MAX_NAME_BYTES for s in path.split("/"))
        assert (item.path or "").encode("utf-8")  # the feed can write it
    assert len(dirs) + len(files) <= len(names)


@pytest.mark.parametrize(
    ("fixture", "name", "listed"),
    [
        ("nginx_autoindex_rclone-fixture.html", "config", {"date": "04-May-2017 20:42", "size": "118"}),
        (
            "apache_fancyindex_table_rclone-fixture.html",
            "SWIG-embed.tar.gz",
            {"date": "29-Nov-2005 16:27", "size": "2.3K"},
        ),
        (
            "apache24_fancyindex_htmltable_themed_winehq.html",
            "Release.key",
            {"date": "2017-03-28 14:54", "size": "3.0K"},
        ),
        (
            "lighttpd_dirlisting_buildroot-acl.html",
            "acl-2.2.53.tar.gz",
            {"date": "2018-Jul-10 22:18:45", "size": "512.0K"},
        ),
        ("caddy_v2_file_server_browse_sdu-mirror.html", "ls-lR.gz", {"date": "2024-03-10T04:45:24Z", "size": "26 MiB"}),
    ],
)
def test_what_a_listing_shows_of_each_file(fixture: str, name: str, listed: dict[str, str]) -> None:
    """The size and date beside each link, as the page writes them: what a re-run compares."""
    body = (DIRLIST / fixture).read_bytes()
    response = HtmlResponse(url="https://example.org/pub/", body=body, encoding="utf-8")
    details: dict[str, dict[str, str]] = {}
    _, files = split_listing(response, "https://example.org/", details)
    assert details[f"https://example.org/pub/{name}"] == listed
    assert set(details) <= set(files)


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("4164", [4164], [4163, 4165]),
        ("4.1K", [4164, 4100, 4200], [12345, 3000]),
        ("12K", [12345, 12288], [4164, 14000]),
        ("377.5K", [386560, 377500], [370000, 400000]),
        ("26 MiB", [26 * 2**20], [20 * 2**20, 30 * 2**20]),
        ("812 B", [812], [813]),
    ],
)
def test_a_rounded_size_stands_for_a_range(text: str, inside: list[int], outside: list[int]) -> None:
    bounds = size_range(text)
    assert bounds is not None
    assert all(bounds[0] <= n <= bounds[1] for n in inside)
    assert not any(bounds[0] <= n <= bounds[1] for n in outside)


def test_a_size_that_is_none_is_no_size() -> None:
    assert size_range("-") is None
    assert size_range("") is None


_PLAIN_CHARS = st.sampled_from(
    [*"abcXYZ019-._~!$&'()*+,;=@", "%20", "%2e", "%2E%2e", "%00", "%2F", "%C3%A9", "%25", "%", ":", "?", "#", "/", "\\"]
)


@given(hrefs=st.lists(st.lists(_PLAIN_CHARS, min_size=1, max_size=6).map("".join), max_size=8))
def test_a_page_without_base_joins_links_as_urljoin_and_safe_url_string_would(hrefs: list[str]) -> None:
    # A plain link is joined to its page's folder directly (a fast path): the same URL, or the
    # same refusal, as the long way through urljoin() and safe_url_string().
    page = "http://h.test/pub/sub/"
    response = _page(page, _links(*hrefs))
    for href in hrefs:
        if _is_plain(href):
            assert _entry_url(response, href) == page + href
    # And what the page lists is what the long way lists.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(listing_parse, "_PLAIN_LINK", re.compile("(?!)"))
        long_way = list_entries(response, "http://h.test/")
    assert list_entries(response, "http://h.test/") == long_way
    # And a page whose <base> names another folder joins every link to that one.
    based = _page(page, _links(*hrefs).replace("<body>", '<head><base href="/other/"></head><body>', 1))
    assert all(url.startswith("http://h.test/other/") for url in split_listing(based, "http://h.test/")[1])
