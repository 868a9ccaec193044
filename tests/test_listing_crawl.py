"""listing crawls against real nginx, Apache, lighttpd and http.server: exact mirrors."""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from servers.faultserver import FaultServer, file_body
from servers.hostilesite import hostile_site
from servers.staticsite import StaticSite
from servers.webservers import apache, lighttpd, make_tree, nginx, python_http_server

from xkcdcrawl.naming import distinct_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from http.server import ThreadingHTTPServer
    from pathlib import Path

    from conftest import Crawl

pytestmark = pytest.mark.e2e

SERVERS: dict[str, Callable[[Path], AbstractContextManager[str]]] = {
    "nginx": nginx,
    "apache": apache,
    "lighttpd": lighttpd,
    "http.server": python_http_server,
}
QUIET = ["-s", "XKCDCRAWL_PROGRESS_INTERVAL=0"]


def folder(url: str) -> str:
    """Where a server's files land: its host, and its port when that is not the default."""
    return f"127.0.0.1_{urlsplit(url).port}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("tree")
    return root, make_tree(root)


@pytest.mark.parametrize("server", SERVERS)
def test_mirror_equals_the_tree_byte_for_byte(server: str, tree: tuple[Path, dict[str, bytes]], crawl: Crawl) -> None:
    root, files = tree
    with SERVERS[server](root) as base:
        run = crawl("listing", "-a", f"url={base}", *QUIET)
        again = crawl("listing", "-a", f"url={base}", *QUIET)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{folder(base)}/{path}": body for path, body in files.items()}
    assert {item["path"] for item in run.items()} == set(files)
    assert again.returncode == 0
    assert f"Files: 0 downloaded, {len(files)} uptodate" in again.stderr  # nothing fetched twice


def test_depth_and_filters(tree: tuple[Path, dict[str, bytes]], crawl: Crawl, tmp_path: Path) -> None:
    root, files = tree
    with nginx(root) as base:
        top = crawl("listing", "-a", f"url={base}", "-a", "depth=0", *QUIET, store=tmp_path / "top")
        filters = ["-a", "accept=*.txt,*-1MB.bin", "-a", "reject=one.txt"]
        txt = crawl("listing", "-a", f"url={base}", *filters, *QUIET, store=tmp_path / "txt")
    assert set(top.stored()) == {f"{folder(base)}/{p}" for p in files if "/" not in p}
    want = {p for p in files if p.endswith((".txt", "-1MB.bin")) and p.rsplit("/", 1)[-1] != "one.txt"}
    assert set(txt.stored()) == {f"{folder(base)}/{p}" for p in want}
    assert want
    assert len(want) < len(files)


def test_sub_folder_start_never_goes_above_it(tree: tuple[Path, dict[str, bytes]], crawl: Crawl) -> None:
    root, files = tree
    sub = next(p.split("/")[0] for p in files if "/" in p)
    with lighttpd(root) as base:
        run = crawl("listing", "-a", f"url={base}{sub}", *QUIET)  # no trailing slash: HEAD finds a listing
    assert run.returncode == 0, run.stderr
    assert set(run.stored()) == {f"{folder(base)}/{p}" for p in files if p.startswith(f"{sub}/")}


def test_start_url_that_is_a_file_downloads_it(crawl: Crawl) -> None:
    with FaultServer() as server:
        run = crawl("listing", "-a", f"url={server.url_for('/ok/one/report.pdf')}", *QUIET)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{server.folder}/ok/one/report.pdf": file_body("one/report.pdf")}


def test_pages_and_files_together_respect_the_per_host_limit(crawl: Crawl) -> None:
    with FaultServer() as server:
        run = crawl(
            "listing", "-a", f"url={server.url_for('/tree/')}", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=3", *QUIET
        )
    assert run.returncode == 0, run.stderr
    assert len(run.stored()) == 5 * 7  # /tree/, d0/, d1/ and their d0/, d1/
    assert server.max_in_flight == 3


@pytest.fixture
def hostile() -> Iterator[ThreadingHTTPServer]:
    with hostile_site() as httpd:
        yield httpd


