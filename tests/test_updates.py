"""A mirror stays true to the server: a file changed there is fetched again and replaced (updated)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from servers.webservers import lighttpd, nginx

from xkcdcrawl.naming import host_folder

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Crawl

QUIET = ["-s", "XKCDCRAWL_PROGRESS_INTERVAL=0"]


def requests_in(log: Path) -> list[tuple[str, int]]:
    """(URI, status) of each request nginx logged."""
    return [(line.split(" ")[0], int(line.split(" ")[1])) for line in log.read_text(encoding="utf-8").splitlines()]


def test_a_file_changed_on_the_server_is_fetched_again(tmp_path: Path, crawl: Crawl) -> None:
    """nginx shows each file's exact size and date: another size, or another date, is a change."""
    root, log = tmp_path / "root", tmp_path / "access.log"
    (root / "sub").mkdir(parents=True)
    (root / "grows.bin").write_bytes(b"a" * 4164)
    (root / "same-size.txt").write_bytes(b"version 1")
    (root / "sub" / "kept.txt").write_bytes(b"kept")
    with nginx(root, access_log=log) as url:
        first = crawl("listing", "-a", f"url={url}", *QUIET)
        assert first.returncode == 0, first.stderr
        (root / "grows.bin").write_bytes(b"b" * 12345)
        (root / "same-size.txt").write_bytes(b"version 2")
        # Listings show dates to the minute: a change within the same minute shows only in its size.
        later = time.time() + 120
        os.utime(root / "same-size.txt", (later, later))
        log.write_text("", encoding="utf-8")
        again = crawl("listing", "-a", f"url={url}", *QUIET)
        fetched = [uri for uri, status in requests_in(log) if not uri.endswith("/")]
        log.write_text("", encoding="utf-8")
        third = crawl("listing", "-a", f"url={url}", *QUIET)
        third_fetched = [uri for uri, status in requests_in(log) if not uri.endswith("/")]
    here = host_folder(url)
    assert again.returncode == 0, again.stderr
    assert again.stored() == {
        f"{here}/grows.bin": b"b" * 12345,
        f"{here}/same-size.txt": b"version 2",
        f"{here}/sub/kept.txt": b"kept",
    }
    assert sorted(fetched) == ["/grows.bin", "/robots.txt", "/same-size.txt"]
    assert "Files: 0 downloaded, 1 uptodate, 0 failed, 0 filtered, 2 updated" in again.stderr
    # What was fetched again counts as downloaded bytes: 12345 + 9.
    assert "Downloaded 12.1 KiB in " in again.stderr
    statuses = {f["path"]: f["status"] for item in again.items() for f in item["files"]}
    assert statuses == {
        f"{here}/grows.bin": "updated",
        f"{here}/same-size.txt": "updated",
        f"{here}/sub/kept.txt": "uptodate",
    }
    assert "Changed on the server: " in again.stderr
    # Once replaced, the new versions are the stored ones: nothing more to fetch.
    assert third_fetched == ["/robots.txt"]
    assert "Files: 0 downloaded, 3 uptodate, 0 failed" in third.stderr


def test_listings_that_round_sizes_still_tell_a_change(tmp_path: Path, crawl: Crawl) -> None:
    """lighttpd rounds sizes (4.0K): a file that grew threefold is still seen.

    (Apache, which rounds too, serves a snapshot of its root in these tests: its listings are
    read in tests/test_listing_parse.py.)
    """
    for server in (lighttpd,):
        root, store = tmp_path / server.__name__, tmp_path / f"store-{server.__name__}"
        root.mkdir()
        (root / "a.bin").write_bytes(b"a" * 4164)
        (root / "b.bin").write_bytes(b"b" * 100)
        with server(root) as url:
            first = crawl("listing", "-a", f"url={url}", *QUIET, store=store)
            same = crawl("listing", "-a", f"url={url}", *QUIET, store=store)
            (root / "a.bin").write_bytes(b"c" * 12345)
            again = crawl("listing", "-a", f"url={url}", *QUIET, store=store)
        assert first.returncode == same.returncode == again.returncode == 0, again.stderr
        assert "Files: 0 downloaded, 2 uptodate" in same.stderr, server.__name__
        assert (store / host_folder(url) / "a.bin").read_bytes() == b"c" * 12345, server.__name__
        assert "1 uptodate, 0 failed, 0 filtered, 1 updated" in again.stderr, server.__name__


def test_revalidate_asks_the_server_for_sources_without_a_listing(tmp_path: Path, crawl: Crawl) -> None:
    """XKCDCRAWL_REVALIDATE: If-None-Match / If-Modified-Since per stored file, as wget -N; 304 keeps it."""
    root, log = tmp_path / "root", tmp_path / "access.log"
    root.mkdir()
    (root / "a.txt").write_bytes(b"one")
    (root / "b.txt").write_bytes(b"two")
    urls = tmp_path / "urls.txt"
    check = ["-s", "XKCDCRAWL_REVALIDATE=true", *QUIET]
    with nginx(root, access_log=log) as url:
        urls.write_text(f"{url}a.txt\n{url}b.txt\n", encoding="utf-8")
        first = crawl("urls", "-a", f"file={urls}", *check)
        log.write_text("", encoding="utf-8")
        unchanged = crawl("urls", "-a", f"file={urls}", *check)
        asked = requests_in(log)
        (root / "b.txt").write_bytes(b"two, changed")
        later = time.time() + 120
        os.utime(root / "b.txt", (later, later))
        log.write_text("", encoding="utf-8")
        changed = crawl("urls", "-a", f"file={urls}", *check)
        asked_again = requests_in(log)
        plain = crawl("urls", "-a", f"file={urls}", *QUIET)
    assert first.returncode == unchanged.returncode == changed.returncode == 0, changed.stderr
    assert sorted(asked) == [("/a.txt", 304), ("/b.txt", 304), ("/robots.txt", 404)]
    assert "Files: 0 downloaded, 2 uptodate, 0 failed" in unchanged.stderr
    assert sorted(asked_again) == [("/a.txt", 304), ("/b.txt", 200), ("/robots.txt", 404)]
    assert "Files: 0 downloaded, 1 uptodate, 0 failed, 0 filtered, 1 updated" in changed.stderr
    assert changed.stored()[f"{host_folder(url)}/b.txt"] == b"two, changed"
    # Without the setting, a stored file is taken as it is: no request at all.
    assert "Files: 0 downloaded, 2 uptodate, 0 failed" in plain.stderr
