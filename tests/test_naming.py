"""Names from untrusted input never leave the store and stay readable where they can."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xkcdcrawl.items import FileItem
from xkcdcrawl.naming import (
    MAX_NAME_BYTES,
    disposition_name,
    host_folder,
    readable,
    safe_relpath,
    safe_segment,
    store_path,
    url_file_name,
)
from xkcdcrawl.stores import AtomicFSFilesStore, OutsideStoreError


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("barrel_cropped_(1).jpg", "barrel_cropped_(1).jpg"),
        ("(.png", "(.png"),
        ("..", "_"),
        (".", "_"),
        ("a/../b", "a_.._b"),
        ("..\\..\\win.ini", ".._.._win.ini"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("name. ", "name"),
        ("a\x00b\x1fc", "abc"),
        ("\u202eLTR", "LTR"),  # xkcd 1137's title: an invisible right-to-left override
        ("Ünïcödé 日本.txt", "Ünïcödé 日本.txt"),
    ],
)
def test_safe_segment(name: str, safe: str) -> None:
    assert safe_segment(name) == safe


def test_long_names_are_cut_in_bytes_keeping_extension_and_distinct() -> None:
    a, b = safe_segment("é" * 200 + "a.tar"), safe_segment("é" * 200 + "b.tar")
    assert len(a.encode()) <= MAX_NAME_BYTES
    assert a.endswith(".tar")
    assert a != b


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://h/files/report%20final.pdf", "report final.pdf"),
        ("https://h/%2e%2e/%2e%2e/etc/passwd", "passwd"),
        ("https://h/a/..%2f..%2fescape", ".._.._escape"),
        ("https://h/%252e%252e%252fx", "%2e%2e%2fx"),
        ("https://h/dir/", None),
        ("https://h/%2e%2e", None),
    ],
)
def test_url_file_name(url: str, name: str | None) -> None:
    got = url_file_name(url)
    if name is None:
        assert got.startswith("file-")  # nothing usable in the URL: a stable hash
    else:
        assert got == name


@given(st.lists(st.text(), max_size=6))
def test_safe_relpath_never_climbs(parts: list[str]) -> None:
    path = safe_relpath(*parts)
    segments = path.split("/")
    assert not path.startswith("/")
    assert all(s not in {"", ".", ".."} and "\\" not in s and "\x00" not in s for s in segments)
    assert all(len(s.encode()) <= MAX_NAME_BYTES for s in segments)


@given(st.text(st.characters(max_codepoint=0x7F)) | st.text())
def test_a_safe_segment_has_no_control_or_format_characters(name: str) -> None:
    assert not any(unicodedata.category(c) in {"Cc", "Cf"} for c in safe_segment(name))


@given(
    folder=st.text() | st.sampled_from(["", "/", " ", "a/ /b", "a//b", "\\", "CON/x", "../.."]),
    name=st.none() | st.text(),
)
def test_store_path_is_the_long_way(folder: str, name: str | None) -> None:
    """store_path() works out a folder once for its files: what safe_relpath() makes of each file."""
    url = "http://h.test/dir/file.bin"
    item = FileItem(url=url, folder=folder, name=name, file_urls=[url])
    long_way = safe_relpath(folder or "unsorted", safe_segment(name or url_file_name(url)))
    assert store_path(url, item) == long_way
    assert safe_segment(safe_segment(name or "")) == safe_segment(name or "")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> AtomicFSFilesStore:
    return AtomicFSFilesStore(str(tmp_path_factory.mktemp("store")))


@given(
    folder=st.text(),
    path=st.lists(
        st.sampled_from(["..", "%2e%2e", "%2E%2e%2f", "..%5c", "%00", "a", "CON", "/", "\\", ".", "%252e"]) | st.text(),
        max_size=8,
    ),
)
def test_file_path_of_any_url_stays_in_the_store(store: AtomicFSFilesStore, folder: str, path: list[str]) -> None:
    url = "http://h.test/" + "/".join(path)
    relative = store_path(url, FileItem(url=url, folder=folder, file_urls=[url]))
    assert store.resolve(relative).parent.is_relative_to(store.root)


def test_store_refuses_paths_outside(tmp_path: Path) -> None:
    store = AtomicFSFilesStore(str(tmp_path / "store"))
    (tmp_path / "store" / "link").symlink_to(tmp_path)
    for bad in ["../x", "a/../../x", "link/x", ""]:
        with pytest.raises(OutsideStoreError):
            store.resolve(bad)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b'attachment; filename="report.pdf"', "report.pdf"),
        (b"attachment; filename=\"b_r.txt\"; filename*=UTF-8''b%C3%A4r.txt", "bär.txt"),
        (b'attachment; filename="../../etc/passwd"', "passwd"),
        (b'attachment; filename="..\\\\evil.exe"', "evil.exe"),
        (b"inline", None),
        (None, None),
    ],
)
def test_disposition_name(header: bytes | None, name: str | None) -> None:
    assert disposition_name(header) == name


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://h/caf%E9.txt", "café.txt"),  # Latin-1
        ("http://h/%93q%94.txt", "\u201cq\u201d.txt"),  # cp1252 quotes
        ("http://h/%c0%af", "À¯"),  # overlong '/': two harmless characters
        ("http://h/a%81%8Db", "a%81%8Db"),  # bytes no code page prints: their escapes
        ("http://h/%E6%97%A5%E9", "æ\u2014¥é"),  # mixed: cp1252 for the whole name
        ("http://h/%ED%A0%80", "%ED%A0%80"),  # an encoded surrogate; cp1252 gives a no-break space
    ],
)
def test_names_that_are_not_utf8_become_readable(url: str, name: str) -> None:
    assert url_file_name(url) == name


def test_stray_surrogates_do_not_break_names() -> None:
    assert safe_segment("a\ud800b") == "a\ufffdb"
    assert readable("x\udce9") == "xé"


@pytest.mark.parametrize(
    ("url", "folder"),
    [
        ("http://127.0.0.1:8001/x", "127.0.0.1_8001"),
        ("http://127.0.0.1:80/x", "127.0.0.1"),
        ("https://Host.test:443/", "host.test"),
        ("https://host.test:80/", "host.test_80"),
        ("http://[::1]:8080/", "__1_8080"),
        ("http://h.test/", "h.test"),
    ],
)
def test_host_folder_has_the_port_unless_default(url: str, folder: str) -> None:
    assert host_folder(url) == folder


@given(raw=st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_any_bytes_in_a_url_path_give_a_safe_stable_name(store: AtomicFSFilesStore, raw: list[bytes]) -> None:
    url = "http://h.test:8080/" + "/".join(quote(part, safe="") for part in raw)
    name = url_file_name(url)
    assert name == url_file_name(url) == safe_segment.__wrapped__(name)  # stable, and already safe
    assert name.encode("utf-8")  # no surrogate left: the feed and the file system take it
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert not {"/", "\\"} & set(name)
    assert name not in {".", ".."}
    relative = store_path(url, FileItem(url=url, folder=host_folder(url), file_urls=[url]))
    assert store.resolve(relative).parent.is_relative_to(store.root)