def test_links_out_of_the_listing_are_never_followed(
    hostile: ThreadingHTTPServer, crawl: Crawl, tmp_path: Path
) -> None:
    run = crawl("listing", "-a", f"url=http://127.0.0.1:{hostile.server_port}/pub/", *QUIET)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"127.0.0.1_{hostile.server_port}/pub/ok.txt": b"fine"}
    assert sorted(hostile.paths) == ["/pub/", "/pub/ok.txt", "/robots.txt"]  # type: ignore[attr-defined]
    assert [p for p in tmp_path.rglob("*") if p.is_file() and "secret" in p.name] == []


def test_missing_or_unreachable_start_url_is_an_error(crawl: Crawl) -> None:
    with FaultServer() as server:
        missing = crawl("listing", "-a", f"url={server.url_for('/nothing/')}", *QUIET)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    unreachable = crawl("listing", "-a", f"url=http://127.0.0.1:{port}/pub/", "-s", "XKCDCRAWL_RETRY_BACKOFF=0", *QUIET)
    assert missing.returncode == unreachable.returncode == 1
    assert f"Cannot read {server.url_for('/nothing/')}: HTTP 404" in missing.stderr
    assert f"Cannot read http://127.0.0.1:{port}/pub/: " in unreachable.stderr
    assert "Traceback" not in missing.stderr + unreachable.stderr


def test_a_file_and_a_folder_of_the_same_name(crawl: Crawl) -> None:
    """A server that lists 'dup' as a file and 'dup/' as a folder: both kept, the same way on every run."""
    page = b'<a href="dup">dup</a> <a href="dup/">dup/</a> <a href="ok.txt">ok.txt</a>'
    routes = {"/pub/": ("text/html", page), "/pub/dup": ("text/plain", b"file"), "/pub/ok.txt": ("text/plain", b"ok")}
    routes |= {
        "/pub/dup/": ("text/html", b'<a href="inner.txt">inner.txt</a>'),
        "/pub/dup/inner.txt": ("text/plain", b"in"),
    }
    with StaticSite(routes) as site:
        run = crawl("listing", "-a", f"url={site.url}/pub/", *QUIET)
        again = crawl("listing", "-a", f"url={site.url}/pub/", *QUIET)
    assert run.returncode == again.returncode == 0
    stored, here = run.stored(), folder(site.url)
    renamed = distinct_name("dup", f"{site.url}/pub/dup", {"dup"})
    assert renamed != "dup"
    assert stored == {f"{here}/pub/ok.txt": b"ok", f"{here}/pub/{renamed}": b"file", f"{here}/pub/dup/inner.txt": b"in"}
    assert "Files: 3 downloaded, 0 uptodate, 0 failed" in run.stderr
    assert {row["files"][0]["path"] for row in run.items()} == set(stored)
    assert "Files: 0 downloaded, 3 uptodate, 0 failed" in again.stderr
    assert "Traceback" not in run.stderr


def test_two_servers_on_one_host_keep_their_own_folders(crawl: Crawl) -> None:
    """Same host, two ports, one file name with different bytes: neither is taken for the other."""
    page = ("text/html", b'<a href="a.bin">a.bin</a>')
    with (
        StaticSite({"/pub/": page, "/pub/a.bin": ("application/octet-stream", b"first")}) as one,
        StaticSite({"/pub/": page, "/pub/a.bin": ("application/octet-stream", b"second")}) as two,
    ):
        first = crawl("listing", "-a", f"url={one.url}/pub/", *QUIET)
        second = crawl("listing", "-a", f"url={two.url}/pub/", *QUIET)
    assert first.returncode == second.returncode == 0, second.stderr
    assert "Files: 1 downloaded, 0 uptodate" in second.stderr
    assert second.stored() == {f"{folder(one.url)}/pub/a.bin": b"first", f"{folder(two.url)}/pub/a.bin": b"second"}
    assert [item["files"][0]["path"] for item in second.items()] == [f"{folder(two.url)}/pub/a.bin"]


