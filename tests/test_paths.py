"""Names from untrusted input never leave the store and stay readable where they can."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xkcdcrawl.items import FileItem
from xkcdcrawl.paths import MAX_NAME_BYTES, disposition_name, safe_relpath, safe_segment, url_file_name
from xkcdcrawl.pipelines import store_path
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