# Raw bytes of names on old (Latin-1, cp1252) and hostile (overlong UTF-8) servers, and what they become.
NOT_UTF8 = {
    "caf%E9.txt": "café.txt",
    "%93quoted%94.txt": "\u201cquoted\u201d.txt",
    "%c0%afetc.txt": "À¯etc.txt",
    "a%81%8Db.txt": "a%81%8Db.txt",
    "%E6%97%A5.txt": "日.txt",
}


def test_names_that_are_not_utf8_are_stored_readable_and_found_again(crawl: Crawl) -> None:
    page = "".join(f'<a href="{raw}">x</a>' for raw in NOT_UTF8).encode()
    routes = {"/pub/": ("text/html", page)}
    routes |= {f"/pub/{raw}": ("text/plain", raw.encode()) for raw in NOT_UTF8}
    with StaticSite(routes) as site:
        run = crawl("listing", "-a", f"url={site.url}/pub/", *QUIET)
        again = crawl("listing", "-a", f"url={site.url}/pub/", *QUIET)
    assert run.returncode == 0, run.stderr
    here = folder(site.url)
    assert run.stored() == {f"{here}/pub/{name}": raw.encode() for raw, name in NOT_UTF8.items()}
    assert sorted(item["path"] for item in run.items()) == sorted(NOT_UTF8.values())
    assert "Traceback" not in run.stderr
    assert again.returncode == 0
    assert f"Files: 0 downloaded, {len(NOT_UTF8)} uptodate" in again.stderr


def refused_url(path: str) -> str:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    return f"http://127.0.0.1:{port}{path}"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "] ERROR: " in line]


def test_a_refused_start_url_is_one_error_line_and_gives_up_soon(crawl: Crawl) -> None:
    url = refused_url("/pub/")
    run = crawl("listing", "-a", f"url={url}", *QUIET)  # the default backoff: 1 s, then 2 s, 4 s
    assert run.returncode == 1
    assert [line.split("] ERROR: ")[1] for line in error_lines(run.stderr)] == [
        f"Cannot read {url}: connection refused"
    ]
    assert "Traceback" not in run.stderr
    elapsed = float(re.findall(r"'elapsed_time_seconds': ([0-9.]+)", run.stderr)[0])
    assert elapsed < 5  # two tries of robots.txt and of the page, not four of each (14 s)


def test_a_sub_folder_that_fails_is_one_error_line(crawl: Crawl) -> None:
    page = b'<a href="gone/">gone/</a> <a href="ok.txt">ok.txt</a>'
    with StaticSite({"/pub/": ("text/html", page), "/pub/ok.txt": ("text/plain", b"ok")}) as site:
        run = crawl("listing", "-a", f"url={site.url}/pub/", *QUIET)
    assert run.returncode == 1  # the folder's files are missing
    assert run.stored() == {f"{folder(site.url)}/pub/ok.txt": b"ok"}
    assert [line.split("] ERROR: ")[1] for line in error_lines(run.stderr)] == [
        f"Cannot read {site.url}/pub/gone/: HTTP 404"
    ]


def test_a_sub_folder_robots_txt_forbids_is_policy_not_an_error(crawl: Crawl) -> None:
    page = b'<a href="private/">private/</a> <a href="ok.txt">ok.txt</a>'
    routes = {"/pub/": ("text/html", page), "/pub/ok.txt": ("text/plain", b"ok")}
    routes |= {"/robots.txt": ("text/plain", b"User-agent: *\nDisallow: /pub/private/\n")}
    routes |= {"/pub/private/": ("text/html", b'<a href="s.txt">s.txt</a>'), "/pub/private/s.txt": ("text/plain", b"s")}
    with StaticSite(routes) as site:
        run = crawl("listing", "-a", f"url={site.url}/pub/", *QUIET)
    assert run.returncode == 0, run.stderr
    assert run.stored() == {f"{folder(site.url)}/pub/ok.txt": b"ok"}
    assert error_lines(run.stderr) == []
    assert "/pub/private/" not in site.paths()
